"""Noise-free gradient descent on the energy (OT-EBM particles, docs/methods §1; the
self-adversarial generator, docs/methods §5)."""
from __future__ import annotations

from .base import Sampler, register_sampler


@register_sampler
class GradientDescent(Sampler):
    """x <- clamp(x - step_size * clip(grad E(x)), lo, hi); no noise."""

    name = "gradient_descent"

    def __init__(self, step_size: float, clamp=None, grad_clip=None, backend: str = "auto",
                 on_nonfinite: str = "raise"):
        super().__init__(step_size, 0.0, clamp=clamp, grad_clip=grad_clip, backend=backend,
                         on_nonfinite=on_nonfinite)

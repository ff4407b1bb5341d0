"""Langevin with a Gaussian reference term (w-GCN, docs/methods §2)."""
from __future__ import annotations

from typing import Optional

import torch

from ..core import check_scalar
from .base import Sampler, energy_grad, energy_values, register_sampler


@register_sampler
class ReferenceLangevin(Sampler):
    """Langevin on E(x) + |x|^2 / (2 sigma^2): the effective gradient is grad E(x) + x / sigma^2.

    The paper's update (001 Alg. 1, f = -E) x <- x + delta^2/2 (grad f - x/sigma^2) + delta * xi
    is `ReferenceLangevin.from_delta(delta, sigma)`: step_size = delta^2 / 2, noise_scale = delta,
    i.e. xi ~ N(0, I), which makes exp(f) q with q = N(0, sigma^2 I) stationary. Alg. 1 prints
    xi ~ N(0, sigma^2 I); that noise (noise_scale = delta * sigma, `paper_noise=True`) samples
    a different density unless sigma = 1, so it is opt-in.
    """

    name = "reference_langevin"

    def __init__(self, step_size: float, sigma: float = 1.0, noise_scale=None, clamp=None, grad_clip=None,
                 backend: str = "auto", on_nonfinite: str = "raise"):
        self.sigma = check_scalar("sigma", sigma, positive=True)
        super().__init__(step_size, noise_scale, clamp=clamp, grad_clip=grad_clip, backend=backend,
                         on_nonfinite=on_nonfinite)

    @staticmethod
    def default_noise_scale(step_size: float) -> float:
        return (2.0 * step_size) ** 0.5

    @classmethod
    def from_delta(cls, delta: float, sigma: float, paper_noise: bool = False, **kwargs) -> "ReferenceLangevin":
        noise = delta * sigma if paper_noise else delta
        return cls(step_size=delta * delta / 2.0, sigma=sigma, noise_scale=noise, **kwargs)

    def drift(self, energy, x: torch.Tensor, create_graph: bool):
        e = energy_values(energy, x)
        g = energy_grad(e, x, create_graph)
        return e, g + x / (self.sigma * self.sigma)

    def fused_drift_sigma(self) -> tuple[bool, Optional[float]]:
        return type(self).drift is ReferenceLangevin.drift, self.sigma

"""Langevin with the second-order "convexity correction" drift of OT-EBM (000 eq. 30)."""
from __future__ import annotations

import math

import torch

from .base import Sampler, energy_values, register_sampler


@register_sampler
class SecondOrderLangevin(Sampler):
    """dx = -(grad E + 1/4 grad |grad E|^2) dt + sqrt(2) dW, discretised with dt = step_size.

    grad |grad E|^2 = 2 H grad E is a Hessian-vector product: one extra backward
    through the gradient graph per step (about 2-3x the cost of a plain step).
    noise_scale defaults to sqrt(2 * step_size); 0 gives the noise-free version.
    """

    name = "second_order_langevin"

    def __init__(self, step_size: float, noise_scale=None, correction: float = 0.25, **kwargs):
        self.correction = float(correction)
        super().__init__(step_size, noise_scale, **kwargs)

    @staticmethod
    def default_noise_scale(step_size: float) -> float:
        return math.sqrt(2.0 * step_size)

    def drift(self, energy, x: torch.Tensor, create_graph: bool):
        e = energy_values(energy, x)
        (g,) = torch.autograd.grad(e.sum(), x, create_graph=True)
        (hg2,) = torch.autograd.grad((g * g).sum(), x, create_graph=create_graph)  # = 2 H g
        g = g if create_graph else g.detach()
        return e, g + self.correction * hg2

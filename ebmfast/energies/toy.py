"""The toy energy of 000 §6.1: "five fully connected layers with bias weighted".

    E = ToyEnergy()                     # 2 -> 128 -> 128 -> 128 -> 128 -> 1, LeakyReLU(0.2); [B, 2] -> [B]

A thin :class:`ebmfast.energies.mlp.MLPEnergy` with the paper's depth, so it
gets MLPEnergy's fused sampling chains and analytic gradient penalty. The paper
names neither width nor activation; 128 and LeakyReLU(0.2) (the activation of
its image energies) are our choice.
"""
from __future__ import annotations

from .mlp import MLPEnergy

__all__ = ["ToyEnergy"]


class ToyEnergy(MLPEnergy):
    """``n_layers`` Linear layers (all with bias) of width ``hidden``: [B, in_dim] -> [B].

    Args:
        in_dim: input dimension (2 for toys).
        hidden: width of each of the ``n_layers - 1`` hidden layers.
        n_layers: number of Linear layers (>= 2; 000 uses 5).
        activation: any MLPEnergy activation name.
        negative_slope: slope of leaky_relu.
    """

    def __init__(self, in_dim: int = 2, hidden: int = 128, n_layers: int = 5, activation: str = "leaky_relu",
                 negative_slope: float = 0.2):
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be an int >= 1, got {hidden!r}")
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 2:
            raise ValueError(f"n_layers must be an int >= 2, got {n_layers!r}")
        super().__init__(in_dim, hidden=(hidden,) * (n_layers - 1), activation=activation,
                         negative_slope=negative_slope)

"""A fully connected energy with fused kernels for sampling and gradient penalties.

    E = MLPEnergy(2, hidden=(128, 128, 128), activation="silu")   # [B, 2] -> [B]
    x = ebmfast.sample(E, x0, n_steps=60, step_size=0.01, noise_scale=0.005)  # one fused chain
    p = ebmfast.ops.grad_norm_penalty(E, x, lipschitz=1.0)  # analytic double backward

It is an ordinary nn.Module: `E(x)` is plain PyTorch (any device, any optimiser, autograd to
any order). The fused paths read the same parameters:
  - `E.energy_and_grad(x)` -> (E [B], grad_x E [B, D]) in one kernel, differentiable w.r.t. x and
    the parameters with an analytic double backward (ebmfast.ops.mlp_energy_grad);
  - `E.fused_mlp()`, the protocol method that ebmfast.sample, the samplers and
    ebmfast.ops.grad_norm_penalty ask for: the network as an `ebmfast.ops.MLPSpec`, so a Langevin /
    GradientDescent / ReferenceLangevin chain runs in one kernel (ebmfast.ops.mlp_langevin_chain)
    and a gradient penalty takes the analytic double backward. Chains with create_graph=True
    (differentiable sampling) or a callback run the ordinary step-by-step loop (the samplers decide).
With spectral_norm=True the weights are torch.nn.utils.parametrizations.spectral_norm
parametrisations; the fused paths use the normalised weights (reading `layer.weight` runs one
power iteration in training mode, exactly as a plain forward does).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from ..ops.mlp_activations import CODE_NAMES, activation_code, activation_module
from ..ops.mlp_energy import mlp_energy_grad
from ..ops.mlp_spec import MLPSpec, flatten_features

__all__ = ["MLPEnergy"]


class MLPEnergy(nn.Module):
    """Energy E(x) = Linear(w_H, 1)(act(... act(Linear(in_dim, w_1)(x)))), output [B].

    Args:
        in_dim: D, the number of features (x is [B, D]; [B, ...] inputs are flattened and must
            have D features).
        hidden: widths of the hidden layers, e.g. (128, 128, 128); () gives a linear energy.
        activation: "relu", "leaky_relu", "silu" (= "swish"), "softplus", "elu", "tanh", "gelu"
            (tanh approximation; "gelu_tanh" is an alias).
        bias: whether every Linear has a bias.
        negative_slope: slope of leaky_relu (ignored otherwise).
        spectral_norm: wrap every Linear's weight in spectral normalisation.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (128, 128, 128), activation: str = "silu",
                 bias: bool = True, negative_slope: float = 0.01, spectral_norm: bool = False):
        super().__init__()
        if isinstance(in_dim, bool) or not isinstance(in_dim, int) or in_dim < 1:
            raise ValueError(f"in_dim must be an int >= 1, got {in_dim!r}")
        if isinstance(hidden, int):
            hidden = (hidden,)
        hidden = tuple(hidden)
        for i, w in enumerate(hidden):
            if isinstance(w, bool) or not isinstance(w, int) or w < 1:
                raise ValueError(f"hidden[{i}] must be an int >= 1, got {w!r}")
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) or not math.isfinite(
                negative_slope):
            raise ValueError(f"negative_slope must be a finite number, got {negative_slope!r}")
        self.act_code = activation_code(activation)
        self.activation = CODE_NAMES[self.act_code]
        self.in_dim, self.hidden, self.bias = in_dim, hidden, bool(bias)
        self.negative_slope = float(negative_slope)
        self.spectral_norm = bool(spectral_norm)
        dims = (in_dim,) + hidden + (1,)
        layers = []
        for i in range(len(dims) - 1):
            lin = nn.Linear(dims[i], dims[i + 1], bias=bias)
            if spectral_norm:
                lin = nn.utils.parametrizations.spectral_norm(lin)
            layers.append(lin)
        self.layers = nn.ModuleList(layers)
        self.act = activation_module(self.act_code, self.negative_slope)

    @property
    def dims(self) -> tuple[int, ...]:
        return (self.in_dim,) + self.hidden + (1,)

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, hidden={self.hidden}, activation={self.activation!r}, bias={self.bias}"
                + (f", negative_slope={self.negative_slope}" if self.activation == "leaky_relu" else "")
                + (", spectral_norm=True" if self.spectral_norm else ""))

    # ------------------------------------------------------------------ plain PyTorch
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, in_dim] (or [B, ...] with in_dim features) -> E [B]."""
        h = flatten_features(x, self.in_dim)
        for lin in self.layers[:-1]:
            h = self.act(lin(h))
        return self.layers[-1](h).squeeze(1)

    # ------------------------------------------------------------------ fused paths
    def fused_params(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(weights, biases) as the fused ops take them (spectral-normalised weights if enabled)."""
        weights = [lin.weight for lin in self.layers]
        biases = [lin.bias for lin in self.layers] if self.bias else []
        return weights, biases

    def fused_mlp(self) -> MLPSpec:
        """The network as the fused ops take it (the protocol the samplers and penalties ask for)."""
        weights, biases = self.fused_params()
        return MLPSpec(weights, biases, self.act_code, self.negative_slope, self.in_dim)

    def energy_and_grad(self, x: torch.Tensor, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
        """(E [B], grad_x E shaped like x) in one fused call; differentiable w.r.t. x and parameters.

        Equivalent to::

            x = x.requires_grad_(); e = self(x)
            g, = torch.autograd.grad(e.sum(), x, create_graph=True)
        """
        spec = self.fused_mlp()
        xf = spec.flat(x).contiguous()
        spec.check_matches(xf)
        e, g = mlp_energy_grad(xf, [w.contiguous() for w in spec.weights], list(spec.biases), spec.act, spec.slope,
                               backend=backend, _checked=True)
        return e, g.reshape(x.shape)

    @torch.no_grad()
    def reset_parameters(self, gain: Optional[float] = None) -> None:
        """Re-initialise every Linear (PyTorch default init; `gain` rescales the weights)."""
        for lin in self.layers:
            target = lin.parametrizations.weight.original if self.spectral_norm else lin.weight
            nn.init.kaiming_uniform_(target, a=math.sqrt(5))
            if gain is not None:
                target.mul_(gain)
            if lin.bias is not None:
                bound = 1 / math.sqrt(target.shape[1])
                nn.init.uniform_(lin.bias, -bound, bound)

"""How the fused MLP ops see a network, and the one validation of their arguments.

The MLP is described to the ops by
    weights = [W_1 [w_1, D], ..., W_H [w_H, w_{H-1}], W_out [1, w_H]]   (nn.Linear layout)
    biases  = [] (no biases) or [b_1 [w_1], ..., b_H [w_H], b_out [1]]
    act     = activation code (ebmfast/ops/mlp_activations.py), slope = leaky_relu slope
    E(x) = W_out h_H + b_out,  h_l = sigma(a_l),  a_l = W_l h_{l-1} + b_l,  h_0 = x [B, D].

An energy opts into the fused paths (whole chains in `ebmfast.sample`, the analytic gradient
penalty) by defining a method `fused_mlp()` that returns an `MLPSpec` (or None when it cannot
be fused right now); the samplers and `grad_norm_penalty` ask for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..core import check_scalar
from .mlp_activations import activation_code, check_code

FLOAT_TYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class MLPSpec:
    """A network as the fused ops take it; `in_dim` = D (inputs [B, ...] with D features per sample)."""

    weights: Sequence[torch.Tensor]
    biases: Sequence[torch.Tensor]
    act: int
    slope: float
    in_dim: int

    def flat(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        return flatten_features(x, self.in_dim, name)

    def check_matches(self, x: torch.Tensor) -> None:
        """x must be on the parameters' device with their dtype (a clear error names both)."""
        p = self.weights[0]
        if p.device != x.device:
            raise ValueError(f"the energy's parameters are on {p.device} but x is on {x.device}; move one of them")
        if p.dtype != x.dtype:
            raise TypeError(f"the energy's parameters have dtype {p.dtype} but x has dtype {x.dtype}; "
                            f"use energy.to({x.dtype}) or x.to({p.dtype})")


def flatten_features(x: torch.Tensor, in_dim: int, name: str = "x") -> torch.Tensor:
    """x [B, ...] with in_dim features per sample -> [B, in_dim]; a clear error otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [B, {in_dim}], got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape [B, {in_dim}], got {tuple(x.shape)}")
    feats = math.prod(x.shape[1:])
    if feats != in_dim:
        raise ValueError(f"the MLP energy (in_dim={in_dim}) got {name} of shape {tuple(x.shape)} "
                         f"({feats} features per sample, expected {in_dim})")
    return x.reshape(x.shape[0], in_dim)


def fused_mlp_of(energy) -> Optional[MLPSpec]:
    """The energy's MLPSpec if it opts into the fused paths (a `fused_mlp()` method), else None."""
    hook = getattr(energy, "fused_mlp", None)
    return hook() if callable(hook) else None


def act_arg(activation) -> int:
    """An activation name or code -> its code."""
    if isinstance(activation, int) and not isinstance(activation, bool):
        return check_code(activation)
    return activation_code(activation)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Kernels run in float32/float64; half and bfloat16 are computed in float32."""
    if x.dtype in FLOAT_TYPES:
        return x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")


def check_mlp_args(x: torch.Tensor, weights, biases, activation, negative_slope, name: str = "x"):
    """Validates x [B, D] against the layer list; returns (x, weights, biases, act, slope), contiguous."""
    act = act_arg(activation)
    slope = check_scalar("negative_slope", negative_slope)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [B, D], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [B, D], got {tuple(x.shape)}")
    if not isinstance(weights, (list, tuple)) or len(weights) < 1:
        raise ValueError("weights must be a non-empty list of 2-D tensors [out, in] (the last one [1, w])")
    weights, biases = list(weights), list(biases or [])
    if biases and len(biases) != len(weights):
        raise ValueError(f"biases must be empty or one per weight ({len(weights)}), got {len(biases)}")
    fan_in = x.shape[1]
    for i, w in enumerate(weights):
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise ValueError(f"weights[{i}] must be a 2-D tensor [out, in], got "
                             f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}")
        if w.shape[1] != fan_in:
            what = f"the input dim of {name} ({fan_in})" if i == 0 else f"weights[{i - 1}].shape[0] ({fan_in})"
            raise ValueError(f"weights[{i}] has shape {tuple(w.shape)}: its in-features must equal {what}")
        if w.dtype != x.dtype:
            raise TypeError(f"weights[{i}] has dtype {w.dtype} but {name} has dtype {x.dtype}")
        if w.device != x.device:
            raise ValueError(f"weights[{i}] is on {w.device} but {name} is on {x.device}")
        fan_in = w.shape[0]
    if weights[-1].shape[0] != 1:
        raise ValueError(f"the last weight must have shape [1, w] (a scalar energy), got {tuple(weights[-1].shape)}")
    for i, (b, w) in enumerate(zip(biases, weights)):
        if not isinstance(b, torch.Tensor) or b.shape != (w.shape[0],):
            raise ValueError(f"biases[{i}] must have shape ({w.shape[0]},), got "
                             f"{tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__}")
        if b.dtype != x.dtype or b.device != x.device:
            raise TypeError(f"biases[{i}] must have dtype {x.dtype} on {x.device}, got {b.dtype} on {b.device}")
    return x.contiguous(), [w.contiguous() for w in weights], [b.contiguous() for b in biases], act, slope


def saved_width(weights) -> int:
    """Columns of the `saved` output: a_l and g_l = dE/dh_l per hidden layer."""
    return 2 * sum(int(w.shape[0]) for w in weights[:-1])


# ---- fake kernels (output shapes only) of the MLP ops, shared by the C++ and Triton registrations
def fake_energy_grad(x, weights, biases, act, slope, save):
    b = x.shape[0]
    saved = x.new_empty(b, saved_width(weights)) if save else x.new_empty(0)
    return x.new_empty(b), torch.empty_like(x), saved


def fake_energy_grad_backward(x, weights, biases, act, slope, saved, grad_e, grad_g):
    return torch.empty_like(x), [torch.empty_like(w) for w in weights], [torch.empty_like(b) for b in biases]


def fake_chain(x0, weights, biases, act, slope, n_steps, step_size, noise_scale, ref_coef, seed, lo, hi, clip_mode,
               clip_value, every, record_trajectory, record_energies, check_finite):
    t_len = -(-n_steps // every) + 1
    traj = x0.new_empty((t_len,) + tuple(x0.shape)) if record_trajectory else x0.new_empty(0)
    ens = x0.new_empty(t_len, x0.shape[0]) if record_energies else x0.new_empty(0)
    return torch.empty_like(x0), traj, ens, x0.new_empty((), dtype=torch.int64)

"""Argument checks, each written once: clear errors that name the argument and what was expected.

Public entry points validate at the boundary with these; inner code trusts its arguments.
"""
from __future__ import annotations

import math
import numbers

import torch

ON_NONFINITE = ("raise", "stop", "ignore")
SEED_MAX = 2**63 - 1


def check_scalar(name: str, value, *, positive: bool = False, nonneg: bool = False) -> float:
    """A finite real number (a one-element tensor is read out); optionally > 0 or >= 0."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonneg and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_int(name: str, value, *, minimum: int = 0) -> int:
    """An int (not a bool) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_n_steps(n_steps) -> int:
    return check_int("n_steps", n_steps, minimum=0)


def check_every(every) -> int:
    return check_int("every", every, minimum=1)


def check_seed(name: str, value) -> int:
    """A Philox seed: an int in [0, 2**63 - 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= int(value) <= SEED_MAX:
        raise ValueError(f"{name} must be in [0, 2**63 - 1], got {value}")
    return int(value)


def check_on_nonfinite(on_nonfinite: str) -> str:
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
    return on_nonfinite


def check_x0(x0, name: str = "x0") -> None:
    """A finite floating-point tensor [B, ...] with at least one data dimension."""
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, ...], got {type(x0).__name__}")
    if x0.dim() < 2:
        raise ValueError(
            f"{name} must have a batch dim and at least one data dim, shape [B, ...]; got shape "
            f"{tuple(x0.shape)} (for 1-D data use shape [B, 1])"
        )
    if not x0.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x0.dtype}")
    if not torch.isfinite(x0).all():
        raise ValueError(f"{name} contains NaN or Inf")


def energy_values(energy, x: torch.Tensor) -> torch.Tensor:
    """E(x) as shape [B]: calls the energy and applies `as_batch_energy`."""
    return as_batch_energy(energy(x), x.shape[0])


def as_batch_energy(e, batch: int) -> torch.Tensor:
    """An energy's output as shape [B]: accepts [B] or [B, 1], rejects anything else.

    The one place that states the rule "an energy maps [B, ...] to [B] ([B, 1] accepted)".
    """
    if not isinstance(e, torch.Tensor):
        raise TypeError(f"energy must return a tensor of shape [B], got {type(e).__name__}")
    if e.dim() == 2 and e.shape == (batch, 1):
        e = e.squeeze(1)
    if e.shape != (batch,):
        raise ValueError(
            f"energy must return one scalar per sample: expected shape [{batch}] or [{batch}, 1], "
            f"got {tuple(e.shape)} (an energy maps [B, ...] to [B])"
        )
    return e

"""Small shared helpers for ebmfast.data: argument checks and seeding.

Every sampler in this package takes ``seed`` (int) or ``generator``
(torch.Generator). With neither, a fresh generator is seeded from torch's
global RNG, so ``torch.manual_seed`` still makes runs repeat.
"""
from __future__ import annotations

import numbers
from typing import Optional

import torch


def check_n(n, name: str = "n") -> int:
    """Return ``n`` as a positive int or raise a TypeError/ValueError naming it."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(n).__name__} {n!r}")
    if n <= 0:
        raise ValueError(f"{name} must be a positive int, got {n}")
    return int(n)


def make_generator(seed: Optional[int] = None,
                   generator: Optional[torch.Generator] = None) -> torch.Generator:
    """A CPU torch.Generator from ``seed`` or ``generator`` (not both)."""
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    g = torch.Generator()
    if seed is None:
        # Draw from the global RNG so torch.manual_seed controls unseeded calls.
        seed = int(torch.randint(0, 2**62, (1,)).item())
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
    g.manual_seed(int(seed))
    return g


def numpy_seed(g: torch.Generator) -> int:
    """An int seed for numpy/sklearn drawn from a torch generator."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=g).item())


def as_float_tensor(x, name: str = "x", ndim: Optional[int] = None) -> torch.Tensor:
    """Convert arrays to a floating tensor and check ``ndim`` (naming ``name``)."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:  # re-raised with the name
            raise TypeError(f"{name} must be a Tensor or array, got {type(x).__name__}") from exc
    if not torch.is_floating_point(x):
        x = x.to(torch.get_default_dtype())
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(x.shape)}")
    return x

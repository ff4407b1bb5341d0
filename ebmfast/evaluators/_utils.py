"""Shared helpers: tensor checks, batched energy evaluation, blocked kernel sums."""
from __future__ import annotations

from typing import Callable, Optional

import torch


def as_2d(x, name: str) -> torch.Tensor:
    """[N, ...] -> float [N, D] (flattening trailing dims), with a named error."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:  # re-raised with the name
            raise TypeError(f"{name} must be a Tensor or array, got {type(x).__name__}") from exc
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N, ...] tensor, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.float()
    x = x.detach()
    return x.reshape(x.shape[0], -1) if x.ndim != 2 else x


def as_1d(x, name: str) -> torch.Tensor:
    """[N] or [N, 1] -> float [N], with a named error."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:  # re-raised with the name
            raise TypeError(f"{name} must be a Tensor or array, got {type(x).__name__}") from exc
    x = x.detach()
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N] (or [N, 1]) tensor, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.float()
    return x


def same_dim(x: torch.Tensor, y: torch.Tensor, nx: str, ny: str) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{nx} and {ny} must have the same feature size, got {x.shape[1]} and {y.shape[1]}")


@torch.no_grad()
def batched_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  batch_size: Optional[int] = None) -> torch.Tensor:
    """Concatenate fn(x[i:i+bs]) over batches, under no_grad."""
    if batch_size is None or batch_size >= x.shape[0]:
        return fn(x)
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)], dim=0)


def pairwise_sqdist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[N, M] squared Euclidean distances (torch.cdist; callers pass float64 for accuracy)."""
    return torch.cdist(x, y).pow_(2)


def median_sqdist(x: torch.Tensor, max_points: int = 1000, seed: int = 0) -> float:
    """Median of pairwise squared distances (i < j) of x, on a seeded subset of max_points rows."""
    if x.shape[0] > max_points:
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=g)[:max_points].to(x.device)]
    if x.shape[0] < 2:
        raise ValueError("need at least 2 points for the median heuristic")
    return float(torch.nn.functional.pdist(x.reshape(x.shape[0], -1)).pow(2).median())

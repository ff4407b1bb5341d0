"""Data of a run: load a named toy set or a user file, check it, fingerprint it, hold out test data.

A run's data is fully described by its :class:`RunConfig` (name or path, n_data,
data_seed), so ``--resume``, ``ebmfast sample`` and ``ebmfast eval`` rebuild the
identical tensor; for files the SHA-256 recorded in config.json catches a file
that changed since the run started.
"""
from __future__ import annotations

import hashlib
import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from .spec import SpecError

__all__ = ["RunData", "load_run_data", "load_eval_data", "resolve_target", "file_sha256", "is_named_dataset"]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_named_dataset(name: str) -> bool:
    from ..data import ALIASES, DATASETS
    return isinstance(name, str) and ALIASES.get(name.lower(), name.lower()) in DATASETS


def _canonical(name: str) -> str:
    from ..data import ALIASES
    return ALIASES.get(name.lower(), name.lower())


@dataclass
class RunData:
    """Training data (data coordinates), held-out test data and what is known about the law."""

    train: Tensor                   # [N, D] float32, data coordinates
    test: Tensor                    # [M, D] held-out (fresh toy draws, or the file itself)
    name: str                       # canonical set name, or the file path
    is_file: bool
    mixture: Any = None             # GaussianMixture for ring8 / grid9 / grid25 (mode coverage, KSD)
    sha256: Optional[str] = None

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])

    def describe(self) -> dict:
        return {"name": self.name, "file": self.is_file, "shape": list(self.train.shape), "sha256": self.sha256,
                "mixture": self.mixture is not None}


def _load(spec: str, n: Optional[int], seed: int) -> Tensor:
    from ..data import load_dataset
    try:
        x = load_dataset(spec, n=n, seed=seed)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise SpecError(f"--data {spec!r}: {e}") from e
    if x.ndim != 2:
        raise SpecError(f"--data {spec!r}: expected shape [N, D], got {list(x.shape)}")
    if x.shape[0] < 4:
        raise SpecError(f"--data {spec!r}: need at least 4 rows, got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise SpecError(f"--data {spec!r}: contains NaN/Inf values")
    return x.float().contiguous()


def load_run_data(spec: str, n_data: Optional[int], data_seed: int, expect_sha256: Optional[str] = None,
                  n_test: int = 4000) -> RunData:
    """Load ``spec`` (toy name or .npy/.pt path) for a run.

    Toys: ``n_data`` points (default 10000) drawn with ``data_seed``; the test set is a
    fresh draw of ``n_test`` points with another seed. Files: all rows (or a seeded subset
    of ``n_data``); the test set is the whole file (no held-out split is invented).
    Raises SpecError (exit code 2) with the reason: unknown name (listing the valid
    ones), missing file, wrong shape, NaN/Inf, or a file whose SHA-256 changed.
    """
    if not isinstance(spec, str) or not spec:
        raise SpecError("--data is required: a data set name or a .npy/.pt path")
    if is_named_dataset(spec):
        name = _canonical(spec)
        train = _load(name, n_data, data_seed)
        test = _load(name, n_test, data_seed + 1_000_003)
        from ..data import MIXTURES, get_mixture
        mix = get_mixture(name) if name in MIXTURES else None
        return RunData(train, test, name, False, mix)
    p = Path(spec)
    if not p.exists():
        from ..data import ALIASES, DATASETS
        raise SpecError(f"--data {spec!r}: not a data set name and no such file; valid names: "
                        f"{', '.join(sorted(DATASETS))} (aliases: {', '.join(sorted(ALIASES))}), "
                        "or a path to a .npy/.pt file of shape [N, D]")
    train = _load(str(p), n_data, data_seed)
    sha = file_sha256(p)
    if expect_sha256 is not None and sha != expect_sha256:
        raise SpecError(f"--data {spec!r}: the file changed since the run started (SHA-256 {sha[:12]}... != "
                        f"{expect_sha256[:12]}... in config.json)")
    full = _load(str(p), None, data_seed) if n_data is not None else train
    return RunData(train, full, str(p), True, None, sha)


def load_eval_data(spec: str, n: Optional[int], seed: int) -> Tensor:
    """Reference data for ``ebmfast eval --data``: a toy name (n fresh points) or a file."""
    if is_named_dataset(spec):
        return _load(_canonical(spec), n or 4000, seed)
    if not Path(spec).exists():
        return _load(spec, n, seed)  # raises the listing error
    return _load(spec, n, seed)


def resolve_target(spec: Optional[str]) -> Optional[Callable[[Tensor], Tensor]]:
    """Energy target for data-free trainers: a mixture toy name or ``module:callable``."""
    if spec is None:
        return None
    from ..data import MIXTURES, get_mixture
    key = _canonical(spec)
    if key in MIXTURES:
        return get_mixture(key).energy
    if ":" in spec:
        mod, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise SpecError(f"--target {spec!r}: could not import ({type(e).__name__}: {e})") from e
        if hasattr(obj, "energy") and callable(obj.energy):
            return obj.energy
        if callable(obj):
            return obj
        raise SpecError(f"--target {spec!r}: {attr} is not callable")
    raise SpecError(f"--target {spec!r}: expected one of {sorted(MIXTURES)} or module:callable (an energy [B, D] -> [B])")


def subsample(x: Tensor, n: int, seed: int) -> Tensor:
    if x.shape[0] <= n:
        return x
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(x.shape[0], generator=g)[:n]]


def is_square(n: int) -> bool:
    r = int(math.isqrt(n))
    return r * r == n

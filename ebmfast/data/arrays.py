"""User-supplied data arrays: ``.npy`` (numpy) or ``.pt`` (a torch Tensor), shape [N, D]."""
from __future__ import annotations

import pickle

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch

ARRAY_SUFFIXES = (".npy", ".pt", ".pth")


def load_array(path: Union[str, os.PathLike]) -> torch.Tensor:
    """Load a [N, D] float array from ``path`` as a float32 CPU Tensor.

    ``.npy`` is read with ``np.load(allow_pickle=False)``; ``.pt``/``.pth``
    with ``torch.load(weights_only=True)`` and must hold a Tensor (or numpy
    array). Raises FileNotFoundError for a missing file and ValueError naming
    the path for an unknown suffix, an unreadable file, a non-numeric array,
    ndim != 2, an empty array, or NaN/Inf entries.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path {str(p)!r} does not exist or is not a file")
    suffix = p.suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ValueError(f"path {str(p)!r}: expected a file ending in {ARRAY_SUFFIXES}, got {suffix!r}")
    try:
        if suffix == ".npy":
            obj = np.load(p, allow_pickle=False)
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except (OSError, ValueError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:  # reader errors, one message
        raise ValueError(f"path {str(p)!r}: could not read the file ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, np.ndarray):
        if not (np.issubdtype(obj.dtype, np.number) or obj.dtype == np.bool_):
            raise ValueError(f"path {str(p)!r}: expected a numeric array, got dtype {obj.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(obj))
    elif isinstance(obj, torch.Tensor):
        x = obj
    else:
        raise ValueError(f"path {str(p)!r}: expected a Tensor or array, got {type(obj).__name__}")
    if x.is_complex():
        raise ValueError(f"path {str(p)!r}: expected a real array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"path {str(p)!r}: expected shape [N, D] (ndim 2), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"path {str(p)!r}: expected a non-empty [N, D] array, got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = torch.nonzero(bad.any(dim=1)).flatten()[:5].tolist()
        raise ValueError(f"path {str(p)!r}: {int(bad.sum())} NaN/Inf entries (first rows: {rows})")
    return x.contiguous()

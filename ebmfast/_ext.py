"""Loads the compiled extension `ebmfast._C` once; the package works without it.

If `_C` is missing (EBMFAST_NO_EXT=1 build, no compiler) or fails to load, ebmfast
warns once and every op runs on its pure-PyTorch reference backend.
"""
from __future__ import annotations

import os
import warnings

_LOADED: bool | None = None
_ERROR: str | None = None


def load() -> bool:
    """Import ebmfast._C (registers the torch.ops.ebmfast kernels). Returns success."""
    global _LOADED, _ERROR
    if _LOADED is not None:
        return _LOADED
    if os.environ.get("EBMFAST_NO_EXT", "0") == "1":
        _LOADED, _ERROR = False, "EBMFAST_NO_EXT=1"
        warnings.warn("ebmfast: EBMFAST_NO_EXT=1, compiled kernels not loaded; using the PyTorch reference "
                      "backend.", RuntimeWarning, stacklevel=2)
        return False
    try:
        import torch  # noqa: F401  (loads libc10/libtorch, which _C links against)

        from . import _C  # noqa: F401  (import registers the ops)

        _LOADED = True
    except (ImportError, OSError) as exc:  # missing build, undefined symbols after a torch upgrade, ...
        _LOADED, _ERROR = False, f"{type(exc).__name__}: {exc}"
        warnings.warn(
            "ebmfast: compiled kernels unavailable (" + _ERROR + "); using the PyTorch reference "
            "backend. Rebuild with `pip install --no-build-isolation -e .`.",
            RuntimeWarning,
            stacklevel=2,
        )
    return _LOADED


def available() -> bool:
    return load()


def load_error() -> str | None:
    load()
    return _ERROR


def build_info() -> dict[str, bool]:
    """Which kernels the loaded _C contains, e.g. {"cpu": True, "cuda": False, "openmp": True}."""
    if not load():
        return {"cpu": False, "cuda": False, "openmp": False}
    import torch

    pairs = (kv.split("=") for kv in torch.ops.ebmfast._build_info().split(";"))
    return {k: v == "1" for k, v in pairs}

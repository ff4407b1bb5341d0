"""Launcher of the Triton Langevin-step kernel and its torch.library registration (raw ops, no autograd).

`triton_ops()` registers ebmfast::langevin_step_triton(x, grad, step_size, noise_scale, noise,
seed, offset, clamp_min, clamp_max, clip_mode, clip_value) -> x_new (the schema of
ebmfast::langevin_step, with a fake kernel) and returns (out_of_place, inplace); the caller's
autograd.Function wraps them. Kernel: langevin_step.py, imported lazily (triton is imported
only when the Triton backend runs). No launcher synchronises with the GPU.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..langevin_step import CLIP_NORM, fake_step  # the op's module is loaded before its Triton launcher
from .mlp_config import interpreting
from .mlp_launch import f64_bits


def langevin_launch_config(f64: bool, interpret: bool) -> tuple[int, int]:
    """(BLOCK_G, num_warps): groups of 4 elements per program.

    The interpreter pays per program: 1024 groups (4096 elements) each. On GPUs one group per
    thread: every lane keeps 4 Philox words, 4 normals and its x / grad / noise values live
    (AOT-compiled for sm_90: no spills; 1024 groups per program spilled 1.1-1.4 KB in float64)."""
    if interpret:
        return 1024, 4
    return 128, 4


def _row_scale(grad: torch.Tensor, clip_value: float) -> torch.Tensor:
    """Per-sample factor of the norm clip: clip_value / max(|grad_i|, clip_value)."""
    acc = torch.float64 if grad.dtype == torch.float64 else torch.float32
    norms = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=1, dtype=acc)
    return clip_value / norms.clamp_min(clip_value)


def langevin_launch(x: torch.Tensor, grad: torch.Tensor, out: torch.Tensor, step_size: float, noise_scale: float,
                    noise: Optional[torch.Tensor], seed: int, offset: int, lo: Optional[float], hi: Optional[float],
                    clip_mode: int, clip_value: float, kernel=None, block_g: Optional[int] = None) -> None:
    """out = clamp(x - step_size * clip(grad) + noise_scale * xi, lo, hi) by one launch (out may be x).
    x, grad, noise (or None: Philox noise from seed, offset) contiguous, of one shape and dtype."""
    import triton
    import triton.language as tl

    from .langevin_step import _langevin_step_fwd_kernel

    kernel = kernel if kernel is not None else _langevin_step_fwd_kernel
    n = x.numel()
    if n == 0:
        return
    row_size = max(1, n // x.shape[0]) if x.dim() > 0 and x.shape[0] > 0 else 1
    scale = _row_scale(grad, clip_value) if clip_mode == CLIP_NORM else out  # dummy pointer otherwise
    f64 = x.dtype == torch.float64
    bg, warps = langevin_launch_config(f64, interpreting())
    bg = block_g or bg
    kernel[(triton.cdiv(triton.cdiv(n, 4), bg),)](
        x, grad, noise if noise is not None else x, out, scale,
        n, row_size, seed, offset,
        f64_bits(step_size), f64_bits(noise_scale), f64_bits(lo if lo is not None else 0.0),
        f64_bits(hi if hi is not None else 0.0), f64_bits(clip_value),
        HAS_NOISE=noise is not None, HAS_LO=lo is not None, HAS_HI=hi is not None, CLIP_MODE=int(clip_mode),
        ACC=tl.float64 if f64 else tl.float32, BLOCK_G=bg, num_warps=warps,
    )


_OPS = None


def triton_ops():
    """Registers ebmfast::langevin_step_triton (once); returns (out_of_place, inplace).

    inplace(x, grad, step_size, ...) writes into x (contiguous) and returns None."""
    global _OPS
    if _OPS is not None:
        return _OPS
    from torch.library import triton_op, wrap_triton

    from .langevin_step import _langevin_step_fwd_kernel

    @triton_op("ebmfast::langevin_step_triton", mutates_args=())
    def langevin_step_triton(
        x: torch.Tensor, grad: torch.Tensor, step_size: float, noise_scale: float, noise: Optional[torch.Tensor],
        seed: int, offset: int, clamp_min: Optional[float], clamp_max: Optional[float], clip_mode: int,
        clip_value: float,
    ) -> torch.Tensor:
        out = torch.empty_like(x)
        langevin_launch(x, grad, out, step_size, noise_scale, noise, seed, offset, clamp_min, clamp_max, clip_mode,
                        clip_value, kernel=wrap_triton(_langevin_step_fwd_kernel))
        return out

    # explicit fake: the derived one runs the launcher on fake tensors, which the interpreter cannot
    langevin_step_triton.register_fake(fake_step)

    def inplace(x, grad, *args):
        langevin_launch(x, grad, x, *args)

    _OPS = (langevin_step_triton, inplace)
    return _OPS

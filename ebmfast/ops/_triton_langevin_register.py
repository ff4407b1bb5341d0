"""The Triton Langevin step: launcher and `triton_op` registration (raw ops; autograd is LangevinStepFn)."""
from __future__ import annotations

from typing import Optional

import torch

from . import _dispatch
from .langevin_step import CLIP_NORM, _fake, _row_scale

_TRITON_OPS = None


def triton_ops():
    """Registers ebmfast::langevin_step_triton (a torch.library.triton_op) on first use."""
    global _TRITON_OPS
    if _TRITON_OPS is not None:
        return _TRITON_OPS
    import triton
    import triton.language as tl
    from torch.library import triton_op, wrap_triton

    from ._triton.langevin_step import _langevin_step_fwd_kernel

    block_g = 1024  # groups per program (4096 elements): few programs, which the interpreter needs

    def launch(x, grad, out, step_size, noise_scale, noise, seed, offset, lo, hi, clip_mode, clip_value, kernel):
        n = x.numel()
        if n == 0:
            return
        row_size = max(1, n // x.shape[0]) if x.dim() > 0 and x.shape[0] > 0 else 1
        scale = _row_scale(grad, clip_value) if clip_mode == CLIP_NORM else out  # dummy pointer otherwise
        grid = (triton.cdiv(triton.cdiv(n, 4), block_g),)
        f64 = x.dtype == torch.float64
        scalars = [step_size, noise_scale, lo or 0.0, hi or 0.0, clip_value]
        params = torch.tensor(scalars, dtype=torch.float64, device=x.device) if f64 else out  # dummy if fp32
        kernel[grid](
            x, grad, noise if noise is not None else x, out, scale, params,
            n, row_size, seed, offset,
            float(step_size), float(noise_scale),
            float(lo) if lo is not None else 0.0, float(hi) if hi is not None else 0.0, float(clip_value),
            HAS_NOISE=noise is not None, HAS_LO=lo is not None, HAS_HI=hi is not None, CLIP_MODE=int(clip_mode),
            ACC=tl.float64 if f64 else tl.float32, BLOCK_G=block_g,
        )

    @triton_op("ebmfast::langevin_step_triton", mutates_args=())
    def langevin_step_triton(
        x: torch.Tensor, grad: torch.Tensor, step_size: float, noise_scale: float, noise: Optional[torch.Tensor],
        seed: int, offset: int, clamp_min: Optional[float], clamp_max: Optional[float], clip_mode: int,
        clip_value: float,
    ) -> torch.Tensor:
        out = torch.empty_like(x)
        launch(x, grad, out, step_size, noise_scale, noise, seed, offset, clamp_min, clamp_max, clip_mode,
               clip_value, wrap_triton(_langevin_step_fwd_kernel))
        return out

    if _dispatch.triton_interpret():
        # triton_op derives its fake kernel by running the launcher on fake tensors, which the
        # CPU interpreter cannot do (it reads data pointers); on GPUs the derived one is used.
        langevin_step_triton.register_fake(_fake)

    def inplace(x, grad, *args):
        launch(x, grad, x, *args, kernel=_langevin_step_fwd_kernel)

    _TRITON_OPS = (langevin_step_triton, inplace)
    return _TRITON_OPS

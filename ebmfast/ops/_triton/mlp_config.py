"""What the Triton MLP kernels take, and their launch configurations (no triton import here).

Supported: 1 <= hidden layers <= MAX_HIDDEN (6), input dim D <= MAX_D (128), hidden widths <=
MAX_WIDTH (128; all padded to one power of two HP >= 16), biases or none, float32 / float64
(the public functions compute float16 / bfloat16 in float32), every activation code 0..6.
float64 dots are exact ("ieee"); float32 dots use "tf32x3" on GPUs (three TF32 tensor-core
products, error ~2^-21 relative per product, i.e. about float32), because the exact float32
FMA dot spills far more registers. EBMFAST_TRITON_F32_DOT=ieee|tf32|tf32x3 overrides it.
The CPU interpreter computes every dot exactly.

Launch configurations: `mlp_launch_config` (one function for the three MLP kernels, GPU sizes
from ahead-of-time compiles for sm_90, interpreter sizes under TRITON_INTERPRET=1). The
registers, spills and shared memory of each configuration are in docs/triton_kernels.md and are
checked by tests/ops/test_mlp_triton_aot.py.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import torch

MAX_HIDDEN = 6
MAX_D = 128
MAX_WIDTH = 128  # a [256, 256] float32 weight tile alone is 256 KB: more shared memory than any GPU has
N_ACTIVATIONS = 7  # codes 0..6 of ebmfast/ops/mlp_activations.py
DOT_PRECISION_F32 = os.environ.get("EBMFAST_TRITON_F32_DOT", "tf32x3")
if DOT_PRECISION_F32 not in ("ieee", "tf32", "tf32x3"):
    raise ValueError(f"EBMFAST_TRITON_F32_DOT must be ieee, tf32 or tf32x3, got {DOT_PRECISION_F32!r}")

KERNELS = ("energy_grad", "chain", "backward")
# programs per launch of the backward, per streaming multiprocessor: one wave at HP = 128 (two
# blocks per SM fit its shared memory); each program owns one row of the partial-sum buffer
# (at width 128, float32, 3 hidden layers: 134 KB a row, 35 MB on a 132-SM GPU at any batch size)
BWD_PROGRAMS_PER_SM = 2


def pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


def padded_width(weights: Sequence[torch.Tensor]) -> int:
    """HP: the widest hidden layer rounded up to a power of two >= 16 (tl.dot's minimum)."""
    return max(16, pow2(max(int(w.shape[0]) for w in weights[:-1])))


def interpreting() -> bool:
    from .._dispatch import triton_interpret

    return triton_interpret()


def not_supported_reasons(x: torch.Tensor, weights: Sequence[torch.Tensor], act: int) -> list[str]:
    """Why the Triton MLP kernels cannot take these inputs (empty list: they can).

    x: [B, D]; weights: [W_1 [w_1, D], ..., W_NH [w_NH, w_NH-1], W_out [1, w_NH]] (nn.Linear layout).
    """
    if x.dim() != 2:
        return [f"triton MLP kernels need x of shape [B, D], got {tuple(x.shape)}"]
    reasons = []
    nh = len(weights) - 1
    if not 1 <= nh <= MAX_HIDDEN:
        reasons.append(f"triton MLP kernels support 1..{MAX_HIDDEN} hidden layers, got {nh}")
    if x.shape[1] > MAX_D:
        reasons.append(f"triton MLP kernels support input dim D <= {MAX_D}, got {x.shape[1]}")
    widths = [int(w.shape[0]) for w in weights[:-1]]
    if widths and max(widths) > MAX_WIDTH:
        reasons.append(f"triton MLP kernels support hidden widths <= {MAX_WIDTH}, got {max(widths)}")
    if x.device.type == "cuda" and widths and max(widths) > 64 and x.shape[1] >= 16:
        # layer 1 as a tl.dot (D >= 16) next to [*, 128] tiles: AOT-compiled for sm_90 the kernel
        # spills ~19 KB per thread (and ptxas takes minutes)
        reasons.append(f"triton MLP kernels on GPUs take D >= 16 only with hidden widths <= 64, got D = "
                       f"{x.shape[1]} and width {max(widths)} (the cuda backend takes it)")
    if not 0 <= int(act) < N_ACTIVATIONS:
        reasons.append(f"activation code {act} has no triton kernel (codes 0..{N_ACTIVATIONS - 1})")
    if x.dtype not in (torch.float32, torch.float64):
        reasons.append(f"triton MLP kernels compute in float32/float64, got {x.dtype}")
    return reasons


def backward_not_supported_reasons(x: torch.Tensor, weights: Sequence[torch.Tensor], act: int) -> list[str]:
    """Why the Triton MLP backward kernel cannot take these inputs (empty list: it can): the limits
    of `not_supported_reasons`, and on GPUs float64 only up to width 64. (float64 at width 128,
    AOT-compiled for sm_90 with 16 rows, the fewest tl.dot takes, and 4 or 8 warps: 16-29 KB of
    spills per thread under Triton 3.6 / 3.8, and 152 KB of shared memory.)"""
    reasons = not_supported_reasons(x, weights, act)
    if not reasons and x.device.type == "cuda" and x.dtype == torch.float64 and padded_width(weights) > 64:
        reasons.append(f"the triton MLP backward on GPUs takes float64 only with hidden widths <= 64, got "
                       f"{max(int(w.shape[0]) for w in weights[:-1])} (the cuda backend takes it)")
    return reasons


def mlp_launch_config(kernel: str, hp: int, batch: int, f64: bool, interpret: bool) -> tuple[int, int]:
    """(BLOCK_B, num_warps) of an MLP kernel ("energy_grad", "chain" or "backward") at padded width HP.

    The interpreter pays per program, not per element: there one program takes up to 256 rows.
    On GPUs: sizes chosen from ahead-of-time compiles for sm_90 (registers, spills and shared
    memory per kernel under Triton 3.6 and 3.8: docs/triton_kernels.md), not from GPU timings.
    tl.dot needs BLOCK_B >= 16; the backward's tile rows are also the K dim of its d_l^T v_{l-1}
    products, and it keeps 2-3 tiles per hidden layer against the forward's one, so it takes 16.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if interpret:
        return max(16, min(256, pow2(batch))), 4
    if kernel == "backward":
        return (16, 4) if hp <= 32 else (16, 8)
    if f64:  # (32, 4) spilled 0.2 KB at HP 32 (Triton 3.6), 3.1-3.7 KB at HP 64; (16, 4): 0 / 0.5 KB
        return 16, 4
    if hp <= 32:
        return 64, 4
    # HP 64: (32, 4) spilled up to 0.6 KB, (32, 8) 2.1-3.5 KB at D >= 16; HP 128: (32, 8) 0.8-2.9 KB
    return 16, 8


def bwd_dq(dp: int) -> int:
    """Width of the backward's layer-1 tiles: DP zero-extended to >= 32. (16 is enough for tl.dot,
    but AOT-compiled for sm_90 the N = 16 products spill 4-5 KB per thread at HP = 64; 32: ~200 B.)"""
    return max(dp, 32)


def bwd_use_scratch(hp: int) -> bool:
    """Keep the backward's a_l, g_l, r_l in a per-program global (L2) scratch instead of registers?
    At HP = 128: there the register version spills several KB per thread and needs more shared
    memory than an H100 has in float64 (AOT-compiled for sm_90); at HP <= 64 registers fit."""
    return hp >= 128


def bwd_max_programs(device: torch.device, interpret: bool) -> int:
    """Programs per launch of the backward (its partial-sum buffer has one row per program; larger
    batches take several launches)."""
    if interpret or device.type != "cuda":
        return 1 << 30  # the interpreter runs programs one by one: no cap needed
    return BWD_PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count


def kernel_meta(acc: torch.dtype) -> dict:
    import triton.language as tl

    f64 = acc == torch.float64
    return {"ACC": tl.float64 if f64 else tl.float32, "PREC": "ieee" if f64 else DOT_PRECISION_F32}

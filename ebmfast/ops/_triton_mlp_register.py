"""Triton backend of the fused MLP-energy ops: parameter packing, support checks, launchers, triton_ops.

Kernels: ebmfast/ops/_triton/mlp_energy.py and ebmfast/ops/_triton/mlp_backward.py (imported
lazily, so CPU-only installs never import triton). Semantics and argument lists are those of the C++ schemas (csrc/mlp_schemas.cpp) and
the references in ebmfast/ops/mlp_energy.py; `triton_ops()` registers

    ebmfast::mlp_energy_grad_triton(x, weights, biases, act, slope, save) -> (E, grad_x E, saved)
    ebmfast::mlp_langevin_chain_triton(x0, weights, biases, act, slope, n_steps, step_size,
        noise_scale, ref_coef, seed, clamp_min, clamp_max, clip_mode, clip_value, every,
        record_trajectory, record_energies, check_finite) -> (x, trajectory, energies, bad_step)
    ebmfast::mlp_energy_grad_backward_triton(x, weights, biases, act, slope, saved, grad_e, grad_g)
        -> (grad_x, grad_weights, grad_biases)   (kernel: ebmfast/ops/_triton/mlp_backward.py)

with the autograd of ebmfast::mlp_energy_grad. The public functions in ebmfast/ops/mlp_energy.py
call them when the dispatcher picks "triton" and `not_supported_reasons(...)` is empty:

    ops = triton_ops()
    e, g, saved = ops.energy_grad(x, weights, biases, act, slope, save)
    x, traj, ens, bad = ops.chain(x0, weights, biases, act, slope, n_steps, ...)
    gx, gw, gb = ops.energy_grad_backward(x, weights, biases, act, slope, saved, grad_e, grad_g)

Supported: 1 <= hidden layers <= MAX_HIDDEN (6), input dim D <= MAX_D (128), hidden widths <=
MAX_WIDTH (128; all padded to one power of two HP >= 16), biases or none, float32 / float64
(the public functions compute float16 / bfloat16 in float32), every activation code 0..6.
float64 dots are exact ("ieee"); float32 dots use "tf32x3" on GPUs (three TF32 tensor-core
products, error ~2^-21 relative per product, i.e. about float32), because the exact float32 FMA
dot compiles, for HP = 128, to a kernel with 32 registers and 8 KB of stack per thread
(AOT-compiled for sm_80/sm_90; no GPU run yet). EBMFAST_TRITON_F32_DOT=ieee|tf32|tf32x3
overrides it. The CPU interpreter computes every dot exactly.
"""
from __future__ import annotations

import math
import os
from types import SimpleNamespace
from typing import Optional, Sequence

import torch

MAX_HIDDEN = 6
MAX_D = 128
MAX_WIDTH = 128  # a [256, 256] float32 weight tile alone is 256 KB: more shared memory than any GPU has
N_ACTIVATIONS = 7  # codes 0..6 of ebmfast/ops/mlp_activations.py
DOT_PRECISION_F32 = os.environ.get("EBMFAST_TRITON_F32_DOT", "tf32x3")
if DOT_PRECISION_F32 not in ("ieee", "tf32", "tf32x3"):
    raise ValueError(f"EBMFAST_TRITON_F32_DOT must be ieee, tf32 or tf32x3, got {DOT_PRECISION_F32!r}")


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


def not_supported_reasons(x: torch.Tensor, weights: Sequence[torch.Tensor], act: int) -> list[str]:
    """Why the Triton MLP kernels cannot take these inputs (empty list: they can).

    x: [B, D]; weights: [W_1 [w_1, D], ..., W_NH [w_NH, w_NH-1], W_out [1, w_NH]] (nn.Linear layout).
    """
    reasons = []
    if x.dim() != 2:
        return [f"triton MLP kernels need x of shape [B, D], got {tuple(x.shape)}"]
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
        # gets 32 registers and ~19 KB of stack per thread (and ptxas takes minutes)
        reasons.append(f"triton MLP kernels on GPUs take D >= 16 only with hidden widths <= 64, got D = "
                       f"{x.shape[1]} and width {max(widths)} (the cuda backend takes it)")
    if not 0 <= int(act) < N_ACTIVATIONS:
        reasons.append(f"activation code {act} has no triton kernel (codes 0..{N_ACTIVATIONS - 1})")
    if x.dtype not in (torch.float32, torch.float64):
        reasons.append(f"triton MLP kernels compute in float32/float64, got {x.dtype}")
    return reasons


def pack_mlp_params(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], dtype: torch.dtype,
                    slope: float = 0.0):
    """One zero-padded flat buffer in the layout of ebmfast/ops/_triton/mlp_energy.py.

    Args:
        weights: NH + 1 Linear weights [w_1, D], [w_2, w_1], ..., [1, w_NH].
        biases: [] (no biases) or NH + 1 biases [w_1], ..., [1].
        dtype: compute dtype (float32 or float64).
        slope: leaky-relu negative slope (stored after b_out).

    Returns:
        (buf [HP*DP + (NH-1)*HP*HP + NH*HP + 2*HP], DP, HP, NH)
    """
    nh = len(weights) - 1
    d = int(weights[0].shape[1])
    dp = _pow2(d)
    hp = max(16, _pow2(max(int(w.shape[0]) for w in weights[:-1])))
    buf = torch.zeros(hp * dp + (nh - 1) * hp * hp + nh * hp + 2 * hp, dtype=dtype, device=weights[0].device)
    with torch.no_grad():
        buf[: hp * dp].view(hp, dp)[: weights[0].shape[0], :d] = weights[0]
        o = hp * dp
        for l in range(1, nh):
            buf[o : o + hp * hp].view(hp, hp)[: weights[l].shape[0], : weights[l].shape[1]] = weights[l]
            o += hp * hp
        if biases:
            for l in range(nh):
                buf[o + l * hp : o + l * hp + biases[l].shape[0]] = biases[l]
        o += nh * hp
        buf[o : o + weights[nh].shape[1]] = weights[nh].reshape(-1)
        if biases:
            buf[o + hp : o + hp + 1] = biases[nh].reshape(1)
        buf[o + hp + 1] = float(slope)
    return buf, dp, hp, nh


def _config(hp: int, batch: int, interpret: bool, f64: bool = False) -> tuple[int, int]:
    """(BLOCK_B, num_warps) for a padded width HP.

    Chosen from ahead-of-time compiles (tests/ops/triton_aot_check.py: shared memory and spill
    bytes per thread of the full-featured chain kernel, NH = 3), not from GPU timings (none yet):
      float32 tf32x3: HP 32 -> (64, 4): 32 B;  HP 64 -> (32, 4): 288 B (sm_80);
                      HP 128 -> (32, 8): ~1 KB, 64 KB smem ((64, 8): 1.5 KB and 192 KB smem)
      float64:        HP <= 64 -> (32, 4): 48 B / ~800 B ((16, 4) spills 2.2 KB);
                      HP 128 -> (16, 4): 2.8 KB, 145 KB smem (32 rows would need ~290 KB)
    The interpreter pays per program, not per element: there one program takes up to 256 rows."""
    if interpret:
        return max(16, min(256, _pow2(batch))), 4
    if f64:
        return (32, 4) if hp <= 64 else (16, 4)
    if hp <= 32:
        return 64, 4
    if hp <= 64:
        return 32, 4
    return 32, 8


def _use_scratch(hp: int, nh: int, scratch: Optional[bool]) -> bool:
    """Keep act'(a_l) in a global (L2) scratch instead of registers? Off by default: AOT-compiled
    for sm_90 (HP=128, NH=4, BLOCK_B=32, 8 warps, tf32x3) it spills more (608 B of stack per
    thread) than the register version (368 B); kept as an option for tuning on a GPU."""
    if scratch is not None:
        return scratch
    return False


def _kernel_meta(acc: torch.dtype):
    import triton.language as tl

    f64 = acc == torch.float64
    return {"ACC": tl.float64 if f64 else tl.float32, "PREC": "ieee" if f64 else DOT_PRECISION_F32}


def _interpret() -> bool:
    from ._dispatch import triton_interpret

    return triton_interpret()


def energy_grad_launch(x, weights, biases, act: int, slope: float, save: bool, kernel=None,
                       block_b: Optional[int] = None, scratch: Optional[bool] = None):
    """(E [B], grad_x E [B, D], saved [B, 2*sum(w_l)] or empty) by one launch; x [B, D] float32/64."""
    import triton

    from ._triton.mlp_energy import _mlp_energy_grad_fwd_kernel

    kernel = kernel if kernel is not None else _mlp_energy_grad_fwd_kernel
    x = x.contiguous()
    buf, dp, hp, nh = pack_mlp_params(weights, biases, x.dtype, slope)
    b, d = x.shape
    widths = [int(w.shape[0]) for w in weights[:-1]]
    e = torch.empty(b, dtype=x.dtype, device=x.device)
    g = torch.empty_like(x)
    saved = x.new_empty(b, 2 * sum(widths)) if save else x.new_empty(0)
    if b == 0:
        return e, g, saved
    bb, warps = _config(hp, b, _interpret(), x.dtype == torch.float64)
    bb = block_b or bb
    w = widths + [0] * (6 - len(widths))
    n_prog = triton.cdiv(b, bb)
    scr = _use_scratch(hp, nh, scratch)
    scr_buf = x.new_empty(n_prog * nh * bb * hp) if scr else e
    kernel[(n_prog,)](
        x, buf, e, g, saved if save else e, scr_buf, b,
        D=d, DP=dp, HP=hp, NH=nh, ACT=int(act), BLOCK_B=bb, WANT_GRAD=True, SAVE=bool(save),
        W1=w[0], W2=w[1], W3=w[2], W4=w[3], W5=w[4], W6=w[5], SCR=scr, num_warps=warps, num_stages=1,
        **_kernel_meta(x.dtype),
    )
    return e, g, saved


def chain_launch(x0, weights, biases, act: int, slope: float, n_steps: int, step_size: float, noise_scale: float,
                 ref_coef: float, seed: int, clamp_min: Optional[float], clamp_max: Optional[float], clip_mode: int,
                 clip_value: float, every: int, record_trajectory: bool, record_energies: bool, check_finite: bool,
                 kernel=None, offset: int = 0, block_b: Optional[int] = None, scratch: Optional[bool] = None):
    """The whole chain in ONE launch; outputs as ebmfast::mlp_langevin_chain (see its schema).

    Returns (x [B, D], trajectory [T, B, D] or empty, energies [T, B] or empty, bad_step int64
    0-d tensor: first step with a non-finite energy/gradient, -1 if none or not checked).
    `offset` shifts the Philox offsets (step k uses offset + k); the op uses 0.
    """
    import triton

    from ._triton.mlp_energy import _mlp_chain_fwd_kernel

    kernel = kernel if kernel is not None else _mlp_chain_fwd_kernel
    x0 = x0.contiguous()
    acc = x0.dtype
    buf, dp, hp, nh = pack_mlp_params(weights, biases, acc, slope)
    b, d = x0.shape
    scalars = torch.tensor([step_size, noise_scale, ref_coef, clamp_min if clamp_min is not None else 0.0,
                            clamp_max if clamp_max is not None else 0.0, clip_value], dtype=acc).to(x0.device)
    out = torch.empty_like(x0)
    t_len = -(-n_steps // every) + 1
    traj = x0.new_empty((t_len, b, d)) if record_trajectory else x0.new_empty(0)
    ens = x0.new_empty((t_len, b)) if record_energies else x0.new_empty(0)
    if b == 0:
        return out, traj, ens, torch.full((), -1, dtype=torch.int64, device=x0.device)
    bb, warps = _config(hp, b, _interpret(), acc == torch.float64)
    bb = block_b or bb
    n_prog = triton.cdiv(b, bb)
    bad = torch.empty(n_prog, dtype=torch.int32, device=x0.device)
    scr = _use_scratch(hp, nh, scratch)
    scr_buf = x0.new_empty(n_prog * nh * bb * hp) if scr else out
    # num_stages=1: the step loop must not be software-pipelined (that multi-buffers every
    # layer's weight tile in shared memory: 400-800 KB when AOT-compiled, a kernel that cannot launch)
    kernel[(n_prog,)](
        x0, out, buf, scalars, traj if record_trajectory else out, ens if record_energies else out, bad, scr_buf,
        b, n_steps, seed, offset, every, 0,
        D=d, DP=dp, HP=hp, NH=nh, ACT=int(act), BLOCK_B=bb,
        HAS_NOISE=noise_scale != 0.0, HAS_REF=ref_coef != 0.0, HAS_LO=clamp_min is not None,
        HAS_HI=clamp_max is not None, CLIP_MODE=int(clip_mode), REC_TRAJ=bool(record_trajectory),
        REC_E=bool(record_energies), CHECK=bool(check_finite), SCR=scr, num_warps=warps, num_stages=1,
        **_kernel_meta(acc),
    )
    if check_finite:
        first = bad.min().to(torch.int64)
        bad_step = torch.where(first >= n_steps, torch.full_like(first, -1), first)
    else:
        bad_step = torch.full((), -1, dtype=torch.int64, device=x0.device)
    return out, traj, ens, bad_step


def _bwd_config(hp: int, batch: int, interpret: bool, f64: bool = False) -> tuple[int, int]:
    """(BLOCK_B, num_warps) of the backward kernel.

    It keeps 2-3 tiles per hidden layer (a_l, g_l, r_l) against the forward's one and runs ~3x
    the products, so it takes 16 rows per program on GPUs (the floor: the tile's particles are
    the reduction dim K of tl.dot in d_l^T v_{l-1}). Chosen from ahead-of-time compiles for sm_90
    (NH = 3, D = 2, SiLU; stack = spilled bytes per thread), not from GPU timings (none yet):
      float32 tf32x3: HP 16-32 -> (16, 4): 0 B ((32, 4) at HP 32: 1.5 KB);  HP 64 -> (16, 8): 0 B
                      ((16, 4): 176 B);  HP 128 -> (16, 8) with the scratch (_bwd_use_scratch):
                      536 B, 68 KB smem ((16, 4) in registers: 2.7 KB)
      float64:        HP 32 -> (16, 4): 0 B;  HP 64 -> (16, 8): 56 B ((16, 4): ~1 KB);
                      HP 128 -> (16, 8) with the scratch: 2.2 KB, 152 KB smem
    Shared memory beyond a GPU's limit (float64 at HP 128 on consumer GPUs, ~99 KB) fails at
    launch with OutOfResources; mlp_energy._backward_impl then falls back to the reference.
    The interpreter pays per program, not per element: there one program takes up to 256 rows."""
    if interpret:
        return max(16, min(256, _pow2(batch))), 4
    return (16, 4) if hp <= 32 else (16, 8)


def _bwd_dq(dp: int) -> int:
    """Width of the backward's layer-1 tiles: DP zero-extended to >= 32. (16 is enough for tl.dot,
    but AOT-compiled for sm_90 the N = 16 products spill 4-5 KB per thread at HP = 64; 32: ~200 B.)"""
    return max(dp, 32)


def _bwd_use_scratch(hp: int, nh: int, scratch: Optional[bool]) -> bool:
    """Keep a_l, g_l, r_l in a per-program global (L2) scratch instead of registers?

    Default: at HP = 128 only. AOT-compiled for sm_90 (BLOCK_B 16, 8 warps) the scratch cuts
    shared memory and spills there: float32 NH 3 / 6: 100 / 149 KB smem, 600 B / 3.1 KB stack ->
    68 KB, 536 / 80 B; float64: 184 / 233 KB (more than an H100 has) -> 152 KB (fits A100 and
    H100), 1.4 / 3.2 KB -> 2.2 KB. At HP <= 64 registers spill nothing (see _bwd_config)."""
    return hp >= 128 if scratch is None else bool(scratch)


def unpack_mlp_grads(flat: torch.Tensor, weights: Sequence[torch.Tensor], n_biases: int, dp: int, hp: int):
    """The parameter gradients from a flat vector in the layout of `pack_mlp_params`.

    Returns ([dW_1 [w_1, D], ..., dW_out [1, w_NH]], [db_1, ..., db_out] or [] when n_biases == 0)."""
    nh = len(weights) - 1
    d = int(weights[0].shape[1])
    gw = [flat[: hp * dp].view(hp, dp)[: weights[0].shape[0], :d].clone()]
    o = hp * dp
    for l in range(1, nh):
        gw.append(flat[o : o + hp * hp].view(hp, hp)[: weights[l].shape[0], : weights[l].shape[1]].clone())
        o += hp * hp
    gb = [flat[o + l * hp : o + l * hp + weights[l].shape[0]].clone() for l in range(nh)] if n_biases else []
    o += nh * hp
    gw.append(flat[o : o + weights[nh].shape[1]].clone().view(1, -1))
    if n_biases:
        gb.append(flat[o + hp : o + hp + 1].clone())
    return gw, gb


def energy_grad_backward_launch(x, weights, biases, act: int, slope: float, saved, grad_e, grad_g, kernel=None,
                                block_b: Optional[int] = None, scratch: Optional[bool] = None):
    """VJP of (E, grad_x E) by one launch: (grad_x [B, D], [grad W_l], [grad b_l]), as
    ebmfast::mlp_energy_grad_backward (csrc/mlp_schemas.cpp).

    x [B, D] float32/64; grad_e [B] and grad_g [B, D] the cotangents of E and grad_x E. `saved`
    is not read: the kernel recomputes the forward in registers (GPU forwards do not save).
    The per-program parameter-gradient partial sums [n_programs, total] are summed here
    (deterministic; no atomics)."""
    import triton

    from ._triton.mlp_backward import _mlp_energy_grad_bwd_kernel

    kernel = kernel if kernel is not None else _mlp_energy_grad_bwd_kernel
    x = x.contiguous()
    grad_e = grad_e.to(x.dtype).contiguous()
    grad_g = grad_g.to(x.dtype).contiguous()
    b, d = x.shape
    if grad_e.shape != (b,) or grad_g.shape != (b, d):
        raise ValueError(f"grad_e must have shape ({b},) and grad_g ({b}, {d}), got {tuple(grad_e.shape)} and "
                         f"{tuple(grad_g.shape)}")
    buf, dp, hp, nh = pack_mlp_params(weights, biases, x.dtype, slope)
    if b == 0:
        return torch.zeros_like(x), [torch.zeros_like(w) for w in weights], [torch.zeros_like(v) for v in biases]
    gx = torch.empty_like(x)
    bb, warps = _bwd_config(hp, b, _interpret(), x.dtype == torch.float64)
    bb = block_b or bb
    if bb < 16 or bb & (bb - 1):
        raise ValueError(f"block_b must be a power of two >= 16, got {bb}")
    n_prog = triton.cdiv(b, bb)
    part = x.new_empty(n_prog, buf.numel())
    scr = _bwd_use_scratch(hp, nh, scratch)
    scr_buf = x.new_empty(n_prog * 3 * nh * bb * hp) if scr else part
    kernel[(n_prog,)](
        x, buf, grad_e, grad_g, gx, part, scr_buf, b,
        D=d, DP=dp, DQ=_bwd_dq(dp), HP=hp, NH=nh, ACT=int(act), BLOCK_B=bb, SCR=scr, num_warps=warps,
        num_stages=1, **_kernel_meta(x.dtype),
    )
    gw, gb = unpack_mlp_grads(part.sum(0), weights, len(biases), dp, hp)
    return gx, gw, gb


# --------------------------------------------------------------------------- torch.library registration
_OPS = None


def triton_ops() -> SimpleNamespace:
    """Registers ebmfast::mlp_energy_grad_triton / ebmfast::mlp_langevin_chain_triton (once)."""
    global _OPS
    if _OPS is not None:
        return _OPS
    from torch.library import triton_op, wrap_triton

    from . import mlp_energy as m
    from .mlp_langevin_chain import _fake_chain
    from ._triton.mlp_backward import _mlp_energy_grad_bwd_kernel
    from ._triton.mlp_energy import _mlp_chain_fwd_kernel, _mlp_energy_grad_fwd_kernel

    @triton_op("ebmfast::mlp_energy_grad_triton", mutates_args=())
    def mlp_energy_grad_triton(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], act: int,
                               slope: float, save: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return energy_grad_launch(x, weights, biases, act, slope, save, kernel=wrap_triton(_mlp_energy_grad_fwd_kernel))

    @triton_op("ebmfast::mlp_langevin_chain_triton", mutates_args=())
    def mlp_langevin_chain_triton(
        x0: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], act: int, slope: float,
        n_steps: int, step_size: float, noise_scale: float, ref_coef: float, seed: int, clamp_min: Optional[float],
        clamp_max: Optional[float], clip_mode: int, clip_value: float, every: int, record_trajectory: bool,
        record_energies: bool, check_finite: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return chain_launch(x0, weights, biases, act, slope, n_steps, step_size, noise_scale, ref_coef, seed,
                            clamp_min, clamp_max, clip_mode, clip_value, every, record_trajectory, record_energies,
                            check_finite, kernel=wrap_triton(_mlp_chain_fwd_kernel))

    @triton_op("ebmfast::mlp_energy_grad_backward_triton", mutates_args=())
    def mlp_energy_grad_backward_triton(
        x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], act: int, slope: float,
        saved: torch.Tensor, grad_e: torch.Tensor, grad_g: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        return energy_grad_backward_launch(x, weights, biases, act, slope, saved, grad_e, grad_g,
                                           kernel=wrap_triton(_mlp_energy_grad_bwd_kernel))

    if _interpret():
        # triton_op derives its fake kernel by running the launcher on fake tensors, which the CPU
        # interpreter cannot do (it reads data pointers); on GPUs the derived one is used
        mlp_energy_grad_triton.register_fake(m._fake_energy_grad)
        mlp_langevin_chain_triton.register_fake(_fake_chain)
        mlp_energy_grad_backward_triton.register_fake(m._fake_energy_grad_backward)
    _OPS = SimpleNamespace(energy_grad=mlp_energy_grad_triton, chain=mlp_langevin_chain_triton,
                           energy_grad_backward=mlp_energy_grad_backward_triton)
    return _OPS

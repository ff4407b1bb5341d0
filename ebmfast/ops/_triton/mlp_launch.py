"""Launchers of the Triton MLP kernels and their torch.library registration (raw ops, no autograd).

Kernels: mlp_energy.py (energy + gradient, whole chain) and mlp_backward.py (analytic double
backward), imported lazily, so CPU-only installs never import triton. Semantics and argument
lists are those of the C++ schemas (csrc/mlp_schemas.cpp) and the references in
ebmfast/ops/mlp_energy.py. `triton_ops()` registers

    ebmfast::mlp_energy_grad_triton(x, weights, biases, act, slope, save) -> (E, grad_x E, saved)
    ebmfast::mlp_langevin_chain_triton(x0, weights, biases, act, slope, n_steps, step_size,
        noise_scale, ref_coef, seed, clamp_min, clamp_max, clip_mode, clip_value, every,
        record_trajectory, record_energies, check_finite) -> (x, trajectory, energies, bad_step)
    ebmfast::mlp_energy_grad_backward_triton(x, weights, biases, act, slope, saved, grad_e, grad_g)
        -> (grad_x, grad_weights, grad_biases)

each with a fake kernel and no autograd (the caller's autograd.Function calls energy_grad in its
forward and energy_grad_backward in its backward). What the kernels take: mlp_config.py.
No launcher synchronises with the GPU: scalars travel as kernel arguments (`f64_bits`).
"""
from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Optional, Sequence

import torch

from ..mlp_spec import fake_chain, fake_energy_grad, fake_energy_grad_backward
from .mlp_config import (backward_not_supported_reasons, bwd_dq, bwd_max_programs, bwd_use_scratch, interpreting,
                         kernel_meta, mlp_launch_config, not_supported_reasons, padded_width, pow2)

__all__ = ["backward_not_supported_reasons", "chain_launch", "energy_grad_backward_launch", "energy_grad_launch",
           "f64_bits", "not_supported_reasons", "pack_mlp_params", "triton_ops", "unpack_mlp_grads"]


def f64_bits(v: float) -> int:
    """The bit pattern of float64 v as a signed int64: a kernel argument that keeps all 53 bits
    (Triton passes Python floats as float32); the kernels decode it with `f64_arg`."""
    return struct.unpack("<q", struct.pack("<d", float(v)))[0]


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
    dp = pow2(d)
    hp = padded_width(weights)
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
        buf[o + hp + 1] = float(slope)  # a fill kernel on the device, no host-device copy
    return buf, dp, hp, nh


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


def _block(kernel: str, hp: int, batch: int, dtype: torch.dtype, block_b: Optional[int]) -> tuple[int, int]:
    bb, warps = mlp_launch_config(kernel, hp, batch, dtype == torch.float64, interpreting())
    if block_b is not None:
        if block_b < 16 or block_b & (block_b - 1):
            raise ValueError(f"block_b must be a power of two >= 16 (tl.dot's minimum), got {block_b}")
        bb = block_b
    return bb, warps


def energy_grad_launch(x, weights, biases, act: int, slope: float, save: bool, kernel=None,
                       block_b: Optional[int] = None):
    """(E [B], grad_x E [B, D], saved [B, 2*sum(w_l)] or empty) by one launch; x [B, D] float32/64.
    block_b overrides the configured rows per program (tests)."""
    import triton

    from .mlp_energy import _mlp_energy_grad_fwd_kernel

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
    bb, warps = _block("energy_grad", hp, b, x.dtype, block_b)
    w = widths + [0] * (6 - len(widths))
    kernel[(triton.cdiv(b, bb),)](
        x, buf, e, g, saved if save else e, b,
        D=d, DP=dp, HP=hp, NH=nh, ACT=int(act), BLOCK_B=bb, WANT_GRAD=True, SAVE=bool(save),
        W1=w[0], W2=w[1], W3=w[2], W4=w[3], W5=w[4], W6=w[5], num_warps=warps, num_stages=1,
        **kernel_meta(x.dtype),
    )
    return e, g, saved


def chain_launch(x0, weights, biases, act: int, slope: float, n_steps: int, step_size: float, noise_scale: float,
                 ref_coef: float, seed: int, clamp_min: Optional[float], clamp_max: Optional[float], clip_mode: int,
                 clip_value: float, every: int, record_trajectory: bool, record_energies: bool, check_finite: bool,
                 kernel=None, offset: int = 0, block_b: Optional[int] = None):
    """The whole chain in ONE launch; outputs as ebmfast::mlp_langevin_chain (see its schema).

    Returns (x [B, D], trajectory [T, B, D] or empty, energies [T, B] or empty, bad_step int64
    0-d tensor: first step with a non-finite energy/gradient, -1 if none or not checked).
    `offset` shifts the Philox offsets (step k uses offset + k); the op uses 0.
    """
    import triton

    from .mlp_energy import _mlp_chain_fwd_kernel

    kernel = kernel if kernel is not None else _mlp_chain_fwd_kernel
    x0 = x0.contiguous()
    acc = x0.dtype
    buf, dp, hp, nh = pack_mlp_params(weights, biases, acc, slope)
    b, d = x0.shape
    out = torch.empty_like(x0)
    t_len = -(-n_steps // every) + 1
    traj = x0.new_empty((t_len, b, d)) if record_trajectory else x0.new_empty(0)
    ens = x0.new_empty((t_len, b)) if record_energies else x0.new_empty(0)
    if b == 0:
        return out, traj, ens, torch.full((), -1, dtype=torch.int64, device=x0.device)
    bb, warps = _block("chain", hp, b, acc, block_b)
    n_prog = triton.cdiv(b, bb)
    bad = torch.empty(n_prog, dtype=torch.int32, device=x0.device)
    # num_stages=1: the step loop must not be software-pipelined (that multi-buffers every
    # layer's weight tile in shared memory: 400-800 KB when AOT-compiled, a kernel that cannot launch)
    kernel[(n_prog,)](
        x0, out, buf, traj if record_trajectory else out, ens if record_energies else out, bad,
        b, n_steps, seed, offset, every, 0,
        f64_bits(step_size), f64_bits(noise_scale), f64_bits(ref_coef),
        f64_bits(clamp_min if clamp_min is not None else 0.0), f64_bits(clamp_max if clamp_max is not None else 0.0),
        f64_bits(clip_value),
        D=d, DP=dp, HP=hp, NH=nh, ACT=int(act), BLOCK_B=bb,
        HAS_NOISE=noise_scale != 0.0, HAS_REF=ref_coef != 0.0, HAS_LO=clamp_min is not None,
        HAS_HI=clamp_max is not None, CLIP_MODE=int(clip_mode), REC_TRAJ=bool(record_trajectory),
        REC_E=bool(record_energies), CHECK=bool(check_finite), num_warps=warps, num_stages=1,
        **kernel_meta(acc),
    )
    if check_finite:
        first = bad.min().to(torch.int64)
        bad_step = torch.where(first >= n_steps, torch.full_like(first, -1), first)
    else:
        bad_step = torch.full((), -1, dtype=torch.int64, device=x0.device)
    return out, traj, ens, bad_step


def energy_grad_backward_launch(x, weights, biases, act: int, slope: float, saved, grad_e, grad_g, kernel=None,
                                block_b: Optional[int] = None, scratch: Optional[bool] = None,
                                max_programs: Optional[int] = None):
    """VJP of (E, grad_x E): (grad_x [B, D], [grad W_l], [grad b_l]), as
    ebmfast::mlp_energy_grad_backward (csrc/mlp_schemas.cpp).

    x [B, D] float32/64; grad_e [B] and grad_g [B, D] the cotangents of E and grad_x E. `saved`
    is not read: the kernel recomputes the forward in registers (GPU forwards do not save).
    Launches of at most `max_programs` programs (default `bwd_max_programs`), one row block each,
    cover the batch; after each, its parameter-gradient partial sums [n_programs, total] are summed
    here (deterministic; no atomics), so that buffer stays small at any batch size.
    block_b / scratch / max_programs override the configuration (tests)."""
    import triton

    from .mlp_backward import _mlp_energy_grad_bwd_kernel

    kernel = kernel if kernel is not None else _mlp_energy_grad_bwd_kernel
    x = x.contiguous()
    grad_e = grad_e.to(x.dtype).contiguous()
    grad_g = grad_g.to(x.dtype).contiguous()
    b, d = x.shape
    if grad_e.shape != (b,) or grad_g.shape != (b, d):
        raise ValueError(f"grad_e must have shape ({b},) and grad_g ({b}, {d}), got {tuple(grad_e.shape)} and "
                         f"{tuple(grad_g.shape)}")
    if max_programs is not None and max_programs < 1:
        raise ValueError(f"max_programs must be >= 1, got {max_programs}")
    buf, dp, hp, nh = pack_mlp_params(weights, biases, x.dtype, slope)
    if b == 0:
        return torch.zeros_like(x), [torch.zeros_like(w) for w in weights], [torch.zeros_like(v) for v in biases]
    gx = torch.empty_like(x)
    bb, warps = _block("backward", hp, b, x.dtype, block_b)
    cap = max_programs if max_programs is not None else bwd_max_programs(x.device, interpreting())
    n_blocks = triton.cdiv(b, bb)
    n_prog = min(n_blocks, cap)
    part = x.new_empty(n_prog, buf.numel())  # each launch writes every element of its programs' rows
    scr = bwd_use_scratch(hp) if scratch is None else bool(scratch)
    scr_buf = x.new_empty(n_prog * 3 * nh * bb * hp) if scr else part
    flat = None
    for blk0 in range(0, n_blocks, n_prog):  # launches and sums on one stream: ordered, no synchronisation
        n = min(n_prog, n_blocks - blk0)
        kernel[(n,)](
            x, buf, grad_e, grad_g, gx, part, scr_buf, b, blk0,
            D=d, DP=dp, DQ=bwd_dq(dp), HP=hp, NH=nh, ACT=int(act), BLOCK_B=bb, SCR=scr, num_warps=warps,
            num_stages=1, **kernel_meta(x.dtype),
        )
        flat = part[:n].sum(0) if flat is None else flat + part[:n].sum(0)
    gw, gb = unpack_mlp_grads(flat, weights, len(biases), dp, hp)
    return gx, gw, gb


# --------------------------------------------------------------------------- torch.library registration
_OPS = None


def triton_ops() -> SimpleNamespace:
    """Registers the three ebmfast::mlp_*_triton ops (once) and returns them as
    SimpleNamespace(energy_grad, chain, energy_grad_backward)."""
    global _OPS
    if _OPS is not None:
        return _OPS
    from torch.library import triton_op, wrap_triton

    from .mlp_backward import _mlp_energy_grad_bwd_kernel
    from .mlp_energy import _mlp_chain_fwd_kernel, _mlp_energy_grad_fwd_kernel

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

    # explicit fakes: triton_op would derive them by running the launchers on fake tensors, which
    # the interpreter cannot do (it reads data pointers) and which would query the device (SM count)
    mlp_energy_grad_triton.register_fake(fake_energy_grad)
    mlp_langevin_chain_triton.register_fake(fake_chain)
    mlp_energy_grad_backward_triton.register_fake(fake_energy_grad_backward)
    _OPS = SimpleNamespace(energy_grad=mlp_energy_grad_triton, chain=mlp_langevin_chain_triton,
                           energy_grad_backward=mlp_energy_grad_backward_triton)
    return _OPS

"""Triton kernels of the fused MLP energy: E(x) + grad_x E(x), and a whole K-step chain.

GPU; on the CPU under TRITON_INTERPRET=1. Launched by ebmfast/ops/_triton/mlp_launch.py;
the semantics are those of the references in ebmfast/ops/mlp_energy.py.

Network (ebmfast.energies.MLPEnergy), NH hidden layers, notation of ebmfast/ops/mlp_energy.py:
    h_0 = x [B, D];  a_l = h_{l-1} W_l^T + b_l,  h_l = act(a_l)  (l = 1..NH);  E = h_NH . w_out + b_out
(in the code below `z` is the pre-activation a_l and `a` the activation h_l).
Parameters arrive as ONE flat buffer packed by `pack_mlp_params` (zero padded, so no weight masks):
    [W_1: HP x DP][W_2..W_NH: (NH-1) x HP x HP][b_1..b_NH: NH x HP][w_out: HP][b_out, slope, 0...: HP]
(the leaky-relu slope rides in the buffer). DP = padded D, HP = padded max hidden width (powers
of two, HP >= 16 so tl.dot applies). Padding is exact for every activation: a padded unit has zero outgoing weights, so
act(0) != 0 (softplus) never reaches the energy, and its backward signal is zero.

Each program owns BLOCK_B particles. The forward keeps act'(a_l) of every layer in registers
(d1..d6: NH <= 6 is unrolled by constexpr `if`s), the backward runs g = (g * d_l) @ W_l down to
grad_x. Every weight tile is loaded where it is used (from L2 on a GPU); the chain kernel must be
launched with num_stages=1 (see the launcher). The chain kernel runs all K steps in one launch:
energy, gradient, reference term,
clip, noise and clamp per step without leaving registers; the noise is ebmfast's Philox stream
(csrc/include/ebmfast/philox.h) of the flattened [B, D] state with offset = offset0 + step, so
the chain equals ebmfast.ops.langevin_step applied step by step.
"""
import triton
import triton.language as tl

from .langevin_step import _box_muller, f64_arg

MAX_HIDDEN = 6  # d1..d6 below; deeper nets fall back (see mlp_config.not_supported_reasons)

# ACT codes: those of ebmfast/ops/mlp_activations.py (relu 0, leaky_relu 1, silu 2, softplus 3,
# elu 4, tanh 5, gelu (tanh approximation) 6)


@triton.jit
def _tanh(z):
    # tanh from exp (no tanh in tl core): exact at +-inf, absolute error ~eps near 0
    t = tl.exp(-2.0 * tl.abs(z))
    r = (1.0 - t) / (1.0 + t)
    return tl.where(z < 0, -r, r)


@triton.jit
def _act(z, slope, ACT: tl.constexpr):
    """(act(z), act'(z)) with torch's conventions (relu'(0) = 0, leaky'(0) = slope,
    softplus beta=1 threshold=20, elu alpha=1, gelu approximate='tanh')."""
    if ACT == 0:
        a = tl.where(z <= 0, 0.0, z)  # keeps NaN like torch.relu
        d = tl.where(z <= 0, 0.0, 1.0)
    elif ACT == 1:
        a = tl.where(z > 0, z, z * slope)
        d = tl.where(z > 0, 1.0, slope)
    elif ACT == 2:
        s = 1.0 / (1.0 + tl.exp(-z))
        a = z * s
        d = s * (1.0 + z * (1.0 - s))
    elif ACT == 3:
        # log(1 + exp(-|z|)) in place of log1p: absolute error < eps, and the energy is a sum
        sp = tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z)))
        a = tl.where(z > 20.0, z, sp)
        d = tl.where(z > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-z)))
    elif ACT == 4:
        ez = tl.exp(tl.minimum(z, 0.0))
        a = tl.where(z > 0, z, ez - 1.0)
        d = tl.where(z > 0, 1.0, ez)
    elif ACT == 5:
        a = _tanh(z)
        d = 1.0 - a * a
    else:
        # tl.full keeps float64 constants exact (a Python float literal is a float32 constant)
        k0 = tl.full([], 0.7978845608028654, z.dtype)  # sqrt(2 / pi)
        kk = tl.full([], 0.044715, z.dtype)
        t = _tanh(k0 * (z + kk * z * z * z))
        a = 0.5 * z * (1.0 + t)
        d = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k0 * (1.0 + 3.0 * kk * z * z)
    return a.to(z.dtype), d.to(z.dtype)


@triton.jit
def _matmul(a, b, PREC: tl.constexpr):
    """a [M, K] @ b [K, N] (K, N >= 16; M >= 16)."""
    return tl.dot(a, b, input_precision=PREC, out_dtype=a.dtype)


@triton.jit
def _hidden(a, p_ptr, l, slope, DP: tl.constexpr, HP: tl.constexpr, NH: tl.constexpr, ACT: tl.constexpr,
            PREC: tl.constexpr):
    """Hidden layer l >= 2 (1-based): (a_l, act'(z_l), z_l) from a_{l-1} [BLOCK_B, HP]."""
    offs_h = tl.arange(0, HP)
    w_base = p_ptr + HP * DP + (l - 2) * HP * HP
    # W_l^T [in, out] by pointer arithmetic on the row-major [out, in] tile
    wt = tl.load(w_base + offs_h[None, :] * HP + offs_h[:, None])
    b = tl.load(p_ptr + HP * DP + (NH - 1) * HP * HP + (l - 1) * HP + offs_h)
    z = _matmul(a, wt, PREC) + b[None, :]
    a, d = _act(z, slope, ACT)
    return a, d, z


@triton.jit
def _hidden_bwd(gz, p_ptr, l, DP: tl.constexpr, HP: tl.constexpr, PREC: tl.constexpr):
    """dE/da_{l-1} = (dE/dz_l) @ W_l for hidden layer l >= 2."""
    offs_h = tl.arange(0, HP)
    w = tl.load(p_ptr + HP * DP + (l - 2) * HP * HP + offs_h[:, None] * HP + offs_h[None, :])
    return _matmul(gz, w, PREC)


@triton.jit
def _save(saved_ptr, rows, rmask, S, OFF: tl.constexpr, W: tl.constexpr, v, HP: tl.constexpr):
    """v[:, :W] -> saved[rows, OFF:OFF+W] (saved is [B, S] row-major)."""
    cols = tl.arange(0, HP)
    tl.store(saved_ptr + rows[:, None] * S + OFF + cols[None, :], v.to(saved_ptr.dtype.element_ty),
             mask=rmask[:, None] & (cols[None, :] < W))


@triton.jit
def _energy_grad_tile(x, p_ptr, saved_ptr, rows, rmask, DP: tl.constexpr, HP: tl.constexpr,
                      NH: tl.constexpr, ACT: tl.constexpr, PREC: tl.constexpr, WANT_GRAD: tl.constexpr,
                      SAVE: tl.constexpr, W1: tl.constexpr, W2: tl.constexpr, W3: tl.constexpr, W4: tl.constexpr,
                      W5: tl.constexpr, W6: tl.constexpr):
    """x [BLOCK_B, DP] (padded columns 0) -> (E [BLOCK_B], grad_x [BLOCK_B, DP], or x when not WANT_GRAD).

    SAVE (needs WANT_GRAD): also writes the op's `saved` rows, per hidden layer l the
    pre-activation z_l then dE/da_l (widths W_l, row length S = 2 * sum W_l)."""
    offs_h = tl.arange(0, HP)
    offs_d = tl.arange(0, DP)
    bias_base = p_ptr + HP * DP + (NH - 1) * HP * HP
    out_base = bias_base + NH * HP
    slope = tl.load(out_base + HP + 1)
    S: tl.constexpr = 2 * (W1 + W2 + W3 + W4 + W5 + W6)
    O2: tl.constexpr = 2 * W1
    O3: tl.constexpr = O2 + 2 * W2
    O4: tl.constexpr = O3 + 2 * W3
    O5: tl.constexpr = O4 + 2 * W4
    O6: tl.constexpr = O5 + 2 * W5
    # ---- layer 1: tl.dot needs K >= 16; for small D a broadcast-sum is cheaper anyway
    w1t = tl.load(p_ptr + offs_h[None, :] * DP + offs_d[:, None])  # [DP, HP]
    if DP >= 16:
        z = _matmul(x, w1t, PREC)
    else:
        z = tl.sum(x[:, :, None] * w1t[None, :, :], axis=1)
    z = z + tl.load(bias_base + offs_h)[None, :]
    if SAVE:
        _save(saved_ptr, rows, rmask, S, 0, W1, z, HP)
    a, d1 = _act(z, slope, ACT)
    # ---- hidden layers 2..NH, unrolled; d_l = act'(z_l) kept for the backward pass
    if NH >= 2:
        a, d2, z = _hidden(a, p_ptr, 2, slope, DP, HP, NH, ACT, PREC)
        if SAVE:
            _save(saved_ptr, rows, rmask, S, O2, W2, z, HP)
    if NH >= 3:
        a, d3, z = _hidden(a, p_ptr, 3, slope, DP, HP, NH, ACT, PREC)
        if SAVE:
            _save(saved_ptr, rows, rmask, S, O3, W3, z, HP)
    if NH >= 4:
        a, d4, z = _hidden(a, p_ptr, 4, slope, DP, HP, NH, ACT, PREC)
        if SAVE:
            _save(saved_ptr, rows, rmask, S, O4, W4, z, HP)
    if NH >= 5:
        a, d5, z = _hidden(a, p_ptr, 5, slope, DP, HP, NH, ACT, PREC)
        if SAVE:
            _save(saved_ptr, rows, rmask, S, O5, W5, z, HP)
    if NH >= 6:
        a, d6, z = _hidden(a, p_ptr, 6, slope, DP, HP, NH, ACT, PREC)
        if SAVE:
            _save(saved_ptr, rows, rmask, S, O6, W6, z, HP)
    w_out = tl.load(out_base + offs_h)
    b_out = tl.load(out_base + HP)
    e = tl.sum(a * w_out[None, :], axis=1) + b_out
    if WANT_GRAD:
        g = tl.zeros_like(a) + w_out[None, :]  # dE/da_NH
        if NH >= 6:
            if SAVE:
                _save(saved_ptr, rows, rmask, S, O6 + W6, W6, g, HP)
            g = _hidden_bwd(g * d6, p_ptr, 6, DP, HP, PREC)
        if NH >= 5:
            if SAVE:
                _save(saved_ptr, rows, rmask, S, O5 + W5, W5, g, HP)
            g = _hidden_bwd(g * d5, p_ptr, 5, DP, HP, PREC)
        if NH >= 4:
            if SAVE:
                _save(saved_ptr, rows, rmask, S, O4 + W4, W4, g, HP)
            g = _hidden_bwd(g * d4, p_ptr, 4, DP, HP, PREC)
        if NH >= 3:
            if SAVE:
                _save(saved_ptr, rows, rmask, S, O3 + W3, W3, g, HP)
            g = _hidden_bwd(g * d3, p_ptr, 3, DP, HP, PREC)
        if NH >= 2:
            if SAVE:
                _save(saved_ptr, rows, rmask, S, O2 + W2, W2, g, HP)
            g = _hidden_bwd(g * d2, p_ptr, 2, DP, HP, PREC)
        if SAVE:
            _save(saved_ptr, rows, rmask, S, W1, W1, g, HP)
        g = g * d1
        w1 = tl.load(p_ptr + offs_h[:, None] * DP + offs_d[None, :])  # [HP, DP]
        if DP >= 16:
            gx = _matmul(g, w1, PREC)
        else:
            gx = tl.sum(g[:, :, None] * w1[None, :, :], axis=1)
    else:
        gx = x
    return e, gx


@triton.jit(do_not_specialize=["B"])
def _mlp_energy_grad_fwd_kernel(
    x_ptr, p_ptr, e_ptr, g_ptr, saved_ptr, B,
    D: tl.constexpr, DP: tl.constexpr, HP: tl.constexpr, NH: tl.constexpr, ACT: tl.constexpr,
    ACC: tl.constexpr, PREC: tl.constexpr, BLOCK_B: tl.constexpr, WANT_GRAD: tl.constexpr, SAVE: tl.constexpr,
    W1: tl.constexpr, W2: tl.constexpr, W3: tl.constexpr, W4: tl.constexpr, W5: tl.constexpr, W6: tl.constexpr,
):
    """E [B] (and grad_x [B, D] when WANT_GRAD, `saved` when SAVE) of x [B, D].

    ACC: float64 for float64 data, else float32. W1..W6: hidden widths (0 past NH), for SAVE."""
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, DP)
    rmask = rows < B
    mask = rmask[:, None] & (cols[None, :] < D)
    idx = rows[:, None] * D + cols[None, :]
    x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(ACC)
    e, gx = _energy_grad_tile(x, p_ptr, saved_ptr, rows, rmask, DP, HP, NH, ACT, PREC, WANT_GRAD, SAVE,
                              W1, W2, W3, W4, W5, W6)
    tl.store(e_ptr + rows, e.to(e_ptr.dtype.element_ty), mask=rmask)
    if WANT_GRAD:
        tl.store(g_ptr + idx, gx.to(g_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _normal_at(idx, seed, off, ACC: tl.constexpr):
    """Element idx (int64) of the Philox normal stream for counter offset `off` (int64 scalar).

    Group idx // 4 gives words w0..w3; lanes 0, 1 take Box-Muller of (w0, w1), lanes 2, 3 of
    (w2, w3): the mapping of _langevin_step_fwd_kernel, one pair per element."""
    grp = idx >> 2
    lane = idx & 3
    c0 = (grp & 0xFFFFFFFF).to(tl.uint32)
    c1 = ((grp >> 32) & 0xFFFFFFFF).to(tl.uint32)
    c2 = tl.zeros_like(c0) + (off & 0xFFFFFFFF).to(tl.uint32)
    c3 = tl.zeros_like(c0) + ((off >> 32) & 0xFFFFFFFF).to(tl.uint32)
    w0, w1, w2, w3 = tl.philox(seed, c0, c1, c2, c3)
    lo_pair = lane < 2
    zc, zs = _box_muller(tl.where(lo_pair, w0, w2), tl.where(lo_pair, w1, w3), ACC)
    return tl.where((lane & 1) == 0, zc, zs)


@triton.jit(do_not_specialize=["B", "n_steps", "seed", "offset", "every", "zero", "step_bits", "noise_bits",
                                 "ref_bits", "lo_bits", "hi_bits", "clip_bits"])
def _mlp_chain_fwd_kernel(
    x_ptr, out_ptr, p_ptr, traj_ptr, en_ptr, bad_ptr,
    B, n_steps, seed, offset, every, zero,
    step_bits: tl.int64, noise_bits: tl.int64, ref_bits: tl.int64, lo_bits: tl.int64, hi_bits: tl.int64,
    clip_bits: tl.int64,
    D: tl.constexpr, DP: tl.constexpr, HP: tl.constexpr, NH: tl.constexpr, ACT: tl.constexpr,
    ACC: tl.constexpr, PREC: tl.constexpr, BLOCK_B: tl.constexpr,
    HAS_NOISE: tl.constexpr, HAS_REF: tl.constexpr, HAS_LO: tl.constexpr, HAS_HI: tl.constexpr,
    CLIP_MODE: tl.constexpr, REC_TRAJ: tl.constexpr, REC_E: tl.constexpr, CHECK: tl.constexpr,
):
    """n_steps chain steps on x [B, D] -> out [B, D]; *_bits: step_size, noise_scale, inv_sigma2, lo, hi,
    clip_value as float64 bit patterns (see `f64_arg`). Per step k (offset0 = `offset`):

        g = grad_x E(x) (+ x * inv_sigma2 when HAS_REF);  g = clip(g)  (1: value, 2: per-sample norm)
        x = clamp(x - step_size * g + noise_scale * philox_normal([B, D], seed, offset + k), lo, hi)

    and x is rounded to the storage dtype after each step (as the step-by-step path does).
    REC_TRAJ / REC_E: x_k and E(x_k) for k % every == 0 go to slot k // every of traj [T, B, D] /
    en [T, B]; slot T - 1 = cdiv(n_steps, every) holds the final state and its energy.
    CHECK: bad[pid] = first step at which an energy or a drift element (gradient + reference term)
    of this program is non-finite (n_steps if none). Element-wise: the references test the
    sum, which also trips when finite values overflow it.
    """
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, DP)
    rmask = rows < B
    cmask = cols[None, :] < D
    mask = rmask[:, None] & cmask
    idx = rows[:, None] * D + cols[None, :]
    x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(ACC)
    step_size = f64_arg(step_bits, ACC)
    noise_scale = f64_arg(noise_bits, ACC)
    inv_sigma2 = f64_arg(ref_bits, ACC)
    clamp_lo = f64_arg(lo_bits, ACC)
    clamp_hi = f64_arg(hi_bits, ACC)
    clip_value = f64_arg(clip_bits, ACC)
    bad = n_steps
    off0 = offset.to(tl.int64)
    for k in range(n_steps):
        # `zero` is a runtime 0 (a kernel argument): it makes the weight addresses step-dependent,
        # which stops the compiler from hoisting all layers' weight tiles out of the step loop
        # (AOT-compiled for sm_80 without it: 400-800 KB of shared memory, a kernel that cannot launch)
        pk = p_ptr + k * zero
        e, g = _energy_grad_tile(x, pk, x_ptr, rows, rmask, DP, HP, NH, ACT, PREC, True, False,
                                 0, 0, 0, 0, 0, 0)
        if REC_TRAJ or REC_E:
            if k % every == 0:
                slot = (k // every).to(tl.int64)
                if REC_TRAJ:
                    tl.store(traj_ptr + slot * B * D + idx, x.to(traj_ptr.dtype.element_ty), mask=mask)
                if REC_E:
                    tl.store(en_ptr + slot * B + rows, e.to(en_ptr.dtype.element_ty), mask=rmask)
        if HAS_REF:
            g = g + x * inv_sigma2
        if CHECK:
            # the drift (after the reference term) and the energies, element by element:
            # v - v is NaN exactly for NaN and +-Inf
            n_bad = tl.sum(tl.where(rmask & ((e - e) != 0.0), 1, 0), axis=0) + \
                tl.sum(tl.sum(tl.where(mask & ((g - g) != 0.0), 1, 0), axis=1), axis=0)
            bad = tl.where((bad == n_steps) & (n_bad > 0), k, bad)
        if CLIP_MODE == 1:
            g = tl.minimum(tl.maximum(g, -clip_value), clip_value)
        if CLIP_MODE == 2:
            nrm = tl.sqrt(tl.sum(g * g, axis=1))
            g = g * (clip_value / tl.where(nrm > clip_value, nrm, clip_value))[:, None]
        y = x - step_size * g
        if HAS_NOISE:
            y = y + noise_scale * _normal_at(idx, seed, off0 + k, ACC)
        if HAS_LO:
            y = tl.where(y < clamp_lo, clamp_lo, y)
        if HAS_HI:
            y = tl.where(y > clamp_hi, clamp_hi, y)
        # padded columns stay 0 (they feed zero weights, but keep them finite)
        x = tl.where(cmask, y, 0.0).to(out_ptr.dtype.element_ty).to(ACC)
    tl.store(out_ptr + idx, x.to(out_ptr.dtype.element_ty), mask=mask)
    if REC_TRAJ or REC_E:
        last = ((n_steps + every - 1) // every).to(tl.int64)
        if REC_TRAJ:
            tl.store(traj_ptr + last * B * D + idx, x.to(traj_ptr.dtype.element_ty), mask=mask)
        if REC_E:
            e, _ = _energy_grad_tile(x, p_ptr, x_ptr, rows, rmask, DP, HP, NH, ACT, PREC, False, False,
                                     0, 0, 0, 0, 0, 0)
            tl.store(en_ptr + last * B + rows, e.to(en_ptr.dtype.element_ty), mask=rmask)
    if CHECK:
        tl.store(bad_ptr + pid, bad)

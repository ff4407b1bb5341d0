"""Triton kernel of the analytic double backward of the fused MLP energy (ebmfast::mlp_energy_grad_backward).

GPU; on the CPU under TRITON_INTERPRET=1. Launched by `energy_grad_backward_launch` in
ebmfast/ops/_triton/mlp_launch.py; the semantics are those of `mlp_energy_grad_backward_ref`
(ebmfast/ops/mlp_energy.py), the math that of `backward_tiles` in csrc/cpu/mlp_kernel_impl.h:

    per particle: a_l, h_l = sigma(a_l), g_l = dE/dh_l, d_l = g_l * sigma'(a_l), g_{l-1} = d_l W_l,
    grad_x E = g_0; cotangents gE (on E) and v_0 = gG (on grad_x E).
    v pass (l = 1..H):  u_l = v_{l-1} W_l^T,  v_l = u_l * sigma'(a_l),  r_l = u_l * g_l * sigma''(a_l),
                        dW_l += d_l^T v_{l-1};  then dw_out += sum_t (v_H + gE h_H),  db_out += sum_t gE
    s pass (l = H..1):  s_H = r_H + gE w_out sigma'(a_H),  dW_l += s_l^T h_{l-1},  db_l += sum_t s_l,
                        s_{l-1} = r_{l-1} + (s_l W_l) * sigma'(a_{l-1}),  grad_x = s_1 W_1.

Parameters: the flat zero-padded buffer of `pack_mlp_params` (layout: ebmfast/ops/_triton/mlp_energy.py).
Each program owns BLOCK_B particles and recomputes everything it needs (the op's `saved` is not
read: GPU forwards do not produce it):
  1. forward, keeping a_l (l = 1..NH);
  2. backward of E, keeping g_l = dE/dh_l (g_NH = w_out);
  3. v pass, keeping r_l; writes this program's d_l^T v_{l-1} and dw_out / db_out;
  4. s pass: adds s_l^T h_{l-1} to its dW_l (read-modify-write of its own rows), writes db_l and grad_x.
sigma, sigma', sigma'' are recomputed from a_l where needed (cheaper in registers than three
more tiles per layer). The kept tiles (a_l, g_l, r_l) stay in registers, or (SCR; see
`bwd_use_scratch` in mlp_config.py) in a per-program global scratch [3 * NH, BLOCK_B, HP]
(L2-resident). sigma and sigma' come from
formulas free of cancellation (`_sigmoid2`, `_tanh2`), so they can differ from the forward
kernel's `_act` in the last bits.

The launcher covers the batch in launches of at most `bwd_max_programs` programs, one row block
each (program p of a launch takes block blk0 + p), so `part` stays small at any batch size.
Weight/bias gradients: program p writes its partial sums to part[p, :] in the packed layout of
the parameter buffer (dW_1 [HP, DP], dW_2..dW_NH [HP, HP], db_1..db_NH [HP], dw_out [HP],
[db_out, 0, ...] [HP]; every element written). The launcher sums part over programs with torch
after each launch: deterministic, no atomics. Padded rows (beyond B) load x = v_0 = gE = 0 and then
contribute exactly zero (v_l = r_l = s_l = 0 for them).

Layer 1 runs at width DQ = max(DP, 32) (x, v_0, grad_x and W_1 zero-extended by masked loads),
so that every product is a tl.dot (the outer products d_l^T v_{l-1} need N >= 16; 32 compiles to
far fewer spilled registers, see `bwd_dq` in mlp_config.py).
float64 dots are "ieee" (exact FMA); float32 ones use DOT_PRECISION_F32, as in the forward.
"""
import triton
import triton.language as tl

from .mlp_energy import _matmul


# ---- tiles kept for a later pass: in registers, or (SCR) slot `slot` of this program's scratch
# [n_slots, BLOCK_B, HP]
@triton.jit
def _put(t, scr_ptr, slot: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr, SCR: tl.constexpr):
    if SCR:
        offs = tl.arange(0, BLOCK_B)[:, None] * HP + tl.arange(0, HP)[None, :]
        tl.store(scr_ptr + slot * BLOCK_B * HP + offs, t)
        return 0.0
    else:
        return t


@triton.jit
def _get(t, scr_ptr, slot: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr, SCR: tl.constexpr):
    if SCR:
        offs = tl.arange(0, BLOCK_B)[:, None] * HP + tl.arange(0, HP)[None, :]
        return tl.load(scr_ptr + slot * BLOCK_B * HP + offs)
    else:
        return t


@triton.jit
def _sigmoid2(z):
    """(sigmoid(z), 1 - sigmoid(z)), both without cancellation (from exp(-|z|))."""
    ez = tl.exp(-tl.abs(z))
    p = 1.0 / (1.0 + ez)
    q = ez * p
    pos = z >= 0
    return tl.where(pos, p, q), tl.where(pos, q, p)


@triton.jit
def _tanh2(y):
    """(tanh(y), 1 + tanh(y), 1 - tanh(y)^2), the last two without cancellation near tanh = -1 / +-1:
    with e = exp(-2|y|), 1 -+ |tanh| = 2e / (1 + e) and sech^2 = 4e / (1 + e)^2. (float32 computing
    1 - t^2 for |y| ~ 5 loses 8 bits; gelu's sigma'' multiplies it by ~a^5 / 100.)"""
    e = tl.exp(-2.0 * tl.abs(y))
    p = 1.0 / (1.0 + e)
    r = (1.0 - e) * p
    t = tl.where(y < 0, -r, r)
    return t, tl.where(y < 0, 2.0 * e * p, 2.0 * p), 4.0 * e * p * p


@triton.jit
def _act2(z, slope, ACT: tl.constexpr):
    """(sigma(z), sigma'(z), sigma''(z)) for the activation codes of ebmfast/ops/mlp_activations.py:
    the formulas of `act_derivs` there, with sigmoid / tanh complements computed without
    cancellation (float32 against the float64 reference)."""
    if ACT == 0:
        a = tl.where(z <= 0, 0.0, z)  # keeps NaN like torch.relu
        d = tl.where(z <= 0, 0.0, 1.0)
        dd = tl.zeros_like(z)
    elif ACT == 1:
        a = tl.where(z > 0, z, z * slope)
        d = tl.where(z > 0, 1.0, slope)
        dd = tl.zeros_like(z)
    elif ACT == 2:
        s, sc = _sigmoid2(z)
        a = z * s
        d = s * (1.0 + z * sc)
        dd = s * sc * (2.0 + z * (sc - s))
    elif ACT == 3:
        big = z > 20.0  # torch's threshold: softplus(z) = z above it
        s, sc = _sigmoid2(z)
        sp = tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z)))
        a = tl.where(big, z, sp)
        d = tl.where(big, 1.0, s)
        dd = tl.where(big, 0.0, s * sc)
    elif ACT == 4:
        ez = tl.exp(tl.minimum(z, 0.0))
        a = tl.where(z > 0, z, ez - 1.0)
        d = tl.where(z > 0, 1.0, ez)
        dd = tl.where(z > 0, 0.0, ez)
    elif ACT == 5:
        a, _tp, d = _tanh2(z)
        dd = -2.0 * a * d
    else:
        # tl.full keeps float64 constants exact (a Python float literal is a float32 constant)
        k0 = tl.full([], 0.7978845608028654, z.dtype)  # sqrt(2 / pi)
        kk = tl.full([], 0.044715, z.dtype)
        t, tp, sech2 = _tanh2(k0 * (z + kk * z * z * z))
        du = k0 * (1.0 + 3.0 * kk * z * z)
        a = 0.5 * z * tp
        d = 0.5 * tp + 0.5 * z * sech2 * du
        dd = sech2 * (du + 0.5 * z * (6.0 * k0 * kk * z - 2.0 * t * du * du))
    return a.to(z.dtype), d.to(z.dtype), dd.to(z.dtype)


@triton.jit
def _acc(ptrs, v, mask=None):
    """*ptrs += v (the s pass adds s_l^T h_{l-1} to the v pass's d_l^T v_{l-1})."""
    tl.store(ptrs, tl.load(ptrs, mask=mask) + v, mask=mask)


@triton.jit
def _mm_tn(a, b, PREC: tl.constexpr):
    """a^T @ b for a [K, M], b [K, N]: the sum over the tile's K particles of outer products."""
    return tl.dot(tl.trans(a), b, input_precision=PREC, out_dtype=a.dtype)


# ---- weight tiles (row-major [out, in] in the packed buffer; padding is zero)
@triton.jit
def _w1t(p_ptr, DP: tl.constexpr, DQ: tl.constexpr, HP: tl.constexpr):
    """W_1^T [DQ, HP] (rows >= DP zero)."""
    q = tl.arange(0, DQ)[:, None]
    return tl.load(p_ptr + tl.arange(0, HP)[None, :] * DP + q, mask=q < DP, other=0.0)


@triton.jit
def _w1(p_ptr, DP: tl.constexpr, DQ: tl.constexpr, HP: tl.constexpr):
    """W_1 [HP, DQ] (columns >= DP zero)."""
    q = tl.arange(0, DQ)[None, :]
    return tl.load(p_ptr + tl.arange(0, HP)[:, None] * DP + q, mask=q < DP, other=0.0)


@triton.jit
def _wt(p_ptr, l: tl.constexpr, DP: tl.constexpr, HP: tl.constexpr):
    """W_l^T [HP_in, HP_out], hidden layer l >= 2."""
    o = tl.arange(0, HP)
    return tl.load(p_ptr + HP * DP + (l - 2) * HP * HP + o[None, :] * HP + o[:, None])


@triton.jit
def _w(p_ptr, l: tl.constexpr, DP: tl.constexpr, HP: tl.constexpr):
    """W_l [HP_out, HP_in], hidden layer l >= 2."""
    o = tl.arange(0, HP)
    return tl.load(p_ptr + HP * DP + (l - 2) * HP * HP + o[:, None] * HP + o[None, :])


@triton.jit
def _fwd(h, p_ptr, l: tl.constexpr, slope, DP: tl.constexpr, HP: tl.constexpr, NH: tl.constexpr,
         ACT: tl.constexpr, PREC: tl.constexpr):
    """(a_l, h_l) from h_{l-1} [BLOCK_B, HP]."""
    b = tl.load(p_ptr + HP * DP + (NH - 1) * HP * HP + (l - 1) * HP + tl.arange(0, HP))
    a = _matmul(h, _wt(p_ptr, l, DP, HP), PREC) + b[None, :]
    hl, _d, _dd = _act2(a, slope, ACT)
    return a, hl


@triton.jit
def _gstep(g, a, p_ptr, l: tl.constexpr, slope, DP: tl.constexpr, HP: tl.constexpr, ACT: tl.constexpr,
           PREC: tl.constexpr):
    """g_{l-1} = (g_l * sigma'(a_l)) @ W_l."""
    _h, d, _dd = _act2(a, slope, ACT)
    return _matmul(g * d, _w(p_ptr, l, DP, HP), PREC)


@triton.jit
def _vstep(v, a, g, p_ptr, part_ptr, l: tl.constexpr, slope, DP: tl.constexpr, HP: tl.constexpr,
           ACT: tl.constexpr, PREC: tl.constexpr):
    """v pass at layer l >= 2: writes d_l^T v_{l-1} to this program's dW_l; returns (v_l, h_l, sigma'_l, r_l)."""
    u = _matmul(v, _wt(p_ptr, l, DP, HP), PREC)
    h, d, dd = _act2(a, slope, ACT)
    o = tl.arange(0, HP)
    tl.store(part_ptr + HP * DP + (l - 2) * HP * HP + o[:, None] * HP + o[None, :], _mm_tn(g * d, v, PREC))
    return u * d, h, d, u * g * dd


@triton.jit
def _sstep(s, a_prev, r_prev, p_ptr, part_ptr, l: tl.constexpr, slope, DP: tl.constexpr, HP: tl.constexpr,
           NH: tl.constexpr, ACT: tl.constexpr, PREC: tl.constexpr):
    """s pass at layer l >= 2: db_l = sum s_l, dW_l += s_l^T h_{l-1}; returns s_{l-1}."""
    h, d, _dd = _act2(a_prev, slope, ACT)
    o = tl.arange(0, HP)
    tl.store(part_ptr + HP * DP + (NH - 1) * HP * HP + (l - 1) * HP + o, tl.sum(s, axis=0))
    _acc(part_ptr + HP * DP + (l - 2) * HP * HP + o[:, None] * HP + o[None, :], _mm_tn(s, h, PREC))
    return r_prev + _matmul(s, _w(p_ptr, l, DP, HP), PREC) * d


@triton.jit(do_not_specialize=["B", "blk0"])
def _mlp_energy_grad_bwd_kernel(
    x_ptr, p_ptr, ge_ptr, gg_ptr, gx_ptr, part_ptr, scr_ptr, B, blk0,
    D: tl.constexpr, DP: tl.constexpr, DQ: tl.constexpr, HP: tl.constexpr, NH: tl.constexpr,
    ACT: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr, BLOCK_B: tl.constexpr, SCR: tl.constexpr,
):
    """grad_x [B, D] and part [n_programs, TOTAL] (this program's parameter-gradient sums) from
    x [B, D], grad_e [B], grad_g [B, D]; TOTAL = HP*DP + (NH-1)*HP*HP + NH*HP + 2*HP.

    ACC: float64 for float64 data, else float32. DQ >= max(DP, 16) (layer-1 tile width).
    scr_ptr: [n_programs, 3 * NH, BLOCK_B, HP] when SCR, else unused. Program p takes row block
    blk0 + p and writes its sums to part[p]."""
    pid = tl.program_id(0)
    offs_h = tl.arange(0, HP)
    TOTAL: tl.constexpr = HP * DP + (NH - 1) * HP * HP + NH * HP + 2 * HP
    part = part_ptr + pid.to(tl.int64) * TOTAL
    scr = scr_ptr + pid.to(tl.int64) * (3 * NH * BLOCK_B * HP)
    bias_base = p_ptr + HP * DP + (NH - 1) * HP * HP
    out_base = bias_base + NH * HP
    slope = tl.load(out_base + HP + 1)
    w_out = tl.load(out_base + offs_h)
    wq = tl.arange(0, DQ)[None, :]
    # slots of the kept tiles: a_l -> l - 1, g_l -> NH + l - 1, r_l -> 2 NH + l - 1
    G0: tl.constexpr = NH - 1
    R0: tl.constexpr = 2 * NH - 1
    # row block of this program in this launch (the launcher caps the programs per launch)
    rows = (pid + blk0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, DQ)
    rmask = rows < B
    mask = rmask[:, None] & (cols[None, :] < D)
    idx = rows[:, None] * D + cols[None, :]
    x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(ACC)

    # ---- 1. forward: a_l
    a1 = _matmul(x, _w1t(p_ptr, DP, DQ, HP), PREC) + tl.load(bias_base + offs_h)[None, :]
    h, _d, _dd = _act2(a1, slope, ACT)
    a1 = _put(a1, scr, 0, BLOCK_B, HP, SCR)
    if NH >= 2:
        a2, h = _fwd(h, p_ptr, 2, slope, DP, HP, NH, ACT, PREC)
        a2 = _put(a2, scr, 1, BLOCK_B, HP, SCR)
    if NH >= 3:
        a3, h = _fwd(h, p_ptr, 3, slope, DP, HP, NH, ACT, PREC)
        a3 = _put(a3, scr, 2, BLOCK_B, HP, SCR)
    if NH >= 4:
        a4, h = _fwd(h, p_ptr, 4, slope, DP, HP, NH, ACT, PREC)
        a4 = _put(a4, scr, 3, BLOCK_B, HP, SCR)
    if NH >= 5:
        a5, h = _fwd(h, p_ptr, 5, slope, DP, HP, NH, ACT, PREC)
        a5 = _put(a5, scr, 4, BLOCK_B, HP, SCR)
    if NH >= 6:
        a6, h = _fwd(h, p_ptr, 6, slope, DP, HP, NH, ACT, PREC)
        a6 = _put(a6, scr, 5, BLOCK_B, HP, SCR)
    # needed with SCR (the scratch rows are read back by other threads, in other layouts); without,
    # the barriers between passes keep the compiler from hoisting the next pass's weight loads
    # (AOT sm_90: fewer spilled bytes)
    tl.debug_barrier()

    # ---- 2. backward of E: g_l = dE/dh_l, from g_NH = w_out down
    g = tl.zeros([BLOCK_B, HP], dtype=ACC) + w_out[None, :]
    if NH >= 6:
        g6 = _put(g, scr, G0 + 6, BLOCK_B, HP, SCR)
        g = _gstep(g, _get(a6, scr, 5, BLOCK_B, HP, SCR), p_ptr, 6, slope, DP, HP, ACT, PREC)
    if NH >= 5:
        g5 = _put(g, scr, G0 + 5, BLOCK_B, HP, SCR)
        g = _gstep(g, _get(a5, scr, 4, BLOCK_B, HP, SCR), p_ptr, 5, slope, DP, HP, ACT, PREC)
    if NH >= 4:
        g4 = _put(g, scr, G0 + 4, BLOCK_B, HP, SCR)
        g = _gstep(g, _get(a4, scr, 3, BLOCK_B, HP, SCR), p_ptr, 4, slope, DP, HP, ACT, PREC)
    if NH >= 3:
        g3 = _put(g, scr, G0 + 3, BLOCK_B, HP, SCR)
        g = _gstep(g, _get(a3, scr, 2, BLOCK_B, HP, SCR), p_ptr, 3, slope, DP, HP, ACT, PREC)
    if NH >= 2:
        g2 = _put(g, scr, G0 + 2, BLOCK_B, HP, SCR)
        g = _gstep(g, _get(a2, scr, 1, BLOCK_B, HP, SCR), p_ptr, 2, slope, DP, HP, ACT, PREC)
    g1 = _put(g, scr, G0 + 1, BLOCK_B, HP, SCR)
    tl.debug_barrier()

    # ---- 3. v pass (layer 1 at width DQ, then l = 2..NH); keeps r_l
    v0 = tl.load(gg_ptr + idx, mask=mask, other=0.0).to(ACC)
    ge = tl.load(ge_ptr + rows, mask=rmask, other=0.0).to(ACC)
    u = _matmul(v0, _w1t(p_ptr, DP, DQ, HP), PREC)
    h, d, dd = _act2(_get(a1, scr, 0, BLOCK_B, HP, SCR), slope, ACT)
    g = _get(g1, scr, G0 + 1, BLOCK_B, HP, SCR)
    tl.store(part + offs_h[:, None] * DP + wq, _mm_tn(g * d, v0, PREC), mask=wq < DP)
    v = u * d
    r = u * g * dd
    if NH >= 2:
        r1 = _put(r, scr, R0 + 1, BLOCK_B, HP, SCR)
        v, h, d, r = _vstep(v, _get(a2, scr, 1, BLOCK_B, HP, SCR), _get(g2, scr, G0 + 2, BLOCK_B, HP, SCR),
                            p_ptr, part, 2, slope, DP, HP, ACT, PREC)
    if NH >= 3:
        r2 = _put(r, scr, R0 + 2, BLOCK_B, HP, SCR)
        v, h, d, r = _vstep(v, _get(a3, scr, 2, BLOCK_B, HP, SCR), _get(g3, scr, G0 + 3, BLOCK_B, HP, SCR),
                            p_ptr, part, 3, slope, DP, HP, ACT, PREC)
    if NH >= 4:
        r3 = _put(r, scr, R0 + 3, BLOCK_B, HP, SCR)
        v, h, d, r = _vstep(v, _get(a4, scr, 3, BLOCK_B, HP, SCR), _get(g4, scr, G0 + 4, BLOCK_B, HP, SCR),
                            p_ptr, part, 4, slope, DP, HP, ACT, PREC)
    if NH >= 5:
        r4 = _put(r, scr, R0 + 4, BLOCK_B, HP, SCR)
        v, h, d, r = _vstep(v, _get(a5, scr, 4, BLOCK_B, HP, SCR), _get(g5, scr, G0 + 5, BLOCK_B, HP, SCR),
                            p_ptr, part, 5, slope, DP, HP, ACT, PREC)
    if NH >= 6:
        r5 = _put(r, scr, R0 + 5, BLOCK_B, HP, SCR)
        v, h, d, r = _vstep(v, _get(a6, scr, 5, BLOCK_B, HP, SCR), _get(g6, scr, G0 + 6, BLOCK_B, HP, SCR),
                            p_ptr, part, 6, slope, DP, HP, ACT, PREC)
    # output layer: dw_out = sum_t (v_NH + gE h_NH), db_out = sum_t gE (slot 0 of the last HP block)
    tl.store(part + HP * DP + (NH - 1) * HP * HP + NH * HP + offs_h, tl.sum(v + ge[:, None] * h, axis=0))
    tl.store(part + HP * DP + (NH - 1) * HP * HP + NH * HP + HP + offs_h,
             tl.where(offs_h == 0, tl.sum(ge, axis=0), 0.0).to(ACC))
    # the s pass reads back this program's dW_l rows (and the scratch) written by other threads
    tl.debug_barrier()

    # ---- 4. s pass: s_NH = r_NH + gE w_out sigma'(a_NH), down to grad_x = s_1 W_1
    s = r + ge[:, None] * w_out[None, :] * d
    if NH >= 6:
        s = _sstep(s, _get(a5, scr, 4, BLOCK_B, HP, SCR), _get(r5, scr, R0 + 5, BLOCK_B, HP, SCR), p_ptr, part,
                   6, slope, DP, HP, NH, ACT, PREC)
    if NH >= 5:
        s = _sstep(s, _get(a4, scr, 3, BLOCK_B, HP, SCR), _get(r4, scr, R0 + 4, BLOCK_B, HP, SCR), p_ptr, part,
                   5, slope, DP, HP, NH, ACT, PREC)
    if NH >= 4:
        s = _sstep(s, _get(a3, scr, 2, BLOCK_B, HP, SCR), _get(r3, scr, R0 + 3, BLOCK_B, HP, SCR), p_ptr, part,
                   4, slope, DP, HP, NH, ACT, PREC)
    if NH >= 3:
        s = _sstep(s, _get(a2, scr, 1, BLOCK_B, HP, SCR), _get(r2, scr, R0 + 2, BLOCK_B, HP, SCR), p_ptr, part,
                   3, slope, DP, HP, NH, ACT, PREC)
    if NH >= 2:
        s = _sstep(s, _get(a1, scr, 0, BLOCK_B, HP, SCR), _get(r1, scr, R0 + 1, BLOCK_B, HP, SCR), p_ptr, part,
                   2, slope, DP, HP, NH, ACT, PREC)
    # layer 1: db_1, dW_1 += s_1^T x, grad_x = s_1 W_1
    tl.store(part + HP * DP + (NH - 1) * HP * HP + offs_h, tl.sum(s, axis=0))
    _acc(part + offs_h[:, None] * DP + wq, _mm_tn(s, x, PREC), wq < DP)
    gx = _matmul(s, _w1(p_ptr, DP, DQ, HP), PREC)
    tl.store(gx_ptr + idx, gx.to(gx_ptr.dtype.element_ty), mask=mask)

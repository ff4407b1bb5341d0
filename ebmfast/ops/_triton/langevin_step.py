"""Triton kernel of the fused Langevin step (GPU; on the CPU under TRITON_INTERPRET=1).

Each program handles BLOCK_G groups of 4 consecutive elements: one Philox call
per group gives the group's 4 normals (the stream of csrc/include/ebmfast/philox.h),
then 4 strided loads/stores, one per lane. Launched by ebmfast/ops/_triton/langevin_launch.py.
"""
import triton
import triton.language as tl


@triton.jit
def f64_arg(bits, ACC: tl.constexpr):
    """A float scalar passed as the int64 bit pattern of a float64 (`f64_bits` in the launchers):
    Triton passes Python floats as float32, and the interpreter ignores type annotations."""
    return bits.to(tl.int64).to(tl.float64, bitcast=True).to(ACC)


@triton.jit
def _uniform(w, ACC: tl.constexpr):
    # (w >> 9) * 2^-23 + 2^-24: an odd multiple of 2^-24, exact in float32, inside (0, 1)
    return (w >> 9).to(ACC) * 1.1920928955078125e-07 + 5.9604644775390625e-08


@triton.jit
def _box_muller(wa, wb, ACC: tl.constexpr):
    u1 = _uniform(wa, ACC)
    u2 = _uniform(wb, ACC)
    r = tl.sqrt(-2.0 * tl.log(u1))
    # a bare float literal is a float32 constant in compiled Triton: build 2*pi in ACC so the
    # float64 path is not rounded (the interpreter hides this)
    th = tl.full([], 6.283185307179586, ACC) * u2
    return r * tl.cos(th), r * tl.sin(th)


@triton.jit
def _lane_update(x_ptr, g_ptr, n_ptr, out_ptr, idx, z, row_scale, n_elements, step_size, noise_scale,
                 clamp_lo, clamp_hi, clip_value,
                 HAS_NOISE: tl.constexpr, HAS_LO: tl.constexpr, HAS_HI: tl.constexpr, CLIP_MODE: tl.constexpr,
                 ACC: tl.constexpr):
    mask = idx < n_elements
    x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(ACC)
    g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(ACC)
    if HAS_NOISE:
        z = tl.load(n_ptr + idx, mask=mask, other=0.0).to(ACC)
    if CLIP_MODE == 1:
        g = tl.minimum(tl.maximum(g, -clip_value), clip_value)
    if CLIP_MODE == 2:
        g = g * row_scale
    y = x - step_size * g + noise_scale * z
    # where() keeps NaN like torch.clamp (tl.maximum may drop it)
    if HAS_LO:
        y = tl.where(y < clamp_lo, clamp_lo, y)
    if HAS_HI:
        y = tl.where(y > clamp_hi, clamp_hi, y)
    tl.store(out_ptr + idx, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["n_elements", "row_size", "seed", "offset", "step_bits", "noise_bits", "lo_bits",
                                 "hi_bits", "clip_bits"])
def _langevin_step_fwd_kernel(
    x_ptr, g_ptr, n_ptr, out_ptr, scale_ptr,
    n_elements, row_size, seed, offset,
    step_bits: tl.int64, noise_bits: tl.int64, lo_bits: tl.int64, hi_bits: tl.int64, clip_bits: tl.int64,
    HAS_NOISE: tl.constexpr, HAS_LO: tl.constexpr, HAS_HI: tl.constexpr, CLIP_MODE: tl.constexpr,
    ACC: tl.constexpr, BLOCK_G: tl.constexpr,
):
    """ACC: tl.float64 for float64 data, tl.float32 otherwise (also for fp16/bf16).

    *_bits: step_size, noise_scale, clamp lo / hi and clip_value as float64 bit patterns
    (`f64_arg`), so float64 data gets float64 scalars with no device tensor to build."""
    step_size = f64_arg(step_bits, ACC)
    noise_scale = f64_arg(noise_bits, ACC)
    clamp_lo = f64_arg(lo_bits, ACC)
    clamp_hi = f64_arg(hi_bits, ACC)
    clip_value = f64_arg(clip_bits, ACC)
    pid = tl.program_id(0)
    group = pid.to(tl.int64) * BLOCK_G + tl.arange(0, BLOCK_G).to(tl.int64)
    base = group * 4
    if HAS_NOISE:
        z0 = tl.zeros([BLOCK_G], dtype=ACC)
        z1 = z0
        z2 = z0
        z3 = z0
    else:
        c0 = (group & 0xFFFFFFFF).to(tl.uint32)
        c1 = (group >> 32).to(tl.uint32)
        off = offset.to(tl.int64)
        c2 = tl.full([BLOCK_G], 0, tl.uint32) + (off & 0xFFFFFFFF).to(tl.uint32)
        c3 = tl.full([BLOCK_G], 0, tl.uint32) + ((off >> 32) & 0xFFFFFFFF).to(tl.uint32)
        # tl.philox keys with (seed lo, seed hi) like the C++ and reference streams
        w0, w1, w2, w3 = tl.philox(seed, c0, c1, c2, c3)
        z0, z1 = _box_muller(w0, w1, ACC)
        z2, z3 = _box_muller(w2, w3, ACC)
    for lane in tl.static_range(4):
        idx = base + lane
        if lane == 0:
            z = z0
        elif lane == 1:
            z = z1
        elif lane == 2:
            z = z2
        else:
            z = z3
        if CLIP_MODE == 2:
            row_scale = tl.load(scale_ptr + idx // row_size, mask=idx < n_elements, other=1.0).to(ACC)
        else:
            row_scale = 1.0
        _lane_update(x_ptr, g_ptr, n_ptr, out_ptr, idx, z, row_scale, n_elements, step_size, noise_scale,
                     clamp_lo, clamp_hi, clip_value, HAS_NOISE, HAS_LO, HAS_HI, CLIP_MODE, ACC)

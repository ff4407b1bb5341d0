"""The CUDA kernel of the analytic double backward (csrc/cuda/mlp_backward_kernel.cu), run without a GPU.

g++ compiles the real .cu file against tests/ops/cuda_emu/cuda_runtime.h (every CUDA thread an
OS thread, real block and warp barriers) through tests/ops/cuda_emu/mlp_backward_harness.cpp.
The harness returns grad_x and the kernel's unreduced per-block partial sums; the test reduces
and unpacks them the way csrc/cuda/mlp_backward.cpp does (sum over blocks, slice the padded
dW_l^T blocks at the offsets the kernel header reports) and compares with
mlp_energy_grad_backward_ref (autograd, float64). Covered: every activation, widths 1..128,
1..6 hidden layers, input dims 1, 2, 10, 19, batches that are not multiples of the tile, with
and without biases, float64 and float32, resident and staged weights, the tile state in shared
or global memory, both rows-per-warp variants, several tiles per block (grid-stride), `saved`
given or recomputed. Not covered:
timing, races the emulator cannot provoke, device code generation (tests/test_nvcc_compile.py).
The kernel's launch plan (include/ebmfast/mlp_cuda_plan.h) is also checked against what the
extension's op ebmfast::mlp_cuda_plan reports to Python (ebmfast/ops/_cuda_plan.py).
Skipped only when g++ is absent.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmfast.ops.mlp_energy import mlp_energy_grad_backward_ref, mlp_energy_grad_saved_ref
from ebmfast.ops import _cuda_plan
from ebmfast_testing import TOLERANCES, random_net as _net

from cuda_emu_helpers import GXX, build_harness, layout_bytes, pack_params as _pack

pytestmark = pytest.mark.skipif(GXX is None, reason="g++ is not installed")

SLOPE = 0.07
H100 = dict(smem_optin=232448, sm_count=132, smem_per_sm=233472)  # few rows per SM -> 1 row per warp
# one SM: 4 (f32) / 2 (f64) rows per warp, at most 2 blocks, so several tiles per block (grid stride)
ONE_SM = dict(smem_optin=232448, sm_count=1, smem_per_sm=233472)
# shared memory just big enough for: one hidden matrix staged at a time (1 row per warp) ...
STAGED = "staged"
# ... the same with 4 (float32) / 2 (float64) rows per warp and the tile state a_l, g_l in global scratch ...
STAGED_BIG = "staged-big"
# ... resident weights, the tile state in global scratch (1 row per warp)
GLOBAL_STATE = "global-state"


def _plan_op_available() -> bool:
    return _cuda_plan._extension_reason() is None


def test_cuda_backward_support_reasons_name_the_limits():
    x = torch.zeros(4, 2)
    ok_net = [torch.zeros(8, 2), torch.zeros(1, 8)]
    reasons = _cuda_plan.not_supported_reasons(x, ok_net, 2, "backward")
    if not _plan_op_available():
        assert reasons and all("extension" in r for r in reasons)
        return
    registered = torch._C._dispatch_has_kernel_for_dispatch_key("ebmfast::mlp_energy_grad_backward", "CUDA")
    assert any("no CUDA kernel" in r for r in reasons) == (not registered)
    too_wide = [torch.zeros(200, 2), torch.zeros(1, 200)]
    assert any("widths <= 128" in r for r in _cuda_plan.not_supported_reasons(x, too_wide, 2, "backward"))
    deep = [torch.zeros(8, 2)] + [torch.zeros(8, 8)] * 7 + [torch.zeros(1, 8)]
    assert any("hidden layers" in r for r in _cuda_plan.not_supported_reasons(x, deep, 2, "backward"))
    assert any("activation code" in r for r in _cuda_plan.not_supported_reasons(x, ok_net, 9, "backward"))
    assert any("float32/float64" in r for r in _cuda_plan.not_supported_reasons(x.half(), ok_net, 2, "backward"))
    assert any("D <= 128" in r for r in _cuda_plan.not_supported_reasons(torch.zeros(4, 129),
                                                                          [torch.zeros(8, 129), torch.zeros(1, 8)],
                                                                          2, "forward"))
    with pytest.raises(ValueError, match="kernel must be one of"):
        _cuda_plan.not_supported_reasons(x, ok_net, 2, "double-backward")


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    return build_harness(tmp_path_factory.mktemp("cuda_emu_bwd"), "mlp_backward_harness")




def _run(harness, tmp_path, x, ws, bs, act, ge, gg, dtype, device=H100, saved=None, lane_order=0):
    """Runs the kernel; returns (rc, plan dict, grad_x, [grad_W], [grad_b]) as float64 tensors."""
    widths = [w.shape[0] for w in ws[:-1]]
    nh, d = len(widths), x.shape[1]
    hp = next(h for h in (32, 64, 128) if max(widths) <= h)
    elem = 8 if dtype == torch.float64 else 4
    np_dt = np.float64 if dtype == torch.float64 else np.float32
    # every layout's bytes, from the harness; the string devices have room for exactly one (+ the static budget)
    sizes, budget = layout_bytes(harness, tmp_path / "layouts", d, nh, hp, elem)
    bwd = lambda rb, resident, state: sizes[("bwd", rb, resident, state)]  # noqa: E731
    if device == STAGED:  # many SMs, few rows: the plan tries 1 row per warp first
        smem = bwd(1, False, True)
        assert smem < bwd(1, True, False), "pick a deeper network"
        device = dict(smem_optin=smem + budget, sm_count=132, smem_per_sm=233472)
    elif device == STAGED_BIG:  # one SM: the plan tries 4 / 2 rows per warp first
        rb = 16 // elem
        smem = bwd(rb, False, False)
        assert smem < bwd(rb, True, False), "pick a deeper network"
        device = dict(smem_optin=smem + budget, sm_count=1, smem_per_sm=233472)
    elif device == GLOBAL_STATE:
        smem = bwd(1, True, False)
        assert smem < bwd(1, True, True)
        device = dict(smem_optin=smem + budget, sm_count=132, smem_per_sm=233472)
    cfg = dict(dtype="f64" if dtype == torch.float64 else "f32", B=x.shape[0], D=d, NH=nh, HP=hp, act=act,
               saved=int(saved is not None), lane_order=lane_order, **{f"w{i}": w for i, w in enumerate(widths)},
               **device)
    (tmp_path / "config.txt").write_text("".join(f"{k} {v}\n" for k, v in cfg.items()))
    for name, t in (("x", x), ("ge", ge), ("gg", gg)):
        t.numpy().astype(np_dt).tofile(tmp_path / f"{name}.bin")
    _pack(ws, bs, SLOPE, hp).numpy().astype(np_dt).tofile(tmp_path / "params.bin")
    if saved is not None:
        saved.numpy().astype(np_dt).tofile(tmp_path / "saved.bin")
    res = subprocess.run([str(harness), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rc = int((tmp_path / "rc.txt").read_text())
    p = [int(v) for v in (tmp_path / "plan.txt").read_text().split()]
    plan = dict(rc=p[0], rb=p[1], resident=bool(p[2]), state_smem=bool(p[3]), smem=p[4], n_blocks=p[5],
                width=p[6], scratch=p[7], off=p[8:], hp=hp, device=device)
    plan["layout_smem"] = bwd(plan["rb"], plan["resident"], plan["state_smem"]) if plan["rb"] else None
    if rc != 0:
        return rc, plan, None, None, None
    gx = torch.from_numpy(np.fromfile(tmp_path / "gx.bin", dtype=np_dt)).reshape(x.shape)
    partial = torch.from_numpy(np.fromfile(tmp_path / "partial.bin", dtype=np_dt))
    # the launcher's reduction and unpacking, in the kernel's dtype
    acc = partial.reshape(plan["n_blocks"], plan["width"]).sum(0)
    dims, off, gw, gb = [d] + widths, plan["off"], [], []
    for l in range(nh):
        k = d if l == 0 else hp
        gw.append(acc[off[l]: off[l] + k * hp].reshape(k, hp)[: dims[l], : dims[l + 1]].t())
        gb.append(acc[off[l] + k * hp: off[l] + k * hp + dims[l + 1]])
    gw.append(acc[off[nh]: off[nh] + dims[nh]].reshape(1, -1))
    gb.append(acc[off[nh] + hp: off[nh] + hp + 1])
    f64 = lambda ts: [t.to(torch.float64) for t in ts]  # noqa: E731
    return rc, plan, gx.to(torch.float64), f64(gw), f64(gb) if bs else []


def _case(d, hidden, b, bias=True, act=2, seed=0):
    ws, bs = _net(d, hidden, bias=bias, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = 1.5 * torch.randn(b, d, generator=g, dtype=torch.float64)
    ge = torch.randn(b, generator=g, dtype=torch.float64)
    gg = torch.randn(b, d, generator=g, dtype=torch.float64)
    return x, ws, bs, ge, gg


def _rounded(dtype, *ts):
    """Inputs as the kernel sees them (float32 rounding of the inputs is not kernel error)."""
    def r(t):
        return [r(u) for u in t] if isinstance(t, list) else t.to(dtype).to(torch.float64)
    return [r(t) for t in ts]


def _check(got, x, ws, bs, act, ge, gg, dtype, where):
    """got = (grad_x, [grad_W], [grad_b]) vs the float64 reference.

    float64: elementwise within TOLERANCES. float32: the convention of
    tests/ops/test_mlp_energy.py::test_float32_within_tolerance, per output tensor
    max|err| <= 2 * max|err of plain PyTorch float32 autograd| + atol * (1 + max|ref|), atol from
    TOLERANCES: the elementwise (2e-5, 2e-5) alone is not met by PyTorch's own float32 double
    backward for gelu (sigma'' cancels; ~9e-5 absolute at |ref| ~ 20, measured).
    """
    x, ws, bs, ge, gg = _rounded(dtype, x, ws, bs, ge, gg)
    want = mlp_energy_grad_backward_ref(x, ws, bs, act, SLOPE, ge, gg)
    flat = lambda r: [r[0], *r[1], *r[2]]  # noqa: E731
    if dtype == torch.float32:
        f32 = lambda ts: [t.float() for t in ts]  # noqa: E731
        torch32 = flat(mlp_energy_grad_backward_ref(x.float(), f32(ws), f32(bs), act, SLOPE, ge.float(), gg.float()))
    atol, rtol = TOLERANCES[dtype]
    names = ["grad_x"] + [f"grad_W{i}" for i in range(len(ws))] + [f"grad_b{i}" for i in range(len(bs))]
    assert len(got[1]) == len(want[1]) and len(got[2]) == len(want[2]), where
    for i, (n, a, w) in enumerate(zip(names, flat(got), flat(want))):
        assert a.shape == w.shape, f"{where} {n}: shape {tuple(a.shape)} vs {tuple(w.shape)}"
        if dtype == torch.float64:
            torch.testing.assert_close(a, w, atol=atol, rtol=rtol, msg=lambda m: f"{where} {n}: {m}")
        else:
            err = (a - w).abs().max().item() if w.numel() else 0.0
            err_t = (torch32[i].double() - w).abs().max().item() if w.numel() else 0.0
            bound = 2 * err_t + atol * (1 + (w.abs().max().item() if w.numel() else 0.0))
            assert err <= bound, f"{where} {n}: max error {err:.3g} > {bound:.3g} (torch float32: {err_t:.3g})"


@pytest.mark.parametrize("act", range(7))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_every_activation(harness, tmp_path, act, dtype):
    # widths 3 and 64, D = 2, B = 37 (not a multiple of the 16/32-row tile), biases on every other act
    x, ws, bs, ge, gg = _case(2, (3, 64), 37, bias=act % 2 == 0, act=act)
    rc, plan, *got = _run(harness, tmp_path, x, ws, bs, act, ge, gg, dtype, device=ONE_SM)
    assert rc == 0 and plan["rb"] == (2 if dtype == torch.float64 else 4)
    assert plan["n_blocks"] > 1  # several blocks; float64: several tiles per block (grid stride)
    _check(got, x, ws, bs, act, ge, gg, dtype, f"act {act} {dtype}")


# (D, hidden, B, bias, act, device): width 1 with D 1; width 127 with D 10; width 128; 6 layers;
# D 19 (odd, > 16); no biases; the staged-weights path (1 and 4/2 rows per warp); the tile state
# in global memory (forced, and as H100's limits pick it for 6 float64 layers of 128)
SHAPES = [
    (1, (1,), 21, True, 3, ONE_SM),
    (10, (127,), 45, True, 6, H100),
    (10, (3, 128), 13, False, 4, ONE_SM),
    (2, (7, 9, 5, 16, 3, 11), 21, True, 5, H100),
    (19, (64, 40), 10, True, 1, H100),
    (4, (64, 64, 50), 45, False, 2, STAGED),
    (3, (33, 64, 20), 77, True, 6, STAGED_BIG),
    (2, (50, 64), 19, True, 3, GLOBAL_STATE),
    (2, (128,) * 6, 11, True, 2, H100),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"D{s[0]}-h{'x'.join(map(str, s[1]))}-B{s[2]}-"
                         f"{'bias' if s[3] else 'nobias'}-act{s[4]}-"
                         f"{s[5] if isinstance(s[5], str) else ('1sm' if s[5]['sm_count'] == 1 else 'h100')}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_shapes_and_paths(harness, tmp_path, shape, dtype):
    d, hidden, b, bias, act, device = shape
    x, ws, bs, ge, gg = _case(d, hidden, b, bias=bias, act=act, seed=len(hidden) + d)
    rc, plan, *got = _run(harness, tmp_path, x, ws, bs, act, ge, gg, dtype, device=device)
    elem = 8 if dtype == torch.float64 else 4
    assert rc == 0
    if device == STAGED:
        assert (plan["rb"], plan["resident"], plan["state_smem"]) == (1, False, True)
    if device == STAGED_BIG:
        assert (plan["rb"], plan["resident"], plan["state_smem"]) == (16 // elem, False, False)
    if device == GLOBAL_STATE:
        assert plan["resident"] and not plan["state_smem"] and plan["rb"] == 1
    if len(hidden) == 6 and max(hidden) == 128:  # H100: float64 needs staged weights and global state
        assert (plan["resident"], plan["state_smem"]) == ((False, False) if dtype == torch.float64 else (False, True))
    assert plan["scratch"] == (0 if plan["state_smem"] else 2 * len(hidden) * 8 * plan["rb"] * plan["hp"])
    assert plan["smem"] == plan["layout_smem"]  # the plan launches the layout it names
    _check(got, x, ws, bs, act, ge, gg, dtype, f"{shape} {dtype}")


@pytest.mark.parametrize("lane_order", [1, 2], ids=["lanes-ascending", "lanes-descending"])
@pytest.mark.parametrize("device", [ONE_SM, STAGED_BIG], ids=["resident", "staged-global-state"])
def test_serialized_lanes_several_rows_per_warp(harness, tmp_path, device, lane_order):
    """4 rows per warp, D = 3, each warp's lanes run one at a time from barrier to barrier (see
    tests/ops/cuda_emu/cuda_runtime.h): a lane reading a shared element that another lane of its warp
    writes without a barrier in between would see the wrong value deterministically."""
    x, ws, bs, ge, gg = _case(3, (33, 64, 20), 77, act=6, seed=3)
    rc, plan, *got = _run(harness, tmp_path, x, ws, bs, 6, ge, gg, torch.float32, device=device,
                          lane_order=lane_order)
    assert rc == 0 and plan["rb"] == 4
    _check(got, x, ws, bs, 6, ge, gg, torch.float32, f"lane order {lane_order}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_saved_rows_give_the_same_result(harness, tmp_path, dtype):
    """With mlp_energy_grad's `saved` rows the kernel skips its forward; the VJP is unchanged."""
    x, ws, bs, ge, gg = _case(3, (20, 33), 27, act=0)
    xr, wr, br = _rounded(dtype, x, ws, bs)
    saved = mlp_energy_grad_saved_ref(xr, wr, br, 0, SLOPE)
    rc, plan, *with_saved = _run(harness, tmp_path, x, ws, bs, 0, ge, gg, dtype, device=ONE_SM, saved=saved)
    assert rc == 0
    _check(with_saved, x, ws, bs, 0, ge, gg, dtype, f"saved {dtype}")
    # and the kernel does read them: rows of a different batch give a different answer
    other = mlp_energy_grad_saved_ref(xr.flip(0), wr, br, 0, SLOPE)
    rc, _, gx_other, *_ = _run(harness, tmp_path, x, ws, bs, 0, ge, gg, dtype, device=ONE_SM, saved=other)
    assert rc == 0 and (gx_other - with_saved[0]).abs().max() > 1e-3


def test_repeatable_bit_for_bit(harness, tmp_path):
    """Partial sums are owned by one thread each: two runs agree exactly (no atomics)."""
    x, ws, bs, ge, gg = _case(4, (64, 64, 50), 45, act=6)
    runs = []
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        rc, _, gx, gw, gb = _run(harness, tmp_path / str(i), x, ws, bs, 6, ge, gg, torch.float32, device=STAGED)
        assert rc == 0
        runs.append([gx, *gw, *gb])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_empty_batch(harness, tmp_path):
    x, ws, bs, ge, gg = _case(3, (8,), 0)
    rc, plan, gx, gw, gb = _run(harness, tmp_path, x, ws, bs, 2, ge, gg, torch.float64)
    assert rc == 0 and plan["n_blocks"] == 0
    assert gx.shape == (0, 3) and all(torch.equal(g, torch.zeros_like(g)) for g in gw + gb)


def test_network_too_big_for_shared_memory_is_an_error_code(harness, tmp_path):
    x, ws, bs, ge, gg = _case(128, (128, 128), 3)
    rc, plan, *_ = _run(harness, tmp_path, x, ws, bs, 2, ge, gg, torch.float64,
                        device=dict(smem_optin=100_000, sm_count=1, smem_per_sm=233472))
    assert rc == -3 and plan["rc"] == -3  # kMLPErrSmem: the launcher raises "does not fit in shared memory"


# ----------------------------------------------------------------------------- on a real GPU
def _has_cuda_backward() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("ebmfast::mlp_energy_grad_backward", "CUDA")
    except Exception:  # the op schema is not registered (extension not built)
        return False


@pytest.mark.skipif(not _has_cuda_backward(), reason="needs a GPU and an extension built with CUDA")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_cuda_op_on_gpu(dtype):
    """The torch launcher (csrc/cuda/mlp_backward.cpp) end to end: every activation, saved or not."""
    import ebmfast  # noqa: F401  (loads the extension and its op registrations)

    op = torch.ops.ebmfast.mlp_energy_grad_backward
    for act in range(7):
        x, ws, bs, ge, gg = _case(10, (3, 127), 301, bias=act % 2 == 0, act=act)
        xr, wr, br, ger, ggr = _rounded(dtype, x, ws, bs, ge, gg)
        c = lambda t: t.to("cuda", dtype)  # noqa: E731
        args = (c(xr), [c(w) for w in wr], [c(b) for b in br], act, SLOPE)
        saved = torch.ops.ebmfast.mlp_energy_grad(*args, True)[2]
        for sv in (c(xr).new_empty(0), saved):
            gx, gw, gb = op(*args, sv, c(ger), c(ggr))
            got = (gx.cpu().double(), [t.cpu().double() for t in gw], [t.cpu().double() for t in gb])
            _check(got, x, ws, bs, act, ge, gg, dtype, f"cuda op act {act} saved={sv.numel() > 0}")
    x, ws, bs, ge, gg = _case(2, (129,), 5)
    c = lambda t: t.to("cuda", dtype)  # noqa: E731
    with pytest.raises(RuntimeError, match="hidden widths <= 128"):
        op(c(x), [c(w) for w in ws], [c(b) for b in bs], 2, SLOPE, c(x).new_empty(0), c(ge), c(gg))


# (D, widths, B, device) for the plan comparison: every choice of rb / weights / state, and a refusal
PLAN_CASES = [(2, (3, 64), 37, ONE_SM), (10, (127,), 45, H100), (2, (128,) * 6, 11, H100),
              (2, (128,) * 6, 100_000, H100), (4, (64, 64, 50), 45, dict(smem_optin=60_000, sm_count=132,
                                                                          smem_per_sm=233472)),
              (128, (128, 128), 3, dict(smem_optin=100_000, sm_count=1, smem_per_sm=233472)), (3, (8,), 0, H100)]


@pytest.mark.skipif(not _plan_op_available(), reason="needs the compiled extension (ebmfast::mlp_cuda_plan)")
@pytest.mark.parametrize("case", PLAN_CASES, ids=lambda c: f"D{c[0]}-h{'x'.join(map(str, c[1]))}-B{c[2]}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_extension_reports_the_kernels_plan(harness, tmp_path, case, dtype):
    """What Python learns from ebmfast::mlp_cuda_plan is what the launcher plans for the same device."""
    d, widths, b, device = case
    elem = 8 if dtype == torch.float64 else 4
    hp = next(h for h in (32, 64, 128) if max(widths) <= h)
    cfg = dict(dtype="f64" if elem == 8 else "f32", B=b, D=d, NH=len(widths), HP=hp, act=2, saved=0, plan_only=1,
               **{f"w{i}": w for i, w in enumerate(widths)}, **device)
    (tmp_path / "config.txt").write_text("".join(f"{k} {v}\n" for k, v in cfg.items()))
    res = subprocess.run([str(harness), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    rc, rb, resident, state, smem, n_blocks = (int(v) for v in (tmp_path / "plan.txt").read_text().split()[:6])
    got = [int(v) for v in torch.ops.ebmfast.mlp_cuda_plan(d, list(widths), b, elem, "backward", device["smem_optin"],
                                                            device["smem_per_sm"], device["sm_count"])]
    assert got[0] == rc
    if rc == 0 and b > 0:
        assert (got[1], got[2], bool(got[3]), bool(got[4]), got[5], got[8]) == \
            (8 * rb, rb, bool(resident), bool(state), smem, n_blocks)
        assert got[5] + got[6] <= device["smem_optin"]  # dynamic + static budget fit the device
    if rc == -3:
        assert got[7] > device["smem_optin"]  # the smallest layout does not fit

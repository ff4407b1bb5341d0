"""Every CUDA kernel of the extension, on CUDA tensors, against the float64 references on the CPU.

Run on a GPU machine with an extension built with CUDA (FORCE_CUDA=1 or a visible GPU at build time):

    python -m pytest -m cuda tests/gpu

Without a CUDA device tests/conftest.py skips them. With one, an extension without CUDA kernels is a
failure, not a skip. Covered, through the public functions with backend="cuda":
  langevin_step        float32/64, float16, bfloat16; out-of-place and in place; no / value / norm
                       clip; clamps; sizes that are not multiples of the 4-element noise groups;
                       given noise; the launcher's device checks
  philox_normal        against the reference stream and the CPU kernel's stream
  mlp_energy_grad      every activation, 1..6 hidden layers, widths 1..128, D 1..128, float32/64,
                       half inputs (computed in float32), one and several rows per warp
  mlp_langevin_chain   with and without trajectories/energies, clamps, clips, the reference term,
                       at batch sizes that put 4 (float32) / 2 (float64) rows in a warp
  mlp_energy_grad_backward  through autograd of mlp_energy_grad and through grad_norm_penalty
Tolerances: float64 and half types by the dtype table (ebmfast_testing.TOLERANCES); float32 MLP
results by the repository's float32 convention, max error <= 2 x (error of the same reference
computed in float32 on the CPU) + atol x (1 + max |reference|), atol from the table.
"""
from __future__ import annotations

import pytest
import torch

from ebmfast import _ext
from ebmfast.ops import (_cuda_plan, _dispatch, grad_norm_penalty, langevin_step, langevin_step_ref,
                         mlp_energy_grad, mlp_energy_grad_backward_ref, mlp_energy_grad_ref, mlp_langevin_chain,
                         mlp_langevin_chain_ref, philox_normal, philox_normal_ref)
from ebmfast.ops.grad_norm_penalty import penalty_from_grad
from ebmfast.ops.langevin_step import parse_clamp, parse_grad_clip
from ebmfast.ops.mlp_activations import CODE_NAMES
from ebmfast_testing import TOLERANCES, random_net

pytestmark = pytest.mark.cuda

CUDA_OPS = ["langevin_step", "langevin_step_", "philox_normal", "mlp_energy_grad", "mlp_langevin_chain",
            "mlp_energy_grad_backward"]
SLOPE = 0.07
HALF = (torch.float16, torch.bfloat16)


def _has_kernel(op: str, key: str) -> bool:
    return hasattr(torch.ops.ebmfast, op) and torch._C._dispatch_has_kernel_for_dispatch_key(f"ebmfast::{op}", key)


@pytest.fixture(scope="module", autouse=True)
def _cuda_build():
    """A GPU run needs the CUDA kernels: their absence fails every test here with the reason."""
    assert _ext.available(), f"the compiled extension is not loaded: {_ext.load_error()}"
    missing = [op for op in CUDA_OPS if not _has_kernel(op, "CUDA")]
    assert not missing, f"the extension has no CUDA kernel for {missing} (build with FORCE_CUDA=1)"


def _sms() -> int:
    return torch.cuda.get_device_properties(0).multi_processor_count


def _close(got, want, dtype, where):
    atol, rtol = TOLERANCES[dtype]
    assert got.shape == want.shape, f"{where}: shape {tuple(got.shape)} vs {tuple(want.shape)}"
    torch.testing.assert_close(got.detach().double().cpu(), want.detach().double().cpu(), atol=atol, rtol=rtol,
                               msg=lambda m: f"{where}: {m}")


def _close_f32(got, want64, want32, where):
    """float32 convention: max |got - want64| <= 2 max |want32 - want64| + atol (1 + max |want64|)."""
    got, want64, want32 = (t.detach().double().cpu() for t in (got, want64, want32))
    assert got.shape == want64.shape, f"{where}: shape {tuple(got.shape)} vs {tuple(want64.shape)}"
    if want64.numel() == 0:
        return
    err = (got - want64).abs().max().item()
    err_ref32 = (want32 - want64).abs().max().item()
    bound = 2 * err_ref32 + TOLERANCES[torch.float32][0] * (1 + want64.abs().max().item())
    assert err <= bound, f"{where}: max error {err:.3g} > {bound:.3g} (float32 reference: {err_ref32:.3g})"


# ----------------------------------------------------------------------------- langevin_step
LANGEVIN_SHAPES = [(1, 1), (3, 5), (7, 13, 3), (257, 33), (999, 1003)]
CLIPS = [None, 0.3, ("norm", 0.8)]
CLAMPS = [None, (-0.6, 0.7), (None, 0.25)]


def _step_ref(x, g, step, noise_scale, noise, seed, offset, clamp, clip):
    """The float64 reference on the CPU (rounded to x's dtype for half types, as the kernel rounds once)."""
    lo, hi = parse_clamp(clamp)
    mode, c = parse_grad_clip(clip)
    y = langevin_step_ref(x.double().cpu(), g.double().cpu(), step, noise_scale,
                          None if noise is None else noise.double().cpu(), seed, offset, lo, hi, mode, c)
    return y.to(x.dtype).double() if x.dtype in HALF else y


def _step_inputs(shape, dtype):
    x = torch.randn(shape, dtype=torch.float64).to(dtype).cuda()
    g = (2 * torch.randn(shape, dtype=torch.float64)).to(dtype).cuda()
    return x, g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", LANGEVIN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_langevin_step_generated_noise(shape, dtype):
    x, g = _step_inputs(shape, dtype)
    for clip in CLIPS:
        for clamp in CLAMPS:
            where = f"{dtype} {shape} clip={clip} clamp={clamp}"
            out = langevin_step(x, g, 0.07, 0.3, clamp=clamp, grad_clip=clip, seed=2**40 + 3, offset=9,
                                backend="cuda")
            assert out.is_cuda and out.dtype == dtype
            _close(out, _step_ref(x, g, 0.07, 0.3, None, 2**40 + 3, 9, clamp, clip), dtype, where)
            y = x.clone()
            ret = langevin_step(y, g, 0.07, 0.3, clamp=clamp, grad_clip=clip, seed=2**40 + 3, offset=9, inplace=True,
                                backend="cuda")
            assert ret.data_ptr() == y.data_ptr()
            assert torch.equal(y, out), f"{where}: in place differs from out of place"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_langevin_step_given_noise(dtype):
    for shape in [(1, 1), (5, 3, 2), (130, 7)]:
        x, g = _step_inputs(shape, dtype)
        noise = torch.randn(shape, dtype=torch.float64).to(dtype).cuda()
        for clip in CLIPS:
            out = langevin_step(x, g, 0.05, 0.2, clamp=(-1.0, 1.5), grad_clip=clip, noise=noise, backend="cuda")
            _close(out, _step_ref(x, g, 0.05, 0.2, noise, 0, 0, (-1.0, 1.5), clip), dtype, f"{dtype} {shape} {clip}")


def test_langevin_step_nan_propagates_and_zero_noise_is_descent():
    x = torch.tensor([[0.0, float("nan"), 2.0]], device="cuda")
    out = langevin_step(x, torch.zeros_like(x), 0.1, 0.0, clamp=(-1, 1), backend="cuda")
    assert torch.isnan(out[0, 1]) and out[0, 2] == 1.0
    x, g = _step_inputs((10, 4), torch.float64)
    torch.testing.assert_close(langevin_step(x, g, 0.5, 0.0, seed=3, backend="cuda"), x - 0.5 * g, atol=1e-15, rtol=0)


def test_langevin_launcher_checks_every_tensors_device():
    """The op itself (below the public function's checks) names the tensor on the wrong device."""
    x = torch.randn(4, 3, device="cuda")
    args = (0.1, 0.5)
    tail = (3, 0, None, None, 0, 0.0)
    with pytest.raises(RuntimeError, match="grad must be on x's device"):
        torch.ops.ebmfast.langevin_step(x, x.cpu(), *args, None, *tail)
    with pytest.raises(RuntimeError, match="noise must be on x's device"):
        torch.ops.ebmfast.langevin_step(x, x, *args, x.cpu(), *tail)
    with pytest.raises(RuntimeError, match="x must be a CUDA tensor"):
        torch.ops.ebmfast.langevin_step(x.cpu(), x, *args, None, *tail)
    with pytest.raises(RuntimeError, match="grad must be on x's device"):
        torch.ops.ebmfast.langevin_step_(x, x.cpu(), *args, None, *tail)


# ----------------------------------------------------------------------------- philox_normal
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_philox_normal_is_the_reference_and_cpu_stream(dtype):
    """The kernel promises the stream of include/ebmfast/philox.h: the float64 reference within the
    dtype's tolerance, and the CPU kernel's numbers (same polynomials; nvcc may contract to FMA, so
    to rounding, not bit for bit)."""
    for shape, seed, offset in [((1,), 0, 0), ((7, 13), 123, 5), ((3, 1001), 2**40 + 7, 2**35 + 1),
                                ((4097, 33), 2**63 - 1, 2**63 - 1)]:
        like = torch.empty(shape, dtype=dtype, device="cuda")
        z = philox_normal(like, seed, offset, backend="cuda")
        assert z.is_cuda and z.dtype == dtype and z.shape == like.shape
        ref = philox_normal_ref(shape, seed, offset, dtype=torch.float64)
        _close(z, ref.to(dtype).double() if dtype in HALF else ref, dtype, f"{dtype} {shape} seed {seed}")
        if _has_kernel("philox_normal", "CPU"):
            _close(z, philox_normal(like.cpu(), seed, offset, backend="cpu"), dtype, f"cuda vs cpu {dtype} {shape}")


# ----------------------------------------------------------------------------- mlp_energy_grad
# (D, hidden, B): widths 1..128, D 1..128 (odd and even), 1..6 hidden layers, B not a multiple of a tile
MLP_SHAPES = [(1, (1,), 5), (2, (3, 64), 37), (10, (127,), 33), (19, (128, 40), 301), (2, (7, 9, 5, 16, 3, 11), 77),
              (128, (128,), 20), (4, (64, 64, 50), 45), (2, (128,) * 6, 11)]


def _net(d, hidden, dtype, bias=True, seed=0):
    ws, bs = random_net(d, hidden, bias=bias, seed=seed)
    return ws, bs, [w.to(dtype).cuda() for w in ws], [b.to(dtype).cuda() for b in bs]


def _rounded(ts, dtype):
    return [t.to(dtype).double() for t in ts]


@pytest.mark.parametrize("act", sorted(CODE_NAMES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", MLP_SHAPES, ids=lambda s: f"D{s[0]}-h{'x'.join(map(str, s[1]))}-B{s[2]}")
def test_mlp_energy_grad(shape, dtype, act):
    d, hidden, b = shape
    ws, bs, wc, bc = _net(d, hidden, dtype, bias=act % 2 == 0, seed=len(hidden) + d)
    x = (1.5 * torch.randn(b, d, dtype=torch.float64)).to(dtype)
    e, g = mlp_energy_grad(x.cuda(), wc, bc, CODE_NAMES[act], SLOPE, backend="cuda")
    assert _dispatch.LAST_CHOICE[("mlp_energy_grad", "cuda")] == "cuda"
    x64, w64, b64 = x.double(), _rounded(ws, dtype), _rounded(bs, dtype)
    e_ref, g_ref = mlp_energy_grad_ref(x64, w64, b64, act, SLOPE)
    where = f"act {act} {dtype} {shape}"
    if dtype == torch.float64:
        _close(e, e_ref, dtype, f"{where} energy")
        _close(g, g_ref, dtype, f"{where} grad")
    else:
        e32, g32 = mlp_energy_grad_ref(x, [w.float() for w in w64], [v.float() for v in b64], act, SLOPE)
        _close_f32(e, e_ref, e32, f"{where} energy")
        _close_f32(g, g_ref, g32, f"{where} grad")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_mlp_energy_grad_several_rows_per_warp(dtype):
    """B past 8 warps x 4 (float32) / 2 (float64) rows x the SM count: the plan puts several rows in a warp."""
    d, hidden = 3, (32, 17)
    rows = 4 if dtype == torch.float32 else 2
    b = 8 * rows * _sms() + 7
    ws, bs, wc, bc = _net(d, hidden, dtype)
    x = torch.randn(b, d, dtype=torch.float64).to(dtype)
    assert _cuda_plan.plan(x.cuda(), wc, "forward").rows_per_warp == rows
    e, g = mlp_energy_grad(x.cuda(), wc, bc, "silu", SLOPE, backend="cuda")
    x64, w64, b64 = x.double(), _rounded(ws, dtype), _rounded(bs, dtype)
    e_ref, g_ref = mlp_energy_grad_ref(x64, w64, b64, 2, SLOPE)
    if dtype == torch.float64:
        _close(e, e_ref, dtype, "energy")
        _close(g, g_ref, dtype, "grad")
    else:
        e32, g32 = mlp_energy_grad_ref(x, [w.float() for w in w64], [v.float() for v in b64], 2, SLOPE)
        _close_f32(e, e_ref, e32, "energy")
        _close_f32(g, g_ref, g32, "grad")


@pytest.mark.parametrize("dtype", HALF)
def test_mlp_energy_grad_half_inputs(dtype):
    """float16 / bfloat16 inputs are computed in float32 by the CUDA kernel and returned in their dtype."""
    ws, bs, wc, bc = _net(5, (33, 20), dtype)
    x = torch.randn(70, 5, dtype=torch.float64).to(dtype)
    e, g = mlp_energy_grad(x.cuda(), wc, bc, "tanh", SLOPE, backend="cuda")
    assert e.dtype == dtype and g.dtype == dtype
    e_ref, g_ref = mlp_energy_grad_ref(x.double(), _rounded(ws, dtype), _rounded(bs, dtype), 5, SLOPE)
    _close(e, e_ref.to(dtype).double(), dtype, "energy")
    _close(g, g_ref.to(dtype).double(), dtype, "grad")


# ----------------------------------------------------------------------------- mlp_langevin_chain
CHAINS = {
    "langevin": dict(noise_scale=0.3),
    "clamp+value-clip+reference": dict(noise_scale=0.3, sigma=2 ** -0.5, clamp=(-1.0, 1.5), grad_clip=0.7),
    "noise-free+norm-clip": dict(noise_scale=0.0, clamp=(None, 0.5), grad_clip=("norm", 0.4)),
}


def _chain_ref(x0, ws, bs, act, n_steps, step_size, every, seed, noise_scale, sigma=None, clamp=None, grad_clip=None):
    lo, hi = parse_clamp(clamp)
    mode, c = parse_grad_clip(grad_clip)
    ref_coef = 0.0 if sigma is None else 1.0 / sigma ** 2
    return mlp_langevin_chain_ref(x0, ws, bs, act, SLOPE, n_steps, step_size, noise_scale, ref_coef, seed, lo, hi,
                                  mode, c, every, True, True, True)


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("rows", ["one-row-per-warp", "several-rows-per-warp"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_mlp_langevin_chain(dtype, rows, name):
    """The fused chain vs the step-by-step float64 reference; with several rows per warp and D = 3 the
    lanes that record a row's trajectory are not the lanes that step it (the kernel's __syncwarp)."""
    d, hidden, act, n_steps, every, seed = 3, (32, 17), 2, 6, 2, 2**40 + 5
    big = 4 if dtype == torch.float32 else 2
    b = 45 if rows == "one-row-per-warp" else 8 * big * _sms() + 7
    ws, bs, wc, bc = _net(d, hidden, dtype, seed=1)
    x0 = torch.randn(b, d, dtype=torch.float64).to(dtype)
    assert _cuda_plan.plan(x0.cuda(), wc, "chain").rows_per_warp == (1 if rows == "one-row-per-warp" else big)
    kw = dict(n_steps=n_steps, step_size=0.05, seed=seed, **CHAINS[name])
    res = mlp_langevin_chain(x0.cuda(), wc, bc, CODE_NAMES[act], SLOPE, every=every, return_trajectory=True,
                             return_energies=True, backend="cuda", **kw)
    plain = mlp_langevin_chain(x0.cuda(), wc, bc, CODE_NAMES[act], SLOPE, every=every, backend="cuda", **kw)
    assert torch.equal(plain, res.x), "recording trajectories changed the chain"
    w64, b64 = _rounded(ws, dtype), _rounded(bs, dtype)
    x, traj, ens, bad = _chain_ref(x0.double(), w64, b64, act, every=every, **kw)
    assert int(bad) == -1 and res.stopped_at is None
    where = f"{name} {rows} {dtype}"
    if dtype == torch.float64:
        for got, want, what in ((res.x, x, "x"), (res.trajectory, traj, "trajectory"), (res.energies, ens, "energies")):
            _close(got, want, dtype, f"{where} {what}")
    else:
        x32, traj32, ens32, _ = _chain_ref(x0, [w.float() for w in w64], [v.float() for v in b64], act, every=every,
                                           **kw)
        for got, want, want32, what in ((res.x, x, x32, "x"), (res.trajectory, traj, traj32, "trajectory"),
                                        (res.energies, ens, ens32, "energies")):
            _close_f32(got, want, want32, f"{where} {what}")


# ----------------------------------------------------------------------------- backward, penalty
@pytest.mark.parametrize("act", sorted(CODE_NAMES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", [(2, (3, 64), 37), (10, (127,), 301), (2, (128,) * 6, 11), (3, (32, 17), 5000)],
                         ids=lambda s: f"D{s[0]}-h{'x'.join(map(str, s[1]))}-B{s[2]}")
def test_mlp_energy_grad_backward_through_autograd(shape, dtype, act):
    """A loss on (E, grad_x E) back-propagates through the CUDA double-backward kernel."""
    d, hidden, b = shape
    ws, bs, wc, bc = _net(d, hidden, dtype, bias=act % 2 == 0, seed=d + b)
    x = (1.5 * torch.randn(b, d, dtype=torch.float64)).to(dtype)
    ce, cg = torch.randn(b, dtype=torch.float64), torch.randn(b, d, dtype=torch.float64)
    xc = x.cuda().requires_grad_(True)
    params = [t.requires_grad_(True) for t in wc + bc]
    e, g = mlp_energy_grad(xc, wc, bc, CODE_NAMES[act], SLOPE, backend="cuda")
    loss = (e * ce.to(dtype).cuda()).sum() + (g * cg.to(dtype).cuda()).sum()
    got = torch.autograd.grad(loss, [xc] + params)
    assert _dispatch.LAST_CHOICE[("mlp_energy_grad_backward", "cuda")] == "cuda"
    x64, w64, b64 = x.double(), _rounded(ws, dtype), _rounded(bs, dtype)
    ce64, cg64 = ce.to(dtype).double(), cg.to(dtype).double()
    gx, gw, gb = mlp_energy_grad_backward_ref(x64, w64, b64, act, SLOPE, ce64, cg64)
    want = [gx, *gw, *gb]
    names = ["grad_x"] + [f"grad_W{i}" for i in range(len(gw))] + [f"grad_b{i}" for i in range(len(gb))]
    if dtype == torch.float32:
        gx32, gw32, gb32 = mlp_energy_grad_backward_ref(x, [w.float() for w in w64], [v.float() for v in b64], act,
                                                        SLOPE, ce64.float(), cg64.float())
        want32 = [gx32, *gw32, *gb32]
    for i, (n, a, w) in enumerate(zip(names, got, want)):
        where = f"act {act} {dtype} {shape} {n}"
        if dtype == torch.float64:
            _close(a, w, dtype, where)
        else:
            _close_f32(a, w, want32[i], where)


@pytest.mark.parametrize("lipschitz", [None, 1.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_grad_norm_penalty(dtype, lipschitz):
    """grad_norm_penalty of an MLPEnergy on CUDA (fused forward, CUDA double backward) vs autograd in float64."""
    from ebmfast.energies import MLPEnergy

    mod64 = MLPEnergy(4, (64, 33), activation="softplus").double()
    mod = MLPEnergy(4, (64, 33), activation="softplus").to(dtype).cuda()
    mod.load_state_dict({k: v.to(dtype) for k, v in mod64.state_dict().items()})
    mod64.load_state_dict({k: v.double().cpu() for k, v in mod.state_dict().items()})  # the same rounded weights
    x = torch.randn(300, 4, dtype=torch.float64).to(dtype)
    xc = x.cuda().requires_grad_(True)
    pen = grad_norm_penalty(mod, xc, lipschitz=lipschitz, backend="cuda")
    got = torch.autograd.grad(pen, [xc] + list(mod.parameters()), allow_unused=True, materialize_grads=True)
    assert _dispatch.LAST_CHOICE[("mlp_energy_grad_backward", "cuda")] == "cuda"

    def reference(m, xr):
        xr = xr.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(m(xr).sum(), xr, create_graph=True)
        p = penalty_from_grad(g, lipschitz)
        # the output bias does not reach grad_x E: its gradient is zero
        return [p, *torch.autograd.grad(p, [xr] + list(m.parameters()), allow_unused=True, materialize_grads=True)]

    want = reference(mod64, x.double())
    if dtype == torch.float32:
        mod32 = MLPEnergy(4, (64, 33), activation="softplus").float()
        mod32.load_state_dict({k: v.float() for k, v in mod64.state_dict().items()})
        want32 = reference(mod32, x)
    for i, (a, w) in enumerate(zip([pen, *got], want)):
        where = f"{dtype} lipschitz={lipschitz} output {i}"
        if dtype == torch.float64:
            _close(a, w, dtype, where)
        else:
            _close_f32(a, w, want32[i], where)

"""Triton kernels of the fused MLP energy (ebmfast/ops/_triton/mlp_energy.py) through their
launchers and raw ops (ebmfast/ops/_triton/mlp_launch.py) and the public API, run by the CPU
interpreter (TRITON_INTERPRET=1, set in tests/conftest.py) against the references of
ebmfast/ops/mlp_energy.py.

The interpreter pays per program, so the grids are small (one program of up to 256 particles,
or a forced BLOCK_B=16 where program boundaries are the point). Covered: every activation,
odd batches and widths, D < 16 (broadcast layer 1) and D >= 16 (tl.dot), widths padded
to 16 / 32 / 64 / 128, 1..6 hidden layers, biases or none, float64 and float32, `saved`,
the analytic double backward through the public API, whole chains against the step-by-step
reference (identical Philox noise), clip / clamp / reference term / records / non-finite
detection, and dispatch (explicit triton requests that the kernels cannot take raise).
"""
import pytest
import torch

import ebmfast
from ebmfast.energies import MLPEnergy
from ebmfast.ops import _dispatch
from ebmfast.ops.mlp_activations import CODE_NAMES
from ebmfast.ops.mlp_energy import mlp_energy_grad, mlp_energy_grad_ref, mlp_energy_grad_saved_ref
from ebmfast.ops.mlp_langevin_chain import mlp_langevin_chain, mlp_langevin_chain_ref
from ebmfast.ops.philox import philox_normal_ref
from ebmfast.samplers import Langevin
from ebmfast_testing import random_net as _net

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(not (_dispatch.triton_status()[0] and _dispatch.triton_interpret()),
                       reason="needs triton with TRITON_INTERPRET=1 (tests/conftest.py sets it before triton "
                              "is imported)"),
]

# (atol, rtol) against the float64 reference
TOL = {torch.float64: (1e-12, 1e-11), torch.float32: (2e-5, 2e-5)}


def _ops():
    from ebmfast.ops._triton.mlp_launch import triton_ops

    return triton_ops()


def _close(a, b, where, dtype=torch.float64, scale=1.0):
    atol, rtol = TOL[dtype]
    assert a.shape == b.shape, f"{where}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    torch.testing.assert_close(a.to(b.dtype), b, atol=atol * scale, rtol=rtol * scale,
                               msg=lambda m: f"{where}: {m}")


# --------------------------------------------------------------------------- (1) E and grad_x E
# (D, hidden, B): odd batches and widths; D=19 uses tl.dot in layer 1; 100 pads to 128; 6 layers deep
SHAPES = [(3, (20, 33), 37), (19, (64,), 21), (1, (100,), 5), (2, (7, 9, 5, 16, 3, 11), 16)]


@pytest.mark.parametrize("act", sorted(CODE_NAMES))
def test_energy_grad_saved_float64_every_activation(act):
    d, hidden, b = SHAPES[0]
    ws, bs = _net(d, hidden, bias=act % 2 == 0)
    x = 1.5 * torch.randn(b, d, dtype=torch.float64)
    e, g, saved = _ops().energy_grad(x, ws, bs, act, 0.07, True)
    e_ref, g_ref = mlp_energy_grad_ref(x, ws, bs, act, 0.07)
    _close(e, e_ref, f"{CODE_NAMES[act]} energy")
    _close(g, g_ref, f"{CODE_NAMES[act]} grad")
    _close(saved, mlp_energy_grad_saved_ref(x, ws, bs, act, 0.07), f"{CODE_NAMES[act]} saved")


@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_energy_grad_shapes(shape, dtype):
    d, hidden, b = shape
    ws, bs = _net(d, hidden)
    x = torch.randn(b, d, dtype=torch.float64)
    e_ref, g_ref = mlp_energy_grad_ref(x, ws, bs, 6, 0.07)  # gelu: exp/tanh in every layer
    e, g, saved = _ops().energy_grad(x.to(dtype), [w.to(dtype) for w in ws], [v.to(dtype) for v in bs], 6, 0.07,
                                     False)
    assert saved.numel() == 0
    _close(e, e_ref, f"{shape} {dtype} energy", dtype, scale=10)
    _close(g, g_ref, f"{shape} {dtype} grad", dtype, scale=10)


def test_energy_grad_several_programs_and_float32_tolerance():
    from ebmfast.ops._triton.mlp_launch import energy_grad_launch

    ws, bs = _net(5, (24, 40, 7))
    x = torch.randn(53, 5, dtype=torch.float64)  # 4 programs of 16, the last one 5 rows
    e_ref, g_ref = mlp_energy_grad_ref(x, ws, bs, 3, 0.07)
    for dtype in (torch.float64, torch.float32):
        cast = lambda t: t.to(dtype)  # noqa: E731
        e, g, _ = energy_grad_launch(cast(x), list(map(cast, ws)), list(map(cast, bs)), 3, 0.07, False,
                                     block_b=16)
        _close(e, e_ref, f"{dtype} energy, BLOCK_B=16", dtype)
        _close(g, g_ref, f"{dtype} grad, BLOCK_B=16", dtype)


def test_public_api_and_double_backward_through_the_triton_op():
    mod = MLPEnergy(2, (16, 24), activation="softplus").double()
    x = torch.randn(11, 2, dtype=torch.float64, requires_grad=True)
    e, g = mod.energy_and_grad(x, backend="triton")
    assert _dispatch.LAST_CHOICE[("mlp_energy_grad", "cpu")] == "triton"
    e_r, g_r = mod.energy_and_grad(x, backend="ref")
    _close(e, e_r.detach(), "energy")
    _close(g, g_r.detach(), "grad")
    params = [x] + list(mod.parameters())
    loss = ((g.norm(dim=1) - 1.0) ** 2).mean() + 0.3 * e.mean()
    loss_r = ((g_r.norm(dim=1) - 1.0) ** 2).mean() + 0.3 * e_r.mean()
    for a, b, n in zip(torch.autograd.grad(loss, params), torch.autograd.grad(loss_r, params),
                       ["x"] + [n for n, _ in mod.named_parameters()]):
        _close(a, b, f"d loss / d {n}")


def test_explicit_triton_request_the_kernels_cannot_take_raises():
    ws, bs = _net(2, (4,) * 7)  # 7 hidden layers > MAX_HIDDEN
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="hidden layers"):
        mlp_energy_grad(x, ws, bs, "silu", backend="triton")
    with pytest.raises(RuntimeError, match="hidden layers"):
        mlp_langevin_chain(x, ws, bs, "silu", n_steps=2, step_size=0.1, backend="triton")
    ws, bs = _net(2, (129,))  # wider than MAX_WIDTH: one weight tile would not fit in shared memory
    with pytest.raises(RuntimeError, match="widths"):
        mlp_energy_grad(x, ws, bs, "silu", backend="triton")
    ws, bs = _net(2, ())  # a linear energy: no hidden layer
    with pytest.raises(RuntimeError, match="hidden layers"):
        mlp_energy_grad(x, ws, bs, "silu", backend="triton")


# --------------------------------------------------------------------------- (2) whole chains
def _chain_args(x0, ws, bs, act=2, n_steps=7, step=0.05, noise=0.3, ref=0.0, lo=None, hi=None, clip=0, cv=0.0,
                every=3, traj=True, ens=True, check=True, seed=1234):
    return (x0, ws, bs, act, 0.07, n_steps, step, noise, ref, seed, lo, hi, clip, cv, every, traj, ens, check)


CHAINS = {
    "langevin": {},
    "clamp+value-clip+reference": dict(ref=0.5, lo=-1.0, hi=1.5, clip=1, cv=0.7),
    "noise-free+norm-clip": dict(noise=0.0, hi=0.5, clip=2, cv=0.4, every=1),
    "one-step-no-records": dict(n_steps=1, traj=False, ens=False, check=False),
}


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chain_matches_step_by_step_reference(name, dtype):
    ws, bs = _net(2, (32, 17, 32), dtype=torch.float64, scale=1.0)
    x0 = torch.randn(45, 2, dtype=torch.float64)
    cast = lambda t: t.to(dtype)  # noqa: E731
    got = _ops().chain(*_chain_args(cast(x0), list(map(cast, ws)), list(map(cast, bs)), **CHAINS[name]))
    want = mlp_langevin_chain_ref(*_chain_args(x0, ws, bs, **CHAINS[name]))
    for a, b, what in zip(got[:3], want[:3], ("x", "trajectory", "energies")):
        _close(a, b, f"{name} {dtype} {what}", dtype, scale=5)
    assert int(got[3]) == int(want[3]) == -1


def test_chain_with_several_programs():
    from ebmfast.ops._triton.mlp_launch import chain_launch

    ws, bs = _net(3, (16, 20, 16), scale=1.0)
    x0 = torch.randn(40, 3, dtype=torch.float64)
    args = _chain_args(x0, ws, bs, act=4, ref=0.3, clip=2, cv=1.0)
    got = chain_launch(*args, block_b=16)
    want = mlp_langevin_chain_ref(*args)
    for a, b, what in zip(got[:3], want[:3], ("x", "trajectory", "energies")):
        _close(a, b, f"3 programs, chain {what}")


def test_chain_noise_is_the_langevin_step_stream_across_programs():
    """Zero weights: grad E = 0, so one step adds exactly noise_scale * philox_normal(x, seed, 0).
    B*D = 111 (not a multiple of 4) over programs of 16 rows: Philox groups straddle programs."""
    from ebmfast.ops._triton.mlp_launch import chain_launch

    ws = [torch.zeros(16, 3, dtype=torch.float64), torch.zeros(1, 16, dtype=torch.float64)]
    x0 = torch.randn(37, 3, dtype=torch.float64)
    for offset in (0, 5):
        x, _, _, _ = chain_launch(x0, ws, [], 0, 0.0, 1, 0.1, 0.5, 0.0, 2**40 + 77, None, None, 0, 0.0, 1, False,
                                  False, False, offset=offset, block_b=16)
        want = x0 + 0.5 * philox_normal_ref(x0.shape, 2**40 + 77, offset, dtype=torch.float64)
        _close(x, want, f"one noisy step, offset {offset}")


def test_chain_equals_the_autograd_sampler_loop():
    """The fused chain against ebmfast's ordinary sampler loop (autograd gradients + langevin_step)."""
    mod = MLPEnergy(2, (24, 24), activation="elu").double()
    x0 = torch.randn(19, 2, dtype=torch.float64)
    sampler = Langevin(0.02, noise_scale=0.2, clamp=(-3.0, 3.0), grad_clip=("norm", 2.0), backend="triton")
    fused = sampler.run(mod, x0, 6, seed=9, return_trajectory=True, return_energies=True, every=2)
    assert _dispatch.LAST_CHOICE[("mlp_langevin_chain", "cpu")] == "triton"
    sampler.backend = "ref"
    loop = sampler.run(lambda x: mod(x), x0, 6, seed=9, return_trajectory=True, return_energies=True, every=2)
    _close(fused.x, loop.x, "x")
    _close(fused.trajectory, loop.trajectory, "trajectory")
    _close(fused.energies, loop.energies, "energies")


# numpy, inside the interpreter, warns about the inf/NaN these chains are built to produce
_NUMPY_INF = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]


@_NUMPY_INF[0]
@_NUMPY_INF[1]
def test_chain_reports_the_first_nonfinite_step():
    ws, bs = _net(2, (16,), scale=1.0)
    x0 = torch.randn(20, 2, dtype=torch.float64)
    x0[13, 1] = float("nan")  # this particle's energy is NaN from the first step on
    args = _chain_args(x0, ws, bs, act=0, n_steps=5, noise=0.0, traj=False, ens=False)
    assert int(_ops().chain(*args)[3]) == int(mlp_langevin_chain_ref(*args)[3]) == 0
    # a finite start that a repelling reference term (step * ref_coef = 1e30) blows up after ~10 steps
    x0 = torch.randn(20, 2, dtype=torch.float64)
    args = _chain_args(x0, ws, bs, act=1, n_steps=40, step=1.0, ref=1e30, noise=0.0, traj=False, ens=False)
    bad_ref = int(mlp_langevin_chain_ref(*args)[3])
    assert bad_ref > 0, "the test chain should blow up after a few steps"
    assert int(_ops().chain(*args)[3]) == bad_ref
    # unchecked chains report -1
    args = _chain_args(x0, ws, bs, n_steps=40, step=1.0, ref=1e30, noise=0.0, traj=False, ens=False, check=False)
    assert int(_ops().chain(*args)[3]) == -1


@_NUMPY_INF[0]
@_NUMPY_INF[1]
def test_public_chain_stop_mode_reruns_to_the_bad_step():
    ws, bs = _net(2, (16,))
    x0 = torch.randn(10, 2, dtype=torch.float64)
    kw = dict(n_steps=40, step_size=1.0, sigma=1e-15, on_nonfinite="stop", return_trajectory=True)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        got = mlp_langevin_chain(x0, ws, bs, "leaky_relu", **kw, backend="triton")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        want = mlp_langevin_chain(x0, ws, bs, "leaky_relu", **kw, backend="ref")
    assert got.stopped_at == want.stopped_at is not None
    _close(got.x, want.x, "state before the first non-finite step")
    _close(got.trajectory, want.trajectory, "trajectory up to the first non-finite step")


def test_opcheck_triton_ops():
    ws, bs = _net(2, (16,))
    x = torch.randn(5, 2, dtype=torch.float64)
    ops = _ops()
    torch.library.opcheck(ops.energy_grad, (x, ws, bs, 2, 0.01, True),
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(ops.chain, _chain_args(x, ws, bs, n_steps=2), test_utils=("test_schema", "test_faketensor"))


def test_support_reasons_name_each_limit():
    from types import SimpleNamespace

    from ebmfast.ops._triton.mlp_config import not_supported_reasons

    def fake_x(d, device):  # only what not_supported_reasons reads; no GPU needed
        return SimpleNamespace(dim=lambda: 2, shape=(5, d), device=torch.device(device), dtype=torch.float32)

    ws, _ = _net(19, (128, 64))
    assert not_supported_reasons(fake_x(19, "cpu"), ws, 2) == []
    gpu = not_supported_reasons(fake_x(19, "cuda"), ws, 2)
    assert len(gpu) == 1 and "D >= 16" in gpu[0]
    ws, _ = _net(19, (64, 64))
    assert not_supported_reasons(fake_x(19, "cuda"), ws, 2) == []
    ws, _ = _net(200, (8,))
    assert any("D <= 128" in r for r in not_supported_reasons(fake_x(200, "cpu"), ws, 2))
    assert any("activation" in r for r in not_supported_reasons(fake_x(200, "cpu"), ws, 9))


def test_launch_config_gpu_sizes_only_off_the_interpreter():
    """One configuration function: interpreter-sized blocks (one program for up to 256 rows) only
    under the interpreter, the AOT-checked GPU sizes (tests/ops/test_mlp_triton_aot.py) otherwise."""
    from ebmfast.ops._triton.langevin_launch import langevin_launch_config
    from ebmfast.ops._triton.mlp_config import mlp_launch_config

    for kernel in ("energy_grad", "chain", "backward"):
        assert mlp_launch_config(kernel, 64, 200, False, interpret=True) == (256, 4)
        for hp in (16, 32, 64, 128):
            for f64 in (False, True):
                bb, warps = mlp_launch_config(kernel, hp, 10_000, f64, interpret=False)
                assert 16 <= bb <= 64 and warps in (4, 8), (kernel, hp, f64, bb, warps)
    assert langevin_launch_config(True, interpret=False)[0] < langevin_launch_config(True, interpret=True)[0]
    with pytest.raises(ValueError, match="kernel must be one of"):
        mlp_launch_config("forward", 64, 10, False, interpret=False)


def test_float_arguments_keep_float64_precision():
    """Scalars travel as float64 bit patterns (no device tensor, no host-device copy): a float32
    kernel argument would round step_size = 0.1 to 0.10000000149 and miss 1e-12."""
    from ebmfast.ops._triton.mlp_launch import chain_launch, f64_bits

    for v in (0.1, -2.5e-300, 1e30, 0.0, -0.0, 7.0):
        assert torch.tensor([f64_bits(v)], dtype=torch.int64).view(torch.float64).item() == v
    ws, bs = _net(2, (16,), scale=1.0)
    x0 = torch.randn(5, 2, dtype=torch.float64)
    args = _chain_args(x0, ws, bs, n_steps=3, step=0.1, noise=0.0, ref=0.3, lo=-0.7, hi=0.9, clip=1, cv=0.3)
    got, want = chain_launch(*args), mlp_langevin_chain_ref(*args)
    torch.testing.assert_close(got[0], want[0], atol=1e-14, rtol=1e-14)


def test_bad_block_size_is_refused():
    from ebmfast.ops._triton.mlp_launch import energy_grad_launch

    ws, bs = _net(2, (16,))
    with pytest.raises(ValueError, match="block_b must be a power of two >= 16"):
        energy_grad_launch(torch.randn(3, 2, dtype=torch.float64), ws, bs, 2, 0.0, False, block_b=24)

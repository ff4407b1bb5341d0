"""Every compiled Triton kernel on CUDA tensors against the float64 reference (CPU).

    TRITON_INTERPRET=0 python -m pytest -m cuda tests/gpu/test_triton_kernels.py

(tests/conftest.py turns the interpreter on unless TRITON_INTERPRET is set; these tests are about
the compiled kernels.) Covered: the Langevin step with Philox or given noise, every clip / clamp,
float32 / float64 / float16 / bfloat16, in place; the MLP energy + gradient (every activation,
float32 / float64, padded widths 16 / 32 / 64 / 128, 1..6 hidden layers, D < 16 and D >= 16,
biases or none, `saved`); whole chains with and without trajectory / energy records, reference
term, clips, clamps and non-finite detection; the analytic double backward (every activation,
every supported width, the scratch at width 128) including a batch with more row blocks than the capped
grid (several launches); and the public functions with backend="triton". Odd batch sizes
throughout. float32 MLP results use tf32x3 products (about float32 accuracy per product) summed
over layers: they are held to 10x the float32 tolerance, as the interpreter tests are.
"""
import pytest
import torch

from ebmfast.ops import _dispatch
from ebmfast.ops.langevin_step import langevin_step_ref
from ebmfast.ops.mlp_activations import CODE_NAMES
from ebmfast.ops.mlp_energy import mlp_energy_grad_backward_ref, mlp_energy_grad_ref, mlp_energy_grad_saved_ref
from ebmfast.ops.mlp_langevin_chain import mlp_langevin_chain_ref
from ebmfast.ops.philox import philox_normal_ref
from ebmfast_testing import TOLERANCES, random_net

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.triton,
    pytest.mark.skipif(torch.cuda.is_available() and _dispatch.triton_interpret(),
                       reason="these test the compiled kernels: run with TRITON_INTERPRET=0 "
                              "(tests/conftest.py turns the interpreter on otherwise)"),
]

DEV = "cuda"
SLOPE = 0.07
MLP_SCALE = {torch.float64: 1.0, torch.float32: 10.0}  # tf32x3 products summed over layers (docstring)


def _close(got, want, dtype, where, scale=1.0):
    atol, rtol = TOLERANCES[dtype]
    assert got.shape == want.shape, f"{where}: shape {tuple(got.shape)} vs {tuple(want.shape)}"
    torch.testing.assert_close(got.detach().double().cpu(), want.detach().double().cpu(), atol=atol * scale,
                               rtol=rtol * scale, msg=lambda m: f"{where}: {m}")


def _net(d, hidden, dtype, bias=True, seed=0, scale=1.5):
    ws, bs = random_net(d, hidden, bias=bias, seed=seed, scale=scale)  # float64 on the CPU: the reference's
    return ws, bs, [w.to(DEV, dtype) for w in ws], [b.to(DEV, dtype) for b in bs]


def _mlp():
    from ebmfast.ops._triton import mlp_launch

    return mlp_launch


# --------------------------------------------------------------------------- Langevin step
def _lang_ops():
    from ebmfast.ops._triton.langevin_launch import triton_ops

    return triton_ops()


LANG_SHAPES = [(1, 1), (3, 5), (7, 13, 3), (257, 33), (4099, 17)]  # 4099 * 17: many programs, odd tail
CLIPS = [(0, 0.0), (1, 0.3), (2, 0.8)]
CLAMPS = [(None, None), (-0.6, 0.7), (None, 0.25)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", LANG_SHAPES, ids=str)
def test_langevin_step_philox_noise(dtype, shape):
    x = torch.randn(shape, dtype=torch.float64)
    g = 2 * torch.randn(shape, dtype=torch.float64)
    op, inplace = _lang_ops()
    for mode, c in CLIPS:
        for lo, hi in CLAMPS:
            args = (0.07, 0.3, None, 2**40 + 1234, 9, lo, hi, mode, c)
            got = op(x.to(DEV, dtype), g.to(DEV, dtype), *args)
            want = langevin_step_ref(x, g, *args)
            _close(got, want, dtype, f"{dtype} {shape} clip={mode} clamp={lo, hi}")
            y = x.to(DEV, dtype)
            inplace(y, g.to(DEV, dtype), *args)
            assert torch.equal(y, got), "in place differs from out of place"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_langevin_step_given_noise(dtype):
    op, _ = _lang_ops()
    for shape in [(1, 1), (5, 3, 2), (1031, 7)]:
        x, g, z = (torch.randn(shape, dtype=torch.float64).to(dtype) for _ in range(3))
        for mode, c in CLIPS:
            args = (0.05, 0.2, z.to(DEV), 0, 0, -1.0, 1.5, mode, c)
            got = op(x.to(DEV), g.to(DEV), *args)
            assert got.dtype == dtype
            want = langevin_step_ref(x.double(), g.double(), 0.05, 0.2, z.double(), 0, 0, -1.0, 1.5, mode, c)
            _close(got, want.to(dtype), dtype, f"{dtype} {shape} clip={mode}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_philox_normals(dtype):
    """noise_scale 1 and a zero gradient: the step adds exactly the Philox stream."""
    op, _ = _lang_ops()
    for shape, seed, offset in [((1,), 0, 0), ((7, 13), 123, 5), ((3, 1001), 2**40 + 7, 2**35 + 1)]:
        zeros = torch.zeros(shape, dtype=dtype, device=DEV)
        z = op(zeros, zeros, 1.0, 1.0, None, seed, offset, None, None, 0, 0.0)
        _close(z, philox_normal_ref(shape, seed, offset, dtype=torch.float64), dtype, f"{dtype} {shape}")


# --------------------------------------------------------------------------- energy + gradient
def _check_energy_grad(d, hidden, b, act, dtype, bias=True, seed=0):
    ws, bs, wd, bd = _net(d, hidden, dtype, bias=bias, seed=seed)
    x = 1.5 * torch.randn(b, d, dtype=torch.float64)
    where = f"{CODE_NAMES[act]} {dtype} D={d} hidden={hidden} B={b}"
    e, g, saved = _mlp().triton_ops().energy_grad(x.to(DEV, dtype), wd, bd, act, SLOPE, True)
    e_ref, g_ref = mlp_energy_grad_ref(x, ws, bs, act, SLOPE)
    _close(e, e_ref, dtype, f"{where} energy", MLP_SCALE[dtype])
    _close(g, g_ref, dtype, f"{where} grad", MLP_SCALE[dtype])
    _close(saved, mlp_energy_grad_saved_ref(x, ws, bs, act, SLOPE), dtype, f"{where} saved", MLP_SCALE[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", sorted(CODE_NAMES))
def test_energy_grad_every_activation(act, dtype):
    _check_energy_grad(3, (20, 33), 37, act, dtype, bias=act % 2 == 0, seed=act)


# (D, hidden, B): HP 16 / 32 / 64 / 128, 1..6 hidden layers, D >= 16 (layer 1 as tl.dot) up to width 64
# (every width-128 kernel compiles for a minute or more: one network per kernel and dtype)
SHAPES = [(1, (9,), 1), (2, (16, 16), 1000), (19, (64,), 21), (2, (100, 128), 333), (2, (7, 9, 5, 16, 3, 11), 16),
          (64, (64, 64), 99)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_energy_grad_widths_and_depths(shape, dtype):
    _check_energy_grad(*shape, act=6, dtype=dtype)  # gelu: exp / tanh in every layer


# --------------------------------------------------------------------------- chains
def _chain_args(x0, ws, bs, act=2, n_steps=7, step=0.05, noise=0.3, ref=0.0, lo=None, hi=None, clip=0, cv=0.0,
                every=3, traj=True, ens=True, check=True, seed=1234):
    return (x0, ws, bs, act, SLOPE, n_steps, step, noise, ref, seed, lo, hi, clip, cv, every, traj, ens, check)


CHAINS = {
    "langevin": {},
    "clamp+value-clip+reference": dict(ref=0.5, lo=-1.0, hi=1.5, clip=1, cv=0.7),
    "noise-free+norm-clip": dict(noise=0.0, hi=0.5, clip=2, cv=0.4, every=1),
    "no-records": dict(n_steps=4, traj=False, ens=False, check=False),
    "energies-only": dict(traj=False, every=2),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(CHAINS))
def test_chain_matches_step_by_step_reference(name, dtype):
    nets = (((32, 17, 32), 45, 2), ((16,), 1, 0)) + ((((128, 64), 301, 4),) if name == "langevin" else ())
    for hidden, b, act in nets:  # width 128 with one feature set (compile time, see SHAPES)
        ws, bs, wd, bd = _net(2, hidden, dtype, scale=1.0)
        x0 = torch.randn(b, 2, dtype=torch.float64)
        got = _mlp().triton_ops().chain(*_chain_args(x0.to(DEV, dtype), wd, bd, act=act, **CHAINS[name]))
        want = mlp_langevin_chain_ref(*_chain_args(x0, ws, bs, act=act, **CHAINS[name]))
        for a, w, what in zip(got[:3], want[:3], ("x", "trajectory", "energies")):
            _close(a, w, dtype, f"{name} {dtype} hidden={hidden} {what}", 5 * MLP_SCALE[dtype])
        assert int(got[3]) == int(want[3]) == -1


def test_chain_reports_the_first_nonfinite_step():
    ws, bs, wd, bd = _net(2, (16,), torch.float64, scale=1.0)
    x0 = torch.randn(20, 2, dtype=torch.float64)
    args = dict(act=1, n_steps=40, step=1.0, ref=1e30, noise=0.0, traj=False, ens=False)
    bad_ref = int(mlp_langevin_chain_ref(*_chain_args(x0, ws, bs, **args))[3])
    assert bad_ref > 0, "the test chain should blow up after a few steps"
    assert int(_mlp().triton_ops().chain(*_chain_args(x0.to(DEV), wd, bd, **args))[3]) == bad_ref


# --------------------------------------------------------------------------- double backward
def _check_backward(d, hidden, b, act, dtype, bias=True, seed=0, **launch):
    ws, bs, wd, bd = _net(d, hidden, dtype, bias=bias, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(b, d, generator=gen, dtype=torch.float64)
    ge, gg = torch.randn(b, generator=gen, dtype=torch.float64), torch.randn(b, d, generator=gen, dtype=torch.float64)
    cast = lambda t: t.to(DEV, dtype)  # noqa: E731
    if launch:
        got = _mlp().energy_grad_backward_launch(cast(x), wd, bd, act, SLOPE, cast(x[:0]), cast(ge), cast(gg),
                                                 **launch)
    else:
        got = _mlp().triton_ops().energy_grad_backward(cast(x), wd, bd, act, SLOPE, cast(x[:0]), cast(ge), cast(gg))
    want = mlp_energy_grad_backward_ref(x, ws, bs, act, SLOPE, ge, gg)
    where = f"{CODE_NAMES[act]} {dtype} D={d} hidden={hidden} B={b} {launch}"
    _close(got[0], want[0], dtype, f"{where} d/dx", MLP_SCALE[dtype])
    for i, (a, w) in enumerate(zip(got[1] + got[2], want[1] + want[2])):
        _close(a, w, dtype, f"{where} d/dparam {i}", MLP_SCALE[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", sorted(CODE_NAMES))
def test_backward_every_activation(act, dtype):
    _check_backward(3, (20, 33), 37, act, dtype, bias=act != 1, seed=act)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_widths_and_depths(shape, dtype):
    from ebmfast.ops._triton.mlp_config import backward_not_supported_reasons

    d, hidden, b = shape
    ws = [w.to(DEV, dtype) for w in random_net(d, hidden)[0]]
    why = backward_not_supported_reasons(torch.empty(b, d, dtype=dtype, device=DEV), ws, 6)
    if dtype == torch.float64 and max(hidden) > 64:  # declined on GPUs (mlp_config), the cuda backend takes it
        assert len(why) == 1 and "float64 only with hidden widths <= 64" in why[0], why
        return
    assert why == []
    _check_backward(*shape, act=6, dtype=dtype)  # width 128: kept tiles in the scratch


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_large_batch_runs_a_capped_grid(dtype):
    """More row blocks than the capped number of programs: the launcher covers them in several
    launches and sums each one's partial sums (a buffer of `bwd_max_programs` rows, not one per block)."""
    from ebmfast.ops._triton.mlp_config import bwd_max_programs, mlp_launch_config

    b = 70_001
    blocks = -(-b // mlp_launch_config("backward", 64, b, dtype == torch.float64, interpret=False)[0])
    assert blocks > 4 * bwd_max_programs(torch.device(DEV), interpret=False), "the batch must exceed the cap"
    _check_backward(2, (64, 64), b, 2, dtype, seed=5)
    _check_backward(2, (48,), 1001, 3, dtype, seed=6, max_programs=3)  # forced: 3 programs, 63 blocks


# --------------------------------------------------------------------------- public functions
def test_public_functions_with_backend_triton():
    import ebmfast.ops as ops
    from ebmfast.energies import MLPEnergy

    ws, bs, wd, bd = _net(2, (32, 32), torch.float64)
    x = torch.randn(77, 2, dtype=torch.float64)
    e, g = ops.mlp_energy_grad(x.to(DEV), wd, bd, "silu", backend="triton")
    e_ref, g_ref = mlp_energy_grad_ref(x, ws, bs, 2, 0.01)
    _close(e, e_ref, torch.float64, "mlp_energy_grad energy")
    _close(g, g_ref, torch.float64, "mlp_energy_grad grad")
    res = ops.mlp_langevin_chain(x.to(DEV), wd, bd, "silu", n_steps=5, step_size=0.05, noise_scale=0.2, seed=3,
                                 backend="triton")
    want = mlp_langevin_chain_ref(x, ws, bs, 2, 0.01, 5, 0.05, 0.2, 0.0, 3, None, None, 0, 0.0, 1, False, False,
                                  False)
    _close(res.x, want[0], torch.float64, "mlp_langevin_chain x")
    y = ops.langevin_step(x.to(DEV), g, 0.1, 0.3, seed=11, offset=2, backend="triton")
    _close(y, langevin_step_ref(x, g_ref.cpu(), 0.1, 0.3, None, 11, 2, None, None, 0, 0.0), torch.float64,
           "langevin_step")
    # double backward (gradient penalty) through the Triton forward and backward
    mod = MLPEnergy(2, (32, 32), activation="softplus").double()
    dmod = MLPEnergy(2, (32, 32), activation="softplus").double().to(DEV)
    dmod.load_state_dict(mod.state_dict())
    xr = x.to(DEV).requires_grad_(True)
    e, g = dmod.energy_and_grad(xr, backend="triton")
    got = torch.autograd.grad(((g.norm(dim=1) - 1) ** 2).mean() + 0.3 * e.mean(), [xr] + list(dmod.parameters()))
    x2 = x.clone().requires_grad_(True)
    e2 = mod(x2)
    (g2,) = torch.autograd.grad(e2.sum(), x2, create_graph=True)
    want = torch.autograd.grad(((g2.norm(dim=1) - 1) ** 2).mean() + 0.3 * e2.mean(), [x2] + list(mod.parameters()))
    for i, (a, w) in enumerate(zip(got, want)):
        _close(a, w, torch.float64, f"gradient penalty d/d input {i}", 10)

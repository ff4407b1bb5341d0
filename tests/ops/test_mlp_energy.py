"""Fused MLP energy ops: E + grad_x E, its analytic double backward, and whole Langevin chains.

Every fused path is compared with autograd on the plain nn.Module (float64, random weights and
inputs), float32 with a tolerance table, plus opcheck, gradcheck and gradgradcheck.
"""
import os
import subprocess
import sys

import pytest
import torch

import ebmfast
from ebmfast import _ext
from ebmfast.energies import MLPEnergy
from ebmfast.ops import mlp_energy_grad, mlp_energy_grad_ref, mlp_langevin_chain
from ebmfast.ops.mlp_activations import CODE_NAMES
from ebmfast.samplers import GradientDescent, Langevin, NonFiniteError, ReferenceLangevin, Sampler

ACTS = list(CODE_NAMES.values())
HAVE_CPU = _ext.available() and hasattr(torch.ops.ebmfast, "mlp_energy_grad")
BACKENDS = ["ref"] + (["cpu"] if HAVE_CPU else [])
needs_cpu = pytest.mark.skipif(not HAVE_CPU, reason="extension with MLP ops not built")

# (in_dim, hidden, batch): widths 1, 3, 64, 127, 256; input dims 1, 2, 10, 64; batches that are
# not multiples of the kernel tile (6 rows) or of the thread count
SHAPES = [(1, (1,), 5), (2, (3, 64), 7), (10, (127,), 33), (64, (256, 3), 19), (2, (), 4)]
# float32 vs the float64 reference: error <= 2x the error of plain PyTorch float32 + atol
F32_ATOL = {"energy": 1e-5, "grad": 1e-5, "vjp": 1e-5}


def _module(in_dim, hidden, act, dtype=torch.float64, bias=True, scale=1.5):
    e = MLPEnergy(in_dim, hidden, activation=act, bias=bias, negative_slope=0.07).to(dtype)
    with torch.no_grad():  # larger than default init so every activation regime is visited
        for p in e.parameters():
            p.mul_(scale)
    return e


def _autograd(e_mod, x):
    x = x.detach().requires_grad_(True)
    e = e_mod(x)
    (g,) = torch.autograd.grad(e.sum(), x, create_graph=True)
    return e, g, x


def _close(a, b, where, atol=1e-10, rtol=1e-9):
    assert a.shape == b.shape, f"{where}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{where}: {m}")


# --------------------------------------------------------------------------- op 1: E and grad
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"D{s[0]}-h{'x'.join(map(str, s[1]))}-B{s[2]}")
def test_energy_grad_matches_autograd_float64(backend, act, shape):
    d, hidden, b = shape
    mod = _module(d, hidden, act)
    x = 2 * torch.randn(b, d, dtype=torch.float64)
    e_ref, g_ref, _ = _autograd(mod, x)
    e, g = mod.energy_and_grad(x, backend=backend)
    _close(e, e_ref.detach(), f"{backend}/{act}/{shape} energy")
    _close(g, g_ref.detach(), f"{backend}/{act}/{shape} grad")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", SHAPES[1:4], ids=lambda s: f"D{s[0]}-h{'x'.join(map(str, s[1]))}-B{s[2]}")
def test_double_backward_matches_autograd_float64(backend, act, shape):
    """VJP of (E, grad_x E) w.r.t. x and every parameter vs autograd's double backward."""
    d, hidden, b = shape
    mod = _module(d, hidden, act, bias=act != "tanh")  # one activation without biases
    x = torch.randn(b, d, dtype=torch.float64)
    ge, gg = torch.randn(b, dtype=torch.float64), torch.randn(b, d, dtype=torch.float64)
    params = list(mod.parameters())
    e_ref, g_ref, xr = _autograd(mod, x)
    want = torch.autograd.grad((e_ref * ge).sum() + (g_ref * gg).sum(), [xr] + params, allow_unused=True,
                               materialize_grads=True)
    xf = x.clone().requires_grad_(True)
    e, g = mod.energy_and_grad(xf, backend=backend)
    got = torch.autograd.grad((e * ge).sum() + (g * gg).sum(), [xf] + params)
    names = ["x"] + [n for n, _ in mod.named_parameters()]
    for n, a, w in zip(names, got, want):
        _close(a, w, f"{backend}/{act}/{shape} d/d{n}", atol=1e-9)


@needs_cpu
@pytest.mark.parametrize("threads", [1, 2])
def test_backward_many_tiles_per_thread(threads):
    """Several tiles per thread, the last one partial: the backward reads `saved` row by row and
    must not let rows of the previous tile leak into the weight gradients."""
    mod = _module(2, (48, 48), "softplus")  # softplus(0) != 0: padded entries would show up
    x = 3 * torch.randn(301, 2, dtype=torch.float64)
    ge, gg = torch.randn(301, dtype=torch.float64), torch.randn(301, 2, dtype=torch.float64)
    params = list(mod.parameters())
    e_ref, g_ref, xr = _autograd(mod, x)
    want = torch.autograd.grad((e_ref * ge).sum() + (g_ref * gg).sum(), [xr] + params)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        xf = x.clone().requires_grad_(True)
        e, g = mod.energy_and_grad(xf, backend="cpu")
        got = torch.autograd.grad((e * ge).sum() + (g * gg).sum(), [xf] + params)
    finally:
        torch.set_num_threads(old)
    for n, a, w in zip(["x"] + [n for n, _ in mod.named_parameters()], got, want):
        _close(a, w, f"threads {threads} d/d{n}", atol=1e-9)


@needs_cpu
def test_backward_op_recomputes_without_saved():
    mod = _module(3, (17, 9), "silu")
    w, b = (list(t.detach() for t in ts) for ts in mod.fused_params())
    x = torch.randn(11, 3, dtype=torch.float64)
    ge, gg = torch.randn(11, dtype=torch.float64), torch.randn(11, 3, dtype=torch.float64)
    _, _, saved = torch.ops.ebmfast.mlp_energy_grad(x, w, b, 2, 0.01, True)
    assert saved.shape == (11, 2 * (17 + 9))
    with_saved = torch.ops.ebmfast.mlp_energy_grad_backward(x, w, b, 2, 0.01, saved, ge, gg)
    without = torch.ops.ebmfast.mlp_energy_grad_backward(x, w, b, 2, 0.01, x.new_empty(0), ge, gg)
    _close(with_saved[0], without[0], "grad_x")
    for i, (p, q) in enumerate(zip(with_saved[1] + with_saved[2], without[1] + without[2])):
        _close(p, q, f"param grad {i}")


@needs_cpu
@pytest.mark.parametrize("act", ACTS)
def test_float32_within_tolerance(act):
    """float32 kernel error vs the float64 reference <= 2x plain PyTorch float32's error + atol."""
    mod64 = _module(10, (64, 127), act)
    mod32 = _module(10, (64, 127), act, dtype=torch.float32)
    mod32.load_state_dict({k: v.float() for k, v in mod64.state_dict().items()})
    x64 = torch.randn(37, 10, dtype=torch.float64)
    ge, gg = torch.randn(37, dtype=torch.float64), torch.randn(37, 10, dtype=torch.float64)

    def run(fused, mod, x):
        xr = x.clone().requires_grad_(True)
        if fused:
            e, g = mod.energy_and_grad(xr, backend="cpu")
        else:
            e = mod(xr)
            (g,) = torch.autograd.grad(e.sum(), xr, create_graph=True)
        vjp = torch.autograd.grad((e * ge.to(x.dtype)).sum() + (g * gg.to(x.dtype)).sum(), [xr] + list(mod.parameters()),
                                  allow_unused=True, materialize_grads=True)
        return {"energy": [e], "grad": [g], "vjp": list(vjp)}

    ref = run(False, mod64, x64)
    torch32 = run(False, mod32, x64.float())
    fused32 = run(True, mod32, x64.float())
    for key in ref:
        for i, (r, t, f) in enumerate(zip(ref[key], torch32[key], fused32[key])):
            err_t = (t.double() - r).abs().max().item()
            err_f = (f.double() - r).abs().max().item()
            assert err_f <= 2 * err_t + F32_ATOL[key] * (1 + r.abs().max().item()), \
                f"{act} {key}[{i}]: fused float32 error {err_f:.3g} vs PyTorch float32 {err_t:.3g}"


def _isa_probe():
    """Outputs of every fused CPU path on fixed inputs (run in this process and under the generic build)."""
    import ebmfast as ebf
    from ebmfast.energies import MLPEnergy as M

    torch.manual_seed(0)
    out = []
    for act in ["relu", "leaky_relu", "silu", "softplus", "elu", "tanh", "gelu"]:
        m = M(5, (19, 33), activation=act)
        x = torch.randn(23, 5)
        e, g = m.energy_and_grad(x, backend="cpu")
        r = ebf.sample(m, x, 7, 0.01, 0.1, seed=3)
        p = ebf.ops.grad_norm_penalty(m, x, 1.0, backend="cpu")
        gp = torch.autograd.grad(p, list(m.parameters()))
        out.append(torch.cat([e, g.flatten(), r.flatten()] + [t.flatten() for t in gp]))
    return torch.stack(out).detach()


@needs_cpu
@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_isa_builds_agree(tmp_path, isa):
    """The baseline and AVX2 builds of the kernels (EBMFAST_MLP_ISA caps the build picked at run
    time) give the answers of the best build this CPU runs (AVX-512 where it has it)."""
    path = tmp_path / f"{isa}.pt"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import sys, torch; sys.path.insert(0, sys.argv[2]); from tests.ops.test_mlp_energy import _isa_probe; "
            "torch.save(_isa_probe(), sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(path), root], check=True, cwd=root,
                   env=dict(os.environ, EBMFAST_MLP_ISA=isa))
    torch.testing.assert_close(torch.load(path), _isa_probe(), atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- registration
@needs_cpu
def test_opcheck():
    mod = _module(3, (6, 5), "silu")
    w, b = (list(t.detach() for t in ts) for ts in mod.fused_params())
    x = torch.randn(7, 3, dtype=torch.float64)
    # the backend ops are plain kernels (schema, fake, dispatch); their one autograd registration is
    # MLPEnergyGradFn behind mlp_energy_grad, which the gradcheck tests below differentiate
    torch.library.opcheck(torch.ops.ebmfast.mlp_energy_grad.default, (x, w, b, 2, 0.01, True))
    torch.library.opcheck(torch.ops.ebmfast.mlp_energy_grad.default, (x, w, b, 2, 0.01, False))
    _, _, saved = torch.ops.ebmfast.mlp_energy_grad(x, w, b, 2, 0.01, True)
    torch.library.opcheck(torch.ops.ebmfast.mlp_energy_grad_backward.default,
                          (x, w, b, 2, 0.01, saved, torch.randn(7, dtype=torch.float64), torch.randn_like(x)))
    torch.library.opcheck(torch.ops.ebmfast.mlp_langevin_chain.default,
                          (x, w, b, 2, 0.01, 4, 0.05, 0.1, 0.0, 11, -3.0, 3.0, 2, 1.0, 2, True, True, True))


@needs_cpu
def test_gradcheck_and_gradgradcheck_op():
    mod = _module(2, (4, 3), "gelu")
    w, b = (list(t.detach().clone().requires_grad_(True) for t in ts) for ts in mod.fused_params())
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    n_w = len(w)

    def f(x, *params):
        e, g = mlp_energy_grad(x, list(params[:n_w]), list(params[n_w:]), "gelu", backend="cpu")
        return e, g

    torch.autograd.gradcheck(f, (x, *w, *b))
    torch.autograd.gradgradcheck(f, (x, *w, *b))


# --------------------------------------------------------------------------- op 2: chains
def _no_hook(mod):
    return lambda x: mod(x)  # hides fused_mlp: the sampler runs its step-by-step loop


CHAIN_SAMPLERS = [
    lambda: Langevin(0.01, clamp=(-2.0, 2.0), grad_clip=("norm", 1.0)),
    lambda: ReferenceLangevin(0.02, sigma=0.7, grad_clip=0.5),
    lambda: GradientDescent(0.05, clamp=(None, 1.5)),
    lambda: Sampler(0.01, 0.1),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", CHAIN_SAMPLERS, ids=["langevin", "reference", "descent", "plain"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chain_equals_step_by_step_sampler(backend, make, dtype):
    sampler = make()
    sampler.backend = backend
    mod = _module(3, (17, 9), "silu", dtype=dtype, scale=1.0)
    x0 = torch.randn(37, 3, dtype=dtype)
    fused = sampler.run(mod, x0, 25, seed=5, return_trajectory=True, every=4, return_energies=True)
    sampler.backend = "auto"
    loop = sampler.run(_no_hook(mod), x0, 25, seed=5, return_trajectory=True, every=4, return_energies=True)
    assert fused.trajectory.shape == (8, 37, 3) and fused.energies.shape == (8, 37)
    tol = dict(atol=1e-12, rtol=1e-12) if dtype == torch.float64 else dict(atol=2e-5, rtol=2e-5)
    for name in ("x", "trajectory", "energies"):
        torch.testing.assert_close(getattr(fused, name), getattr(loop, name), **tol,
                                   msg=lambda m: f"{backend}/{type(sampler).__name__}/{dtype} {name}: {m}")


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chain_noise_is_bitwise_the_langevin_step_stream(dtype):
    """A zero network has grad E = 0: the fused chain is then pure noise + clamp, and must equal
    ebmfast.ops.langevin_step applied step by step (same seed, offset = step) bit for bit."""
    mod = _module(3, (16,), "silu", dtype=dtype)
    with torch.no_grad():
        for p in mod.parameters():
            p.zero_()
    x0 = torch.randn(1001, 3, dtype=dtype)  # 3003 elements: groups of 4 straddle tile rows
    fused = ebmfast.sample(mod, x0, 3, 0.01, 0.7, clamp=(-2.5, 2.5), seed=123, backend="cpu")
    x = x0.clone()
    for k in range(3):
        x = ebmfast.ops.langevin_step(x, torch.zeros_like(x), 0.01, 0.7, clamp=(-2.5, 2.5), seed=123, offset=k,
                                      backend="cpu")
    assert torch.equal(fused, x), f"{(fused != x).sum().item()} of {x.numel()} elements differ"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act,shape", [("relu", (1, (1,), 5)), ("tanh", (10, (127,), 33)),
                                       ("softplus", (64, (256, 3), 19)), ("elu", (2, (), 4)),
                                       ("leaky_relu", (2, (3, 64), 7)), ("gelu", (2, (64,), 13))])
def test_chain_shapes_and_activations_float64(backend, act, shape):
    d, hidden, b = shape
    mod = _module(d, hidden, act, scale=1.0)
    x0 = torch.randn(b, d, dtype=torch.float64)
    fused = ebmfast.sample(mod, x0, 9, 0.01, 0.05, seed=2, backend=backend, return_trajectory=True, every=3)
    loop = ebmfast.sample(_no_hook(mod), x0, 9, 0.01, 0.05, seed=2, return_trajectory=True, every=3)
    torch.testing.assert_close(fused.trajectory, loop.trajectory, atol=1e-11, rtol=1e-11)


def test_chain_zero_steps_and_plain_tensor_return():
    mod = _module(2, (8,), "silu")
    x0 = torch.randn(5, 2, dtype=torch.float64)
    r = ebmfast.sample(mod, x0, 0, 0.1, return_trajectory=True, return_energies=True)
    assert torch.equal(r.x, x0) and r.trajectory.shape == (1, 5, 2)
    torch.testing.assert_close(r.energies[0], mod(x0).detach())
    x = mlp_langevin_chain(x0, *mod.fused_params(), "silu", n_steps=3, step_size=0.1, seed=0)
    assert isinstance(x, torch.Tensor) and x.shape == x0.shape and not x.requires_grad


@pytest.mark.parametrize("backend", BACKENDS)
def test_chain_nonfinite_raise_stop_ignore_like_the_loop(backend):
    """ReferenceLangevin with step/sigma^2 >> 2 blows some particles up to inf: the fused chain
    must report the same step, and 'stop' must return the same last finite state."""
    mod = _module(2, (8,), "tanh", dtype=torch.float32, scale=1.0)
    x0 = torch.randn(20, 2)
    x0[13] *= 1e6  # one particle diverges first
    make = lambda mode: ReferenceLangevin(3.0, sigma=0.1, noise_scale=0.0, on_nonfinite=mode, backend=backend)  # noqa
    with pytest.raises(NonFiniteError) as fused_err:
        make("raise").run(mod, x0, 30, seed=0)
    with pytest.raises(NonFiniteError) as loop_err:
        make("raise").run(_no_hook(mod), x0, 30, seed=0)
    assert fused_err.value.step == loop_err.value.step > 0
    assert f"step {loop_err.value.step}" in str(fused_err.value)
    with pytest.warns(RuntimeWarning):
        fused = make("stop").run(mod, x0, 30, seed=0, return_trajectory=True, return_energies=True)
    with pytest.warns(RuntimeWarning):
        loop = make("stop").run(_no_hook(mod), x0, 30, seed=0, return_trajectory=True, return_energies=True)
    assert fused.stopped_at == loop.stopped_at == loop_err.value.step
    torch.testing.assert_close(fused.x, loop.x, equal_nan=True)
    torch.testing.assert_close(fused.trajectory, loop.trajectory, equal_nan=True)
    x = make("ignore").run(mod, x0, 30, seed=0)
    assert not torch.isfinite(x).all()


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs_are_refused_clearly():
    mod = _module(3, (4,), "silu")
    w, b = (list(t.detach() for t in ts) for ts in mod.fused_params())
    x = torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="in-features must equal the input dim of x"):
        mlp_energy_grad(torch.randn(5, 2, dtype=torch.float64), w, b, "silu")
    with pytest.raises(ValueError, match=r"activation must be one of \['elu', 'gelu'"):
        mlp_energy_grad(x, w, b, "mish")
    with pytest.raises(TypeError, match=r"weights\[1\] has dtype torch.float32"):
        mlp_energy_grad(x, [w[0], w[1].float()], b, "silu")
    with pytest.raises(ValueError, match=r"biases must be empty or one per weight"):
        mlp_energy_grad(x, w, b[:1], "silu")
    with pytest.raises(ValueError, match=r"last weight must have shape \[1, w\]"):
        mlp_energy_grad(x, [w[0], torch.randn(2, 4, dtype=torch.float64)], [], "silu")
    with pytest.raises(ValueError, match="shape \\[B, D\\]"):
        mlp_energy_grad(x[0], w, b, "silu")
    # non-contiguous weights are made contiguous (same answer)
    w_nc = [w[0].t().contiguous().t(), w[1]]
    assert not w_nc[0].is_contiguous()
    _close(mlp_energy_grad(x, w_nc, b, "silu", backend="ref")[1], mlp_energy_grad_ref(x, w, b, 2)[1], "non-contig")
    if HAVE_CPU:
        _close(mlp_energy_grad(x, w_nc, b, "silu", backend="cpu")[1], mlp_energy_grad_ref(x, w, b, 2)[1], "nc cpu")
        # the raw op refuses what it cannot take, naming the argument
        with pytest.raises(RuntimeError, match=r"weights\[0\] must be contiguous"):
            torch.ops.ebmfast.mlp_energy_grad(x, w_nc, b, 2, 0.01, False)
        with pytest.raises(RuntimeError, match="act must be an activation code"):
            torch.ops.ebmfast.mlp_energy_grad(x, w, b, 9, 0.01, False)
        with pytest.raises(RuntimeError, match=r"weights\[1\] dtype Float != x dtype Double"):
            torch.ops.ebmfast.mlp_energy_grad(x, [w[0], w[1].float()], b, 2, 0.01, False)
        with pytest.raises(RuntimeError, match="float32 or float64"):
            torch.ops.ebmfast.mlp_energy_grad(x.half(), [t.half() for t in w], [t.half() for t in b], 2, 0.01, False)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        mlp_langevin_chain(x, w, b, "silu", n_steps=3, step_size=0.0)
    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        mlp_langevin_chain(x, w, b, "silu", n_steps=3, step_size=0.1, on_nonfinite="skip")


def test_half_precision_computes_in_float32():
    mod = _module(3, (8,), "silu", dtype=torch.float32)
    w, b = (list(t.detach() for t in ts) for ts in mod.fused_params())
    x = torch.randn(6, 3)
    e16, g16 = mlp_energy_grad(x.bfloat16(), [t.bfloat16() for t in w], [t.bfloat16() for t in b], "silu")
    e, g = mlp_energy_grad_ref(x.bfloat16().float(), [t.bfloat16().float() for t in w],
                               [t.bfloat16().float() for t in b], 2)
    assert e16.dtype == torch.bfloat16
    torch.testing.assert_close(e16.float(), e, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(g16.float(), g, atol=2e-2, rtol=2e-2)

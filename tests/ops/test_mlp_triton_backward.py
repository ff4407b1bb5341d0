"""Triton kernel of the analytic double backward of the fused MLP energy
(ebmfast/ops/_triton/mlp_backward.py), run by the CPU interpreter (TRITON_INTERPRET=1, set in
tests/conftest.py) against mlp_energy_grad_backward_ref (autograd through the layer-by-layer
reference, float64).

The interpreter pays per program, so grids are small: one program of up to 256 particles, or a
forced BLOCK_B=16 where program boundaries and the partial-sum reduction are the point (B is
never a multiple of the tile). Covered: every activation code, input dims 1 / 2 / 10 / 19, widths
1 / 3 / 64 / 127 / 128 and mixed, 1..6 hidden layers, biases or none, grad_e zero / nonzero and
grad_g zero, kept tiles in registers or in the scratch buffer, fewer programs than row blocks
(several launches that cap the partial-sum buffer), float32 against the float64 reference
(tests/ebmfast_testing.py TOLERANCES), the registered triton_op (schema, fake kernel), and the
gradient-norm penalty and a gradient penalty with EBMFAST_BACKEND=triton against autograd
double backward. The GPU code generation is checked ahead of time for sm_90
(tests/ops/test_mlp_triton_aot.py; no GPU needed).
"""

import pytest
import torch

from ebmfast.energies import MLPEnergy
from ebmfast.ops import _dispatch, grad_norm_penalty
from ebmfast.ops.grad_norm_penalty import penalty_from_grad
from ebmfast.ops.mlp_activations import CODE_NAMES
from ebmfast.ops.mlp_energy import mlp_energy_grad_backward_ref
from ebmfast_testing import TOLERANCES, random_net as _net

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(not (_dispatch.triton_status()[0] and _dispatch.triton_interpret()),
                       reason="needs triton with TRITON_INTERPRET=1 (tests/conftest.py sets it before triton "
                              "is imported)"),
]

SLOPE = 0.07


def _launch(*args, **kw):
    from ebmfast.ops._triton.mlp_launch import energy_grad_backward_launch

    return energy_grad_backward_launch(*args, **kw)


def _inputs(b, d, zero_ge=False, zero_gg=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(b, d, generator=g, dtype=torch.float64)
    ge = torch.zeros(b, dtype=torch.float64) if zero_ge else torch.randn(b, generator=g, dtype=torch.float64)
    gg = torch.zeros(b, d, dtype=torch.float64) if zero_gg else torch.randn(b, d, generator=g, dtype=torch.float64)
    return x, ge, gg


def _compare(got, want, where, dtype=torch.float64, scale=1.0):
    """got/want: (grad_x, [grad_W], [grad_b]); returns the largest |error| / (atol + rtol |ref|)."""
    atol, rtol = TOLERANCES[dtype]
    gx, gw, gb = got
    rx, rw, rb = want
    assert len(gw) == len(rw) and len(gb) == len(rb), f"{where}: {len(gw)}/{len(gb)} vs {len(rw)}/{len(rb)} grads"
    names = ["x"] + [f"W{i + 1}" for i in range(len(rw))] + [f"b{i + 1}" for i in range(len(rb))]
    worst = 0.0
    for name, a, r in zip(names, [gx] + list(gw) + list(gb), [rx] + list(rw) + list(rb)):
        assert a.shape == r.shape and a.dtype == dtype, f"{where} d/d{name}: {a.shape} {a.dtype} vs {r.shape}"
        torch.testing.assert_close(a.to(r.dtype), r, atol=atol * scale, rtol=rtol * scale,
                                   msg=lambda m: f"{where} d/d{name}: {m}")
        worst = max(worst, float(((a.to(r.dtype) - r).abs() / (atol + rtol * r.abs())).max()))
    return worst


# (D, hidden, B, BLOCK_B or None = one program, biases, grad_e zero): widths 1 / 3 / 64 / 127 / 128,
# D = 1 / 2 / 10 (DQ = 16: layer 1 zero-extended) and 19 (DP = 32), 1..6 hidden layers
CASES = [
    (1, (1,), 37, 16, True, False),
    (2, (3, 64), 21, None, False, True),
    (10, (64, 3, 1), 50, 16, True, False),
    (2, (7, 9, 5, 16, 3, 11), 19, None, True, False),
    (10, (127,), 33, None, False, False),
    (19, (128, 20), 17, 16, True, True),
]


@pytest.mark.parametrize("act", sorted(CODE_NAMES))
def test_every_activation_and_shape_float64(act):
    for i, (d, hidden, b, bb, bias, zero_ge) in enumerate(CASES):
        ws, bs = _net(d, hidden, bias=bias, seed=act * 10 + i)
        x, ge, gg = _inputs(b, d, zero_ge=zero_ge, seed=i)
        got = _launch(x, ws, bs, act, SLOPE, x.new_empty(0), ge, gg, block_b=bb)
        want = mlp_energy_grad_backward_ref(x, ws, bs, act, SLOPE, ge, gg)
        _compare(got, want, f"{CODE_NAMES[act]} D={d} hidden={hidden} B={b}")


@pytest.mark.parametrize("scratch", [False, True], ids=["registers", "scratch"])
def test_energy_cotangent_only_and_scratch(scratch):
    """grad_g = 0 is the first-order backward (d(sum gE E)/d params); the kept tiles in scratch give
    the same result as in registers."""
    ws, bs = _net(3, (20, 33, 16))
    for zero_ge, zero_gg in ((False, True), (True, False), (True, True)):
        x, ge, gg = _inputs(45, 3, zero_ge=zero_ge, zero_gg=zero_gg)
        got = _launch(x, ws, bs, 2, SLOPE, x.new_empty(0), ge, gg, block_b=16, scratch=scratch)
        want = mlp_energy_grad_backward_ref(x, ws, bs, 2, SLOPE, ge, gg)
        _compare(got, want, f"silu grad_e zero={zero_ge} grad_g zero={zero_gg} scratch={scratch}")
        if zero_ge and zero_gg:
            assert all(float(t.abs().max()) == 0.0 for t in [got[0]] + got[1] + got[2])


@pytest.mark.parametrize("act", sorted(CODE_NAMES))
def test_float32_against_the_float64_reference(act):
    for d, hidden, b, bb in ((2, (64, 64), 40, 16), (10, (7, 9, 5, 16, 3, 11), 23, None), (1, (128,), 9, None)):
        ws, bs = _net(d, hidden, bias=act != 1, seed=act)
        x, ge, gg = _inputs(b, d)
        want = mlp_energy_grad_backward_ref(x, ws, bs, act, SLOPE, ge, gg)
        f = lambda t: t.float()  # noqa: E731
        got = _launch(f(x), list(map(f, ws)), list(map(f, bs)), act, SLOPE, x.new_empty(0, dtype=torch.float32),
                      f(ge), f(gg), block_b=bb)
        _compare(got, want, f"float32 {CODE_NAMES[act]} D={d} hidden={hidden}", dtype=torch.float32)


def test_empty_batch_and_bad_block():
    ws, bs = _net(2, (5,))
    x, ge, gg = _inputs(0, 2)
    gx, gw, gb = _launch(x, ws, bs, 2, SLOPE, x.new_empty(0), ge, gg)
    assert gx.shape == (0, 2) and [t.shape for t in gw] == [w.shape for w in ws] and len(gb) == 2
    assert all(float(t.abs().sum()) == 0.0 for t in gw + gb)
    x, ge, gg = _inputs(3, 2)
    with pytest.raises(ValueError, match="block_b"):
        _launch(x, ws, bs, 2, SLOPE, x.new_empty(0), ge, gg, block_b=8)
    with pytest.raises(ValueError, match="grad_e"):
        _launch(x, ws, bs, 2, SLOPE, x.new_empty(0), ge[:2], gg)


def test_more_row_blocks_than_programs():
    """The launcher caps the programs per launch (the partial-sum buffer has one row each) and
    covers the batch in several launches: 1, 2 and 3 programs over 5 blocks of 16 rows (the last
    one 3 rows), in registers and with the scratch, give the one-launch result."""
    ws, bs = _net(3, (20, 33, 16), seed=3)
    x, ge, gg = _inputs(67, 3, seed=4)
    want = mlp_energy_grad_backward_ref(x, ws, bs, 6, SLOPE, ge, gg)
    for programs in (1, 2, 3):
        for scratch in (False, True):
            got = _launch(x, ws, bs, 6, SLOPE, x.new_empty(0), ge, gg, block_b=16, max_programs=programs,
                          scratch=scratch)
            _compare(got, want, f"{programs} programs over 5 blocks, scratch={scratch}")
    with pytest.raises(ValueError, match="max_programs must be >= 1"):
        _launch(x, ws, bs, 6, SLOPE, x.new_empty(0), ge, gg, max_programs=0)


def test_registered_triton_op_and_opcheck():
    from ebmfast.ops._triton.mlp_launch import triton_ops

    ws, bs = _net(2, (16, 5))
    x, ge, gg = _inputs(11, 2)
    op = triton_ops().energy_grad_backward
    got = op(x, ws, bs, 5, SLOPE, x.new_empty(0), ge, gg)
    _compare(got, mlp_energy_grad_backward_ref(x, ws, bs, 5, SLOPE, ge, gg), "triton_op tanh")
    torch.library.opcheck(op, (x, ws, bs, 5, SLOPE, x.new_empty(0), ge, gg),
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(op, (x, ws, [], 5, SLOPE, x.new_empty(0), ge, gg),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.fixture
def triton_backward(monkeypatch):
    """EBMFAST_BACKEND=triton (CPU tensors run the Triton kernels under the interpreter), and
    counts the launches of the Triton backward. With Triton requested, grad_norm_penalty composes
    mlp_energy_grad with the penalty (the CPU penalty node is not used), as it does on GPUs."""
    from ebmfast.ops._triton import mlp_launch

    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    calls = []
    launch = mlp_launch.energy_grad_backward_launch

    def counted(x, *args, **kw):
        calls.append(x.shape)
        return launch(x, *args, **kw)

    monkeypatch.setattr(mlp_launch, "energy_grad_backward_launch", counted)
    return calls


@pytest.mark.parametrize("act,lipschitz,reduction", [("silu", 1.0, "mean"), ("gelu", None, "sum"),
                                                     ("elu", 0.5, "none")])
def test_grad_norm_penalty_through_the_triton_backward(triton_backward, act, lipschitz, reduction):
    """The penalty composed from mlp_energy_grad (Triton forward and backward), the GPU route,
    against autograd double backward of the plain module: gradients w.r.t. x and every
    parameter, with an energy term (nonzero grad_e) in the loss."""
    mod = MLPEnergy(2, (64, 3), activation=act).double()
    with torch.no_grad():
        for p in mod.parameters():
            p.mul_(1.5)
    params = list(mod.parameters())
    x = torch.randn(29, 2, dtype=torch.float64)
    w = torch.randn(29, dtype=torch.float64) if reduction == "none" else torch.tensor(1.0, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    pen, e = grad_norm_penalty(mod, xr, lipschitz=lipschitz, reduction=reduction, return_energy=True)
    got = torch.autograd.grad((pen * w).sum() + 0.3 * e.mean(), [xr] + params)
    assert len(triton_backward) == 1, "the penalty's backward did not run the triton kernel"
    x2 = x.clone().requires_grad_(True)
    e2 = mod(x2)
    (g2,) = torch.autograd.grad(e2.sum(), x2, create_graph=True)
    want = torch.autograd.grad((penalty_from_grad(g2, lipschitz, reduction) * w).sum() + 0.3 * e2.mean(),
                               [x2] + params)
    for name, a, b in zip(["x"] + [n for n, _ in mod.named_parameters()], got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=lambda m: f"{act} d/d{name}: {m}")


def test_gradient_penalty_through_triton_forward_and_backward(triton_backward):
    """mlp_energy_grad(backend="triton") (the triton forward op, whose autograd is the fused VJP)
    with a WGAN-GP style loss; float32 parameters against float64 autograd."""
    mod = MLPEnergy(10, (32, 32), activation="softplus").double()
    x = torch.randn(37, 10, dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        m = MLPEnergy(10, (32, 32), activation="softplus").to(dtype)
        m.load_state_dict(mod.state_dict())
        xr = x.to(dtype).requires_grad_(True)
        e, g = m.energy_and_grad(xr)  # EBMFAST_BACKEND=triton
        loss = ((g.norm(dim=1) - 1.0) ** 2).mean() + 0.3 * e.mean()
        got = torch.autograd.grad(loss, [xr] + list(m.parameters()))
        x2 = x.clone().requires_grad_(True)
        e2 = mod(x2)
        (g2,) = torch.autograd.grad(e2.sum(), x2, create_graph=True)
        want = torch.autograd.grad(((g2.norm(dim=1) - 1.0) ** 2).mean() + 0.3 * e2.mean(),
                                   [x2] + list(mod.parameters()))
        atol, rtol = TOLERANCES[dtype]
        for name, a, b in zip(["x"] + [n for n, _ in mod.named_parameters()], got, want):
            torch.testing.assert_close(a.double(), b, atol=atol * 10, rtol=rtol * 10,
                                       msg=lambda m: f"{dtype} d/d{name}: {m}")
    assert len(triton_backward) == 2


def test_backward_support_reasons():
    """float64 at width 128 is declined on GPUs only (it compiles to 16-29 KB of spills per thread);
    everything not_supported_reasons refuses is refused too."""
    from types import SimpleNamespace

    from ebmfast.ops._triton.mlp_config import backward_not_supported_reasons

    def fake_x(d, device, dtype):  # only what the checks read; no GPU needed
        return SimpleNamespace(dim=lambda: 2, shape=(5, d), device=torch.device(device), dtype=dtype)

    ws, _ = _net(2, (128, 64))
    assert backward_not_supported_reasons(fake_x(2, "cpu", torch.float64), ws, 2) == []
    assert backward_not_supported_reasons(fake_x(2, "cuda", torch.float32), ws, 2) == []
    why = backward_not_supported_reasons(fake_x(2, "cuda", torch.float64), ws, 2)
    assert len(why) == 1 and "float64 only with hidden widths <= 64" in why[0]
    assert backward_not_supported_reasons(fake_x(2, "cuda", torch.float64), _net(2, (64, 64))[0], 2) == []
    assert any("hidden layers" in r for r in backward_not_supported_reasons(fake_x(2, "cpu", torch.float64),
                                                                            _net(2, (4,) * 7)[0], 2))

"""Gradient-norm penalty: fused analytic double backward vs autograd create_graph."""
import importlib

import pytest
import torch
from torch import nn

from ebmfast import _ext
from ebmfast.energies import MLPEnergy
from ebmfast.ops import grad_norm_penalty, mlp_energy_grad
from ebmfast.ops.grad_norm_penalty import penalty_from_grad
from ebmfast.ops.mlp_activations import CODE_NAMES

HAVE_CPU = _ext.available() and hasattr(torch.ops.ebmfast, "mlp_energy_grad")
BACKENDS = ["ref"] + (["cpu"] if HAVE_CPU else [])
ACTS = list(CODE_NAMES.values())


def _module(in_dim, hidden, act, dtype=torch.float64, **kw):
    m = MLPEnergy(in_dim, hidden, activation=act, **kw).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    return m


def grad_norm_penalty_ref(energy, x, lipschitz=None, reduction="mean"):
    """The penalty by autograd with create_graph=True, written out here independently of the op."""
    x = x.detach().requires_grad_(True)
    e = energy(x)
    e = e.squeeze(1) if e.dim() == 2 and e.shape[1] == 1 else e
    (g,) = torch.autograd.grad(e.sum(), x, create_graph=True)
    sq = g.flatten(1).pow(2).sum(1)
    per = sq if lipschitz is None else (torch.sqrt(sq + 1e-12) - lipschitz).pow(2)
    return {"mean": per.mean, "sum": per.sum, "none": lambda: per}[reduction]()


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("lipschitz,reduction", [(None, "mean"), (1.0, "mean"), (0.5, "sum"), (1.0, "none")])
def test_penalty_and_gradients_match_autograd_float64(backend, act, lipschitz, reduction):
    d, hidden = (2, (64, 3)) if act in ("silu", "softplus") else (10, (127,))
    mod = _module(d, hidden, act)
    x = torch.randn(29, d, dtype=torch.float64)
    params = list(mod.parameters())
    xr = x.clone().requires_grad_(True)
    want = grad_norm_penalty_ref(mod, xr, lipschitz=lipschitz, reduction=reduction)
    got = grad_norm_penalty(mod, xr, lipschitz=lipschitz, reduction=reduction, backend=backend)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    w = torch.randn_like(want) if reduction == "none" else torch.tensor(1.0, dtype=torch.float64)
    # grad w.r.t. x: the reference detaches x, so differentiate its autograd version directly
    x2 = x.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(mod(x2).sum(), x2, create_graph=True)
    want_full = penalty_from_grad(g2, lipschitz, reduction)
    for name, a, b in zip(["x"] + [n for n, _ in mod.named_parameters()], _grads((got * w).sum(), [xr] + params),
                          _grads((want_full * w).sum(), [x2] + params)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=lambda m: f"{backend}/{act} d/d{name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_and_gradgradcheck_penalty(backend):
    mod = _module(3, (5, 4), "silu")
    weights, biases = mod.fused_params()
    params = [t.detach().clone().requires_grad_(True) for t in weights + biases]
    n_w = len(weights)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        _, g = mlp_energy_grad(x, list(ps[:n_w]), list(ps[n_w:]), "silu", backend=backend)
        return penalty_from_grad(g, 0.7)

    torch.autograd.gradcheck(f, (x, *params))
    torch.autograd.gradgradcheck(f, (x, *params))


@pytest.mark.parametrize("backend", BACKENDS)
def test_composes_with_an_outer_loss(backend):
    """OT-EBM / w-GCN style theta loss: E(data) - E(samples) + lambda * penalty (with the energies
    of the penalty's own fused call), gradients equal to the all-autograd version."""
    mod = _module(2, (32, 32), "softplus", spectral_norm=False)
    data, samples = torch.randn(40, 2, dtype=torch.float64), torch.randn(40, 2, dtype=torch.float64)
    params = list(mod.parameters())
    pen, e_s = grad_norm_penalty(mod, samples, lipschitz=1.0, backend=backend, return_energy=True)
    loss = mod(data).mean() - e_s.mean() + 3.0 * pen
    ref = mod(data).mean() - mod(samples).mean() + 3.0 * grad_norm_penalty_ref(mod, samples, lipschitz=1.0)
    torch.testing.assert_close(loss, ref, atol=1e-12, rtol=1e-12)
    for a, b in zip(_grads(loss, params), _grads(ref, params)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spectral_norm_energy(backend):
    mod = _module(4, (16, 16), "elu", spectral_norm=True).eval()  # eval: no power-iteration update per access
    x = torch.randn(12, 4, dtype=torch.float64)
    params = list(mod.parameters())
    got = grad_norm_penalty(mod, x, lipschitz=1.0, backend=backend)
    want = grad_norm_penalty_ref(mod, x, lipschitz=1.0)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    for a, b in zip(_grads(got, params), _grads(want, params)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


def test_any_other_energy_uses_autograd():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(9, 3, dtype=torch.float64)
    got = grad_norm_penalty(net, x, lipschitz=2.0)  # [B, 1] output accepted
    want = grad_norm_penalty_ref(net, x, lipschitz=2.0)
    torch.testing.assert_close(got, want)
    for a, b in zip(_grads(got, list(net.parameters())), _grads(want, list(net.parameters()))):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(not HAVE_CPU, reason="extension with MLP ops not built")
def test_float32_penalty_gradients():
    mod64 = _module(2, (128, 128), "silu")
    mod32 = MLPEnergy(2, (128, 128), activation="silu")
    mod32.load_state_dict({k: v.float() for k, v in mod64.state_dict().items()})
    x = torch.randn(100, 2, dtype=torch.float64)
    want = _grads(grad_norm_penalty_ref(mod64, x, 1.0), list(mod64.parameters()))
    torch32 = _grads(grad_norm_penalty_ref(mod32, x.float(), 1.0), list(mod32.parameters()))
    fused = _grads(grad_norm_penalty(mod32, x.float(), 1.0, backend="cpu"), list(mod32.parameters()))
    for i, (w, t, f) in enumerate(zip(want, torch32, fused)):
        err_t = (t.double() - w).abs().max().item()
        err_f = (f.double() - w).abs().max().item()
        assert err_f <= 2 * err_t + 1e-5 * (1 + w.abs().max().item()), f"param {i}: {err_f:.3g} vs torch {err_t:.3g}"


def test_bad_arguments():
    mod = _module(2, (8,), "tanh")
    x = torch.randn(7, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="lipschitz must be a number > 0"):
        grad_norm_penalty(mod, x, lipschitz=-1.0)
    with pytest.raises(ValueError, match="reduction must be"):
        grad_norm_penalty(mod, x, reduction="max")
    with pytest.raises(ValueError, match="at least 2 dims"):
        grad_norm_penalty(mod, x[0])
    with pytest.raises(ValueError, match=r"expected 2\)"):
        grad_norm_penalty(mod, torch.randn(7, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        grad_norm_penalty(mod, x.float())


HAVE_PENALTY_OPS = HAVE_CPU and hasattr(torch.ops.ebmfast, "mlp_grad_norm_penalty")


@pytest.mark.skipif(not HAVE_PENALTY_OPS, reason="extension with the CPU penalty ops not built")
@pytest.mark.parametrize("act", ["silu", "softplus", "gelu"])
@pytest.mark.parametrize("lipschitz,reduction", [(-1.0, 1), (1.0, 1), (0.5, 2), (1.0, 0)])
def test_penalty_ops_match_their_references_float64(act, lipschitz, reduction):
    """ebmfast::mlp_grad_norm_penalty(_backward) on the CPU vs the PyTorch references, random
    weights, a batch that is not a multiple of the tile, with either cotangent None."""
    from ebmfast.ops.mlp_activations import ACTIVATIONS

    gnp = importlib.import_module("ebmfast.ops.grad_norm_penalty")

    mod = _module(3, (37, 5), act)
    weights, biases = (list(t.detach() for t in ts) for ts in mod.fused_params())
    code = ACTIVATIONS[act]
    x = torch.randn(53, 3, dtype=torch.float64)
    got = torch.ops.ebmfast.mlp_grad_norm_penalty(x, weights, biases, code, 0.01, lipschitz, reduction)
    want = gnp.mlp_grad_norm_penalty_ref(x, weights, biases, code, 0.01, lipschitz, reduction)
    for a, b in zip(got[:3], want[:3]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    gp = torch.randn(53, dtype=torch.float64) if reduction == 0 else torch.tensor(0.7, dtype=torch.float64)
    ge = torch.randn(53, dtype=torch.float64)
    for gp_i, ge_i in ((gp, ge), (gp, None), (None, ge)):
        out = torch.ops.ebmfast.mlp_grad_norm_penalty_backward(x, weights, biases, code, 0.01, got[3], got[2], gp_i,
                                                               ge_i, lipschitz, reduction)
        ref = gnp.mlp_grad_norm_penalty_backward_ref(x, weights, biases, code, 0.01, gp_i, ge_i, lipschitz, reduction)
        for a, b in zip([out[0], *out[1], *out[2]], [ref[0], *ref[1], *ref[2]]):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


@pytest.mark.skipif(not HAVE_PENALTY_OPS, reason="extension with the CPU penalty ops not built")
def test_penalty_ops_opcheck_and_bad_input():
    mod = _module(2, (6, 4), "silu")
    weights, biases = (list(t.detach() for t in ts) for ts in mod.fused_params())
    x = torch.randn(9, 2, dtype=torch.float64)
    pen, e, g, saved = torch.ops.ebmfast.mlp_grad_norm_penalty(x, weights, biases, 2, 0.01, 1.0, 1)
    torch.library.opcheck(torch.ops.ebmfast.mlp_grad_norm_penalty.default, (x, weights, biases, 2, 0.01, 1.0, 0),
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(torch.ops.ebmfast.mlp_grad_norm_penalty_backward.default,
                          (x, weights, biases, 2, 0.01, saved, g, torch.tensor(1.0, dtype=torch.float64), e, 1.0, 1),
                          test_utils=("test_schema", "test_faketensor"))
    with pytest.raises(RuntimeError, match="reduction must be 0"):
        torch.ops.ebmfast.mlp_grad_norm_penalty(x, weights, biases, 2, 0.01, 1.0, 3)
    with pytest.raises(RuntimeError, match="grad_penalty must be a 0-dim"):
        torch.ops.ebmfast.mlp_grad_norm_penalty_backward(x, weights, biases, 2, 0.01, saved, g,
                                                         torch.ones(9, dtype=torch.float64), None, 1.0, 1)
    with pytest.raises(RuntimeError, match="grad must be the contiguous"):
        torch.ops.ebmfast.mlp_grad_norm_penalty_backward(x, weights, biases, 2, 0.01, saved, g[:5],
                                                         torch.tensor(1.0, dtype=torch.float64), None, 1.0, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_third_order_and_one_sided_cotangents(backend):
    """create_graph=True through the penalty node (its backward then differentiates the reference),
    and losses that use only the penalty or only the energy (the other cotangent is None)."""
    mod = _module(2, (7, 5), "silu")
    params = list(mod.parameters())
    x = torch.randn(9, 2, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(mod(x2).sum(), x2, create_graph=True)
    p_ref = penalty_from_grad(g2, 1.0)
    p, e = grad_norm_penalty(mod, x, lipschitz=1.0, backend=backend, return_energy=True)
    (gx,) = torch.autograd.grad(p, x, create_graph=True)
    (gx_ref,) = torch.autograd.grad(p_ref, x2, create_graph=True)
    torch.testing.assert_close(gx, gx_ref, atol=1e-10, rtol=1e-9)
    for a, b in zip(_grads(gx.pow(2).sum(), params), _grads(gx_ref.pow(2).sum(), params)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-8)
    p, e = grad_norm_penalty(mod, x.detach(), lipschitz=1.0, backend=backend, return_energy=True)
    for a, b in zip(_grads(e.sum(), params), _grads(mod(x.detach()).sum(), params)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)

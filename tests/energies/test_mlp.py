"""MLPEnergy: an ordinary nn.Module whose sampling and penalties run on the fused ops."""
import pytest
import torch
from torch import nn

import ebmfast
from ebmfast import _ext
from ebmfast.energies import MLPEnergy
from ebmfast.ops import _dispatch, grad_norm_penalty
from ebmfast.samplers import Langevin, SecondOrderLangevin

HAVE_CPU = _ext.available() and hasattr(torch.ops.ebmfast, "mlp_energy_grad")


def _loop_energy(mod):
    return lambda x: mod(x)  # no fused_mlp method: the sampler's step-by-step loop


def test_layers_activations_and_output_shape():
    m = MLPEnergy(3, (7, 5), activation="swish", negative_slope=0.2)
    assert m.activation == "silu" and isinstance(m.act, nn.SiLU)
    assert [tuple(layer.weight.shape) for layer in m.layers] == [(7, 3), (5, 7), (1, 5)]
    assert m(torch.randn(4, 3)).shape == (4,)
    assert m(torch.randn(4, 3, 1)).shape == (4,)  # [B, ...] flattened to in_dim features
    assert MLPEnergy(2, (), activation="relu")(torch.randn(3, 2)).shape == (3,)
    assert isinstance(MLPEnergy(2, (4,), activation="gelu").act, nn.GELU)
    assert MLPEnergy(2, (4,), activation="leaky_relu", negative_slope=0.3).act.negative_slope == 0.3
    assert all(layer.bias is None for layer in MLPEnergy(2, (4,), bias=False).layers)
    assert "spectral_norm=True" in repr(MLPEnergy(2, (4,), spectral_norm=True))


def test_forward_is_the_documented_formula():
    m = MLPEnergy(2, (6,), activation="elu").double()
    x = torch.randn(5, 2, dtype=torch.float64)
    w0, w1 = m.layers[0].weight, m.layers[1].weight
    want = (torch.nn.functional.elu(x @ w0.t() + m.layers[0].bias) @ w1.t()).squeeze(1) + m.layers[1].bias
    torch.testing.assert_close(m(x), want)


def test_bad_constructor_arguments_and_inputs():
    with pytest.raises(ValueError, match=r"activation must be one of \['elu', 'gelu', 'gelu_tanh', 'leaky_relu'"):
        MLPEnergy(2, activation="mish")
    with pytest.raises(ValueError, match="in_dim must be an int >= 1"):
        MLPEnergy(0)
    with pytest.raises(ValueError, match=r"hidden\[1\] must be an int >= 1"):
        MLPEnergy(2, (4, 0))
    m = MLPEnergy(2, (4,))
    with pytest.raises(ValueError, match=r"got x of shape \(5, 3\) \(3 features per sample, expected 2\)"):
        m(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"got x of shape \(5, 3\)"):
        m.energy_and_grad(torch.randn(5, 3))
    with pytest.raises(TypeError, match="dtype"):
        m.energy_and_grad(torch.randn(5, 2, dtype=torch.float64))


def test_sample_uses_the_fused_chain_automatically():
    m = MLPEnergy(2, (16, 16)).double()
    x0 = torch.randn(9, 2, dtype=torch.float64)
    _dispatch.LAST_CHOICE.pop(("mlp_langevin_chain", "cpu"), None)
    fused = ebmfast.sample(m, x0, 6, 0.01, 0.1, seed=4)
    assert _dispatch.LAST_CHOICE[("mlp_langevin_chain", "cpu")] == ("cpu" if HAVE_CPU else "ref")
    loop = ebmfast.sample(_loop_energy(m), x0, 6, 0.01, 0.1, seed=4)
    torch.testing.assert_close(fused, loop, atol=1e-12, rtol=1e-12)


def test_unsupported_chains_fall_back_to_the_loop():
    m = MLPEnergy(2, (8,)).double()
    x0 = torch.randn(5, 2, dtype=torch.float64)
    so = SecondOrderLangevin(0.01)
    assert so.fused_drift_sigma() == (False, None)  # its drift has a Hessian term the fused chain lacks
    assert so._try_fused(m, x0, 3, 0, False, False, 1, False, None) is None
    torch.testing.assert_close(so.run(m, x0, 3, seed=1), so.run(_loop_energy(m), x0, 3, seed=1))
    seen = []
    Langevin(0.01).run(m, x0, 3, seed=1, callback=lambda k, x, e: seen.append(k))
    assert seen == [0, 1, 2]


def test_create_graph_sampling_runs_autograd_and_reaches_the_parameters():
    m = MLPEnergy(2, (8,)).double()
    x0 = torch.randn(5, 2, dtype=torch.float64)
    x = ebmfast.sample(m, x0, 3, 0.05, create_graph=True, seed=0)
    (g,) = torch.autograd.grad(x.sum(), m.layers[0].weight)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    torch.testing.assert_close(x.detach(), ebmfast.sample(m, x0, 3, 0.05, seed=0))


def test_trains_with_any_optimizer_and_chains_see_new_weights():
    torch.manual_seed(1)
    m = MLPEnergy(2, (16, 16), activation="softplus").double()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    data = torch.randn(32, 2, dtype=torch.float64) * 0.5 + 1.0
    x0 = torch.randn(32, 2, dtype=torch.float64)
    before = ebmfast.sample(m, x0, 5, 0.05, seed=0)
    for _ in range(3):
        samples = ebmfast.sample(m, x0, 5, 0.05, 0.05, seed=0)
        loss = m(data).mean() - m(samples).mean() + 0.1 * grad_norm_penalty(m, samples, lipschitz=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = ebmfast.sample(m, x0, 5, 0.05, seed=0)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, ebmfast.sample(_loop_energy(m), x0, 5, 0.05, seed=0), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("training", [False, True])
def test_spectral_norm_chain_uses_normalised_weights(training):
    m = MLPEnergy(3, (12,), spectral_norm=True).double().train(training)
    x0 = torch.randn(7, 3, dtype=torch.float64)
    if training:
        with torch.no_grad():  # converge the power iteration so later accesses agree
            for _ in range(50):
                m(x0)
    fused = Langevin(0.02, noise_scale=0.0).run(m, x0, 4, seed=0)
    loop = Langevin(0.02, noise_scale=0.0).run(_loop_energy(m), x0, 4, seed=0)
    torch.testing.assert_close(fused, loop, atol=1e-9, rtol=1e-9)
    sigma = torch.linalg.matrix_norm(m.layers[0].weight.detach(), ord=2)
    torch.testing.assert_close(sigma, torch.tensor(1.0, dtype=torch.float64), atol=1e-6, rtol=0)


def test_sampler_checks_still_apply():
    m = MLPEnergy(2, (4,))
    with pytest.raises(TypeError, match="dtype"):
        ebmfast.sample(m, torch.randn(3, 2, dtype=torch.float64), 2, 0.1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        ebmfast.sample(m, torch.tensor([[float("nan"), 0.0]]), 2, 0.1)

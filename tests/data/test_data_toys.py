"""2-D toy data sets: shapes, scales, determinism, mixtures, registry errors."""
import itertools
import math

import pytest
import torch

import ebmfast.data as D


@pytest.mark.parametrize("name", sorted(D.DATASETS))
def test_shape_dtype_range_and_determinism(name):
    x = D.load_dataset(name, n=500, seed=3)
    assert x.shape == (500, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.abs().max() < 6.0  # every toy lives in about [-4.5, 4.5]^2
    assert x.abs().max() > 1.0  # and is not collapsed near 0
    assert torch.equal(x, D.load_dataset(name, n=500, seed=3))
    assert not torch.equal(x, D.load_dataset(name, n=500, seed=4))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(x, D.DATASETS[name](500, generator=g))


def test_unseeded_calls_follow_global_seed():
    torch.manual_seed(0)
    a = D.ring8(100)
    torch.manual_seed(0)
    b = D.ring8(100)
    assert torch.equal(a, b)


def test_mixture_centres():
    ring = D.get_mixture("ring8")
    assert torch.allclose(ring.means.norm(dim=1), torch.full((8,), 2.0), atol=1e-6)
    ang = torch.atan2(ring.means[:, 1], ring.means[:, 0]) % (2 * math.pi)
    assert torch.allclose(ang.sort().values, torch.arange(8) * (2 * math.pi / 8), atol=1e-5)
    g9 = {tuple(p) for p in D.get_mixture("grid9").means.round().int().tolist()}
    assert g9 == set(itertools.product([-2, 0, 2], repeat=2))
    g25 = {tuple(p) for p in D.get_mixture("grid25").means.round().int().tolist()}
    assert g25 == set(itertools.product([-4, -2, 0, 2, 4], repeat=2))
    for name in D.MIXTURES:
        assert D.get_mixture(name).std == pytest.approx(0.2)
    with pytest.raises(ValueError, match="grid9"):
        D.get_mixture("nope")


def test_mixture_samples_match_components():
    mix = D.get_mixture("grid9")
    x, lab = mix.sample_with_labels(9000, seed=0)
    for k in range(9):
        xk = x[lab == k]
        assert 800 < xk.shape[0] < 1200  # uniform weights
        assert torch.allclose(xk.mean(0), mix.means[k], atol=0.03)
        assert torch.allclose(xk.std(0), torch.full((2,), 0.2), atol=0.02)


def test_swissroll_moons_rings_scales():
    s = D.swissroll(4000, seed=0)
    assert -4.5 < s.min() < -2.5 and 3.5 < s.max() < 4.8
    m = D.moons(4000, seed=0)
    assert m[:, 0].abs().max() < 3.5 and m[:, 1].abs().max() < 2.0
    assert m.mean(0).abs().max() < 0.3  # centred
    r = D.rings(4000, seed=0).norm(dim=1)
    assert ((r - 3.0).abs() < 0.6).float().mean() == pytest.approx(0.5, abs=0.03)
    assert ((r - 1.5).abs() < 0.6).float().mean() == pytest.approx(0.5, abs=0.03)


def test_moons_iid_draws_the_same_law_and_an_unbiased_mmd_floor():
    """iid=True samples the law of make_moons (MMD^2_u to a big set centred on 0), while two
    evenly spaced make_moons sets give a systematically negative MMD^2_u (they are closer to each
    other than i.i.d. draws can be), so a "floor" from them measures that bias, not noise."""
    import itertools

    from ebmfast.evaluators import mmd

    big = D.moons(20000, seed=1)
    h = 0.5
    a, b = D.moons(500, iid=True, seed=2), D.moons(500, iid=True, seed=3)
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert not torch.equal(a, b)
    c1, c2 = itertools.count(100), itertools.count(200)
    iid = mmd.mmd_noise_floor(lambda k: D.moons(k, iid=True, seed=next(c1)), n=500, n_repeats=20, bandwidth=h)
    grid = mmd.mmd_noise_floor(lambda k: D.moons(k, seed=next(c2)), n=500, n_repeats=20, bandwidth=h)
    assert abs(iid["mean"]) < iid["floor"]  # centred: a noise floor
    assert grid["mean"] < -1.5 * iid["floor"]  # biased: not a noise floor
    vals = [mmd.mmd2(D.moons(500, iid=True, seed=300 + i), big[:4000], bandwidth=h) for i in range(5)]
    assert abs(sum(vals) / len(vals)) < 3 * iid["floor"] / len(vals) ** 0.5
    with pytest.raises(ValueError, match="iid"):
        D.moons(10, iid=1)


def test_checkerboard_occupies_half_the_squares():
    x = D.checkerboard(4000, seed=0)
    cells = torch.floor(x / 2).long() + 2  # 4x4 cells of side 2 on [-4, 4]
    parity = (cells[:, 0] + cells[:, 1]) % 2
    assert parity.unique().numel() == 1  # only one colour of the board is used
    assert torch.unique(cells, dim=0).shape[0] == 8


def test_pinwheel_has_five_arms():
    x = D.pinwheel(5000, seed=0)
    r = x.norm(dim=1)
    assert 1.0 < r.median() < 4.0
    # the angle histogram near the centre shows 5 peaks (arms start at 2*pi*k/5 + rate*e)
    ang = torch.atan2(x[:, 1], x[:, 0])[r < 2.5]
    hist = torch.histc(ang, bins=40, min=-math.pi, max=math.pi)
    peaks = ((hist > hist.roll(1)) & (hist > hist.roll(-1)) & (hist > hist.mean())).sum()
    assert peaks == 5


def test_registry_errors():
    with pytest.raises(ValueError) as e:
        D.load_dataset("spirals", n=10)
    for name in D.DATASETS:
        assert name in str(e.value)
    with pytest.raises(TypeError, match="n"):
        D.load_dataset("ring8", n=2.5)
    with pytest.raises(ValueError, match="n"):
        D.ring8(0)
    with pytest.raises(ValueError, match="seed or generator"):
        D.ring8(5, seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="name_or_path"):
        D.load_dataset(3, n=10)


def test_aliases_and_default_size():
    assert torch.equal(D.load_dataset("8Gaussians", n=50, seed=1), D.ring8(50, seed=1))
    assert D.load_dataset("two_moons", seed=0).shape == (D.DEFAULT_N, 2)

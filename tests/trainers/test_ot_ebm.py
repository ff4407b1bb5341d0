"""OTEBMTrainer and the gradient-norm penalty: hand-computed values, the sign of
every loss term, second-order drift, learning a 2-D Gaussian, resume, config errors."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ebmfast.ops import grad_norm_penalty
from ebmfast.trainers import get_trainer
from ebmfast.trainers.ot_ebm import OTEBMConfig, OTEBMTrainer

from _trainer_helpers import LinearEnergy, QuadEnergy, gaussian_data, mean_dist, params, single_thread  # noqa: F401 (autouse fixture)


# ------------------------------------------------------------------ penalty
def grad_norm_penalty_ref(energy, x, lipschitz=None, reduction="mean"):
    """The penalty by plain autograd (double backward), as the trainers' loss states it."""
    x = x.detach().requires_grad_(True)
    g, = torch.autograd.grad(energy(x).sum(), x, create_graph=True)
    sq = g.flatten(1).pow(2).sum(1)
    per = sq if lipschitz is None else (sq.sqrt() - lipschitz).pow(2)
    return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]


@pytest.mark.parametrize("fn", [grad_norm_penalty_ref, grad_norm_penalty], ids=["autograd", "dispatch"])
def test_penalty_hand_computation(fn):
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    e = QuadEnergy(1.0)                          # grad = x: norms 5 and 1
    p = fn(e, x, lipschitz=1.0)                  # ((5-1)^2 + (1-1)^2) / 2
    assert float(p.detach()) == pytest.approx(8.0, rel=1e-6)
    p.backward()                                 # d/da mean (a|x| - 1)^2 = mean 2 (a|x| - 1) |x| = 20
    assert float(e.a.grad) == pytest.approx(20.0, rel=1e-5)
    assert fn(e, x, lipschitz=None).item() == pytest.approx((25 + 1) / 2, rel=1e-6)
    assert fn(e, x, lipschitz=2.0, reduction="sum").item() == pytest.approx(9.0 + 1.0, rel=1e-6)
    per = fn(e, x, lipschitz=1.0, reduction="none")
    assert per.shape == (2,) and torch.allclose(per, torch.tensor([16.0, 0.0]), atol=1e-5)


def test_penalty_images_and_errors():
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    e = QuadEnergy(2.0).double()
    want = ((2 * x.flatten(1).norm(dim=1) - 0.5) ** 2).mean()
    assert grad_norm_penalty(e, x, lipschitz=0.5).item() == pytest.approx(float(want), rel=1e-9)
    with pytest.raises(ValueError, match="lipschitz must be a number > 0"):
        grad_norm_penalty(e, x, lipschitz=0.0)
    with pytest.raises(ValueError, match="reduction"):
        grad_norm_penalty(e, x, reduction="max")


# ---------------------------------------------------------------- trainer
def test_registered():
    assert get_trainer("ot-ebm") is OTEBMTrainer


def test_one_step_known_answer_and_signs():
    tau, L, lr_x = 20.0, 0.5, 0.7
    tr = OTEBMTrainer({"tau": tau, "lipschitz": L, "particle_lr": lr_x, "n_particles": 8, "lr": 1e-2},
                      dim=2, seed=0, energy=LinearEnergy(w=(0.6, -0.8), b=0.3))
    x0 = tr.x.clone()
    w = tr.energy.w.detach().clone()
    data = gaussian_data(16)
    m = tr.train_step(data, 0)
    x1 = x0 - lr_x * w                                   # noise-free SGD particle step
    assert torch.allclose(tr.x, x1, atol=1e-6)
    gap = data.mean(0) - x1.mean(0)
    pen = (w.norm() - L) ** 2                           # |grad E| = |w| = 1 everywhere
    want = float(gap @ w) + (tau / 8 + tau / 4) * float(pen)
    assert m["loss"] == pytest.approx(want, rel=1e-5)
    assert m["pen_prev"] == pytest.approx(float(pen), rel=1e-5)
    # Adam's first step moves every coordinate by -lr * sign(grad): the penalty is *minimised*
    grad_w = gap + 2 * (tau / 8 + tau / 4) * (w.norm() - L) * w / w.norm()
    dw = tr.energy.w.detach() - w
    assert torch.allclose(dw, -1e-2 * torch.sign(grad_w), atol=1e-5)


def test_second_order_drift_matches_autograd():
    torch.manual_seed(0)
    energy = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 1), nn.Flatten(0))
    tr = OTEBMTrainer({"second_order": True, "particle_lr": 0.1, "n_particles": 8, "tau": 0.0},
                      dim=2, seed=0, energy=energy)
    x0 = tr.x.clone().requires_grad_(True)
    g, = torch.autograd.grad(energy(x0).sum(), x0, create_graph=True)
    hg, = torch.autograd.grad(g.pow(2).sum(), x0)
    want = (x0 - 0.1 * (g + 0.25 * hg)).detach()
    tr.train_step(gaussian_data(8), 0)
    assert torch.allclose(tr.x, want, atol=1e-5)
    assert not torch.allclose(want, (x0 - 0.1 * g).detach(), atol=1e-4)  # the correction is non-zero


def test_particles_reach_gaussian():
    # L * particle_lr is the particle speed per iteration; 0.1 suits a target of std 0.5
    cfg = {"hidden": 32, "n_layers": 3, "n_particles": 128, "lr": 3e-3, "beta1": 0.0, "lipschitz": 0.1}
    tr = OTEBMTrainer(cfg, dim=2, seed=0)
    d0 = mean_dist(tr.sample(128))
    tr.fit(gaussian_data(), 100, batch_size=128)
    d1 = mean_dist(tr.sample(128))
    assert d0 > 2.5 and d1 < 1.0, (d0, d1)


def test_resume_bit_identical(tmp_path):
    cfg = {"hidden": 16, "n_layers": 3, "n_particles": 32, "lipschitz": 0.2}
    ref = OTEBMTrainer(cfg, dim=2, seed=5)
    ref.fit(gaussian_data(), 10, batch_size=32)
    a = OTEBMTrainer(cfg, dim=2, seed=5)
    a.fit(gaussian_data(), 6, batch_size=32, out_dir=tmp_path, ckpt_every=3)
    b = OTEBMTrainer(cfg, dim=2, seed=5)
    b.fit(gaussian_data(), 10, batch_size=32, out_dir=tmp_path, resume=True)
    assert torch.equal(params(ref.energy), params(b.energy)) and torch.equal(ref.x, b.x)


def test_config_errors():
    with pytest.raises(ValueError, match=r"OTEBMConfig\.tau .* must be >= 0\.0 .*got -1\.0"):
        OTEBMTrainer({"tau": -1.0})
    with pytest.raises(ValueError, match=r"OTEBMConfig\.lipschitz .* must be > 0\.0 .*got 0\.0"):
        OTEBMConfig(lipschitz=0.0).validate()
    with pytest.raises(ValueError, match=r"OTEBMConfig: unknown key 'lipshitz'; valid keys: .*lipschitz"):
        OTEBMConfig.from_dict({"lipshitz": 1.0})
    with pytest.raises(TypeError, match=r"second_order must be a bool"):
        OTEBMConfig(second_order=1).validate()
    assert math.isclose(OTEBMConfig().tau, 20.0) and OTEBMConfig().particle_lr == 1.0


def test_toy_reproduction_script_smoke(tmp_path):
    """examples/ot_ebm/run_toys.py --quick (60 iterations, 1 seed, both data sets and methods)
    runs end to end and writes per-run JSON, the summary and the weight plots."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "quick"
    subprocess.run([sys.executable, str(root / "examples/ot_ebm/run_toys.py"), "--quick", "--out", str(out),
                    "--noise", "0.1"], check=True, cwd=root, env=_env_with_repo(root), timeout=600)
    runs = sorted(p.name for p in out.glob("*_s0.json"))
    assert runs == ["mle_grid9_s0.json", "mle_swissroll_s0.json", "ot-ebm_grid9_s0.json", "ot-ebm_swissroll_s0.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary, "empty summary"
    assert (out / "summary.md").exists() and list(out.glob("weights_*.png"))


def _env_with_repo(root):
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env

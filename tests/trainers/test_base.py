"""Tests of the Trainer base: repeatability, checkpoint/resume, atomicity,
divergence guard, config validation and the registry.

A tiny trainer (`_Toy`) exercises every piece of state the base must carry:
an Adam optimiser, persistent particles (extra_state) and draws from the
torch, numpy and python RNGs each step.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import ebmfast.core.io as core_io
import ebmfast.trainers.checkpoint as checkpoint
from _trainer_helpers import single_thread  # noqa: F401 (autouse fixture)
from ebmfast.trainers import (DivergenceError, Trainer, TrainerConfig, get_trainer, latest_checkpoint, param,
                              register_trainer)


@dataclass
class ToyConfig(TrainerConfig):
    lr: float = param(1e-2, gt=0.0, doc="Adam learning rate")
    n_particles: int = param(16, ge=1)
    mode: str = param("a", choices=("a", "b"))
    hidden: tuple = param((8, 8), ge=1)
    blow_up_at: int = param(-1, ge=-1)


@register_trainer
class _Toy(Trainer):
    name = "_toy-test"
    Config = ToyConfig

    def build(self):
        c = self.config
        self.net = nn.Sequential(nn.Linear(self.dim, c.hidden[0]), nn.Tanh(), nn.Linear(c.hidden[0], 1)).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=c.lr)
        self.x = torch.randn(c.n_particles, self.dim)

    def energy(self, x):
        return self.net(x).squeeze(-1)

    def train_step(self, batch, it):
        # particles: one noisy gradient step (uses torch RNG); numpy + python RNG jitter the step size
        x = self.x.clone().requires_grad_(True)
        g, = torch.autograd.grad(self.energy(x).sum(), x)
        step = 0.1 * (1 + 0.1 * np.random.rand()) * (1 + 0.1 * random.random())
        self.x = (x - step * g + 0.05 * torch.randn_like(x)).detach()
        loss = self.energy(batch).mean() - self.energy(self.x).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if it == self.config.blow_up_at:
            with torch.no_grad():
                self.net[0].weight[0, 0] = float("nan")
        return {"loss": loss.item()}

    def sample(self, n):
        return self.x[:n].clone()

    def modules(self):
        return {"energy": self.net}

    def optimizers(self):
        return {"opt": self.opt}

    def extra_state(self):
        return {"particles": self.x}

    def load_extra_state(self, state):
        self.x = state["particles"].clone()


def _data(n=64):
    g = torch.Generator().manual_seed(123)
    return torch.randn(n, 2, generator=g) + 2.0


def _params(tr):
    return torch.cat([p.detach().flatten() for p in tr.net.parameters()])


def test_repeatable_and_independent_of_global_rng():
    a = _Toy(seed=3)
    torch.randn(100)  # disturb the global RNG between build and fit: must not matter
    np.random.rand(7)
    a.fit(_data(), 25, batch_size=16)
    b = _Toy(seed=3)
    b.fit(_data(), 25, batch_size=16)
    assert torch.equal(_params(a), _params(b))
    assert torch.equal(a.x, b.x)
    c = _Toy(seed=4)
    c.fit(_data(), 25, batch_size=16)
    assert not torch.equal(_params(a), _params(c))


def test_resume_is_bit_identical(tmp_path):
    ref = _Toy(seed=1)
    ref.fit(_data(), 30, batch_size=16, log_every=5)

    first = _Toy(seed=1)
    first.fit(_data(), 12, batch_size=16, ckpt_every=6, out_dir=tmp_path, log_every=5)
    del first
    torch.randn(5)  # a new process would start from another RNG state
    second = _Toy(seed=1)
    out = second.fit(_data(), 30, batch_size=16, ckpt_every=6, out_dir=tmp_path, resume=True, log_every=5)
    assert out["resumed_from"] == 12 and second.iteration == 30
    assert torch.equal(_params(ref), _params(second))
    assert torch.equal(ref.x, second.x)
    # the log has each iteration once, in order
    its = [json.loads(l)["it"] for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert its == sorted(set(its)) and its[-1] == 29
    # old checkpoints were pruned to keep_checkpoints
    assert len(list((tmp_path / "ckpt").glob("weights-*.safetensors"))) == Trainer.keep_checkpoints
    # safetensors file holds the weights under "<module>.<key>"
    from safetensors.torch import load_file
    w = load_file(str(tmp_path / "ckpt" / latest_checkpoint(tmp_path / "ckpt")["weights"]))
    assert torch.equal(w["energy.0.weight"], second.net[0].weight.detach())


def test_crash_during_checkpoint_write_keeps_old(tmp_path, monkeypatch):
    tr = _Toy(seed=0)
    tr.fit(_data(), 5, ckpt_every=5, out_dir=tmp_path)
    tr.fit(_data(), 8, out_dir=tmp_path)  # continues in memory; fit ends with a checkpoint at 8
    good = _params(tr).clone()
    with torch.no_grad():
        tr.net[0].weight.add_(1.0)  # state that the crashed saves try to write

    real = checkpoint.atomic_write_bytes
    calls = {"n": 0}

    def crashing(path, data):
        calls["n"] += 1
        if calls["n"] == 2:  # weights written, crash half-way through the state file
            with open(path.with_name(path.name + ".tmp"), "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError("simulated crash")
        return real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", crashing)
    with pytest.raises(OSError, match="simulated crash"):
        tr.save_checkpoint(tmp_path / "ckpt")
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", real)
    assert latest_checkpoint(tmp_path / "ckpt")["iteration"] == 8
    # crash before the commit point of a later save: latest still names a complete pair
    tr.iteration = 9
    calls["n"] = 0
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", crashing)
    with pytest.raises(OSError):
        tr.save_checkpoint(tmp_path / "ckpt")
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", real)
    fresh = _Toy(seed=0)
    assert fresh.load_checkpoint(tmp_path / "ckpt") == 8
    assert torch.equal(_params(fresh), good)  # the iteration-8 state, loaded intact


def test_divergence_guard_names_iteration_and_keeps_checkpoint(tmp_path):
    tr = _Toy({"blow_up_at": 7}, seed=0)
    with pytest.raises(DivergenceError, match=r"iteration 7: param:energy\.0\.weight") as ei:
        tr.fit(_data(), 20, ckpt_every=5, out_dir=tmp_path)
    assert ei.value.iteration == 7 and ei.value.metric == "param:energy.0.weight"
    assert latest_checkpoint(tmp_path / "ckpt")["iteration"] == 5
    fresh = _Toy({"blow_up_at": 7}, seed=0)
    fresh.load_checkpoint(tmp_path / "ckpt")
    assert torch.isfinite(_params(fresh)).all()
    last = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert last["diverged"] == "param:energy.0.weight" and last["it"] == 7


def test_divergence_on_metric():
    class Bad(_Toy):
        name = "_toy-bad"

        def train_step(self, batch, it):
            return {"loss": float("inf") if it == 3 else 1.0}

    with pytest.raises(DivergenceError, match="iteration 3: loss = inf"):
        Bad(seed=0).fit(_data(), 10)


def test_divergence_on_exploding_energy_keeps_checkpoint(tmp_path):
    class Runaway(_Toy):
        name = "_toy-runaway"

        def train_step(self, batch, it):
            out = super().train_step(batch, it)
            return {**out, "e_data": -1.0, "e_sample": -10.0 ** it}  # finite, but running away

    tr = Runaway(seed=0)
    with pytest.raises(DivergenceError, match=r"iteration 5: e_sample \(\|value\| > max_abs_energy = 10000\) = -100000"):
        tr.fit(_data(), 20, ckpt_every=2, out_dir=tmp_path, max_abs_energy=1e4)
    assert latest_checkpoint(tmp_path / "ckpt")["iteration"] == 4  # the last good one
    # the default bound (1e6) stops it later; None turns the bound off (finite values pass)
    with pytest.raises(DivergenceError, match="iteration 7: e_sample"):
        Runaway(seed=0).fit(_data(), 20)
    assert Runaway(seed=0).fit(_data(), 20, max_abs_energy=None)["iteration"] == 20
    with pytest.raises(ValueError, match="max_abs_energy must be a number > 0 or None, got 0"):
        Runaway(seed=0).fit(_data(), 20, max_abs_energy=0)


def test_config_validation_messages():
    with pytest.raises(ValueError, match=r"ToyConfig\.lr \(Adam learning rate\) must be > 0\.0 .*got -1"):
        ToyConfig(lr=-1).validate()
    with pytest.raises(ValueError, match=r"unknown key 'lrr'; valid keys: lr, n_particles"):
        ToyConfig.from_dict({"lrr": 1.0})
    with pytest.raises(ValueError, match=r"mode must be one of \['a', 'b'\], got 'c'"):
        ToyConfig.from_dict({"mode": "c"})
    with pytest.raises(TypeError, match=r"n_particles must be an int"):
        ToyConfig.from_dict({"n_particles": 2.5})
    with pytest.raises(ValueError, match=r"hidden\[1\] must be >= 1"):
        ToyConfig.from_dict({"hidden": [4, 0]})
    with pytest.raises(ValueError, match=r"lr .* got nan"):
        ToyConfig(lr=float("nan")).validate()
    # validated before anything is built
    with pytest.raises(ValueError, match="ToyConfig.lr"):
        _Toy({"lr": 0.0})
    assert ToyConfig.from_dict({"hidden": [4, 5]}).hidden == (4, 5)


def test_registry_and_fit_arguments():
    assert get_trainer("_toy-test") is _Toy
    with pytest.raises(ValueError, match=r"unknown trainer 'nope'; valid names: .*_toy-test"):
        get_trainer("nope")
    with pytest.raises(ValueError, match=r"already registered"):
        register_trainer(type("_Toy", (_Toy,), {"name": "_toy-test", "__module__": "elsewhere"}))
    tr = _Toy(seed=0)
    with pytest.raises(ValueError, match=r"data must have shape \[N, 2\]"):
        tr.fit(torch.zeros(5, 3), 1)
    with pytest.raises(ValueError, match="n_iters"):
        tr.fit(_data(), -1)
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        tr.fit(_data(), 1, resume=True)


def test_atomic_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    p = tmp_path / "latest.json"
    p.write_bytes(b'{"old": 1}')

    def boom(src, dst):
        raise OSError("crash before rename")

    monkeypatch.setattr(core_io.os, "replace", boom)
    with pytest.raises(OSError, match="crash before rename"):
        core_io.atomic_write_bytes(p, b'{"new": 2, "padding": "' + b"x" * 10000 + b'"}')
    assert p.read_bytes() == b'{"old": 1}'


def test_crash_while_committing_latest_keeps_old(tmp_path, monkeypatch):
    tr = _Toy(seed=0)
    tr.fit(_data(), 4, out_dir=tmp_path)
    real = checkpoint.atomic_write_bytes

    def crash_on_latest(path, data):
        if path.name == "latest.json":
            raise OSError("crash at commit")
        return real(path, data)

    tr.iteration = 5
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", crash_on_latest)
    with pytest.raises(OSError, match="crash at commit"):
        tr.save_checkpoint(tmp_path / "ckpt")
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", real)
    assert _Toy(seed=0).load_checkpoint(tmp_path / "ckpt") == 4
    # the orphaned pair is cleaned up by the next successful save
    tr.save_checkpoint(tmp_path / "ckpt")
    rec = latest_checkpoint(tmp_path / "ckpt")
    names = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert names == {"latest.json", rec["weights"], rec["state"], *rec["previous"][0]}

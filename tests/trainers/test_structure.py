"""Tests of the pieces split out of the Trainer base: the Checkpointer, the explicit registry,
fit's hooks, the per-method facts used by the run tools, and the shared particle config."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from _trainer_helpers import gaussian_data, single_thread  # noqa: F401 (autouse fixture)
from ebmfast.trainers import (TRAINERS, Checkpointer, DivergenceError, Hook, JKOTrainer, MLETrainer, OTEBMTrainer,
                              SelfAdversarialTrainer, VPFBTrainer, WGCNTrainer, get_trainer, latest_checkpoint)
from ebmfast.trainers.jsonl import JsonlLog, read_jsonl
from ebmfast.trainers.mle import MLEConfig
from ebmfast.trainers.ot_ebm import OTEBMConfig
from ebmfast.trainers.particles import ParticleEBMConfig

TINY = {"hidden": 8, "n_layers": 2, "n_particles": 16}


def _mle(**kw):
    return MLETrainer({**TINY, **kw}, dim=2, seed=0)


def test_registry_is_the_written_out_dict():
    assert TRAINERS == {"mle": MLETrainer, "ot-ebm": OTEBMTrainer, "w-gcn": WGCNTrainer,
                        "self-adv": SelfAdversarialTrainer, "jko": JKOTrainer, "vpfb": VPFBTrainer} | {
        k: v for k, v in TRAINERS.items() if k.startswith(("_", "test-"))}
    for name, cls in TRAINERS.items():
        assert cls.name == name and get_trainer(name) is cls
    with pytest.raises(TypeError, match="expects a str"):
        get_trainer(3)


def test_particle_trainers_share_one_config_declaration():
    shared = {f.name for f in dataclasses.fields(ParticleEBMConfig)}
    assert {"lr", "n_steps", "init", "n_particles", "sample_steps", "hidden"} <= shared
    for cfg in (MLEConfig, OTEBMConfig):
        assert issubclass(cfg, ParticleEBMConfig)
        own = {f.name for f in dataclasses.fields(cfg)} - shared
        assert own == ({"step_size", "noise_scale"} if cfg is MLEConfig else
                       {"tau", "lipschitz", "particle_lr", "second_order"})
    with pytest.raises(ValueError, match="OTEBMConfig: clamp_lo must be < clamp_hi"):
        OTEBMConfig(clamp_lo=1.0, clamp_hi=0.0).validate()


def test_checkpointer_keeps_prunes_and_restores(tmp_path):
    tr = _mle()
    ck = Checkpointer(tmp_path / "ck", tr, keep=2)
    assert ck.latest() is None and ck.load() is None
    data = gaussian_data(64)
    for n in (2, 4, 6):
        tr.fit(data, n, batch_size=16)
        ck.save(tr.iteration)
    rec = latest_checkpoint(tmp_path / "ck")
    assert rec["iteration"] == 6 and len(rec["previous"]) == 1
    assert len(list((tmp_path / "ck").glob("state-*.pt"))) == 2  # keep=2: the oldest pair was pruned
    x6 = tr.x.clone()
    fresh = _mle()
    assert Checkpointer(tmp_path / "ck", fresh).load() == 6
    assert fresh.iteration == 6 and torch.equal(fresh.x, x6)
    with pytest.raises(ValueError, match="written by trainer 'mle', not 'ot-ebm'"):
        Checkpointer(tmp_path / "ck", OTEBMTrainer(TINY, dim=2)).load()
    with pytest.raises(ValueError, match="keep must be an int >= 1"):
        Checkpointer(tmp_path / "ck", tr, keep=0)


def test_fit_runs_extra_hooks_in_order():
    calls = []

    class Recorder(Hook):
        def on_start(self, trainer, resumed_from):
            calls.append(("start", trainer.iteration, resumed_from))

        def after_step(self, trainer, it, metrics):
            calls.append(("step", it, trainer.iteration))

        def on_end(self, trainer):
            calls.append(("end", trainer.iteration))

        def close(self):
            calls.append(("close",))

    _mle().fit(gaussian_data(64), 3, batch_size=16, hooks=[Recorder()])
    assert calls == [("start", 0, None), ("step", 0, 1), ("step", 1, 2), ("step", 2, 3), ("end", 3), ("close",)]


def test_a_hook_can_reject_a_step_and_every_hook_sees_it(tmp_path):
    seen = []

    class Veto(Hook):
        def check_step(self, trainer, it, metrics):
            if it == 2:
                raise DivergenceError(it, "veto", 1.0)

        def on_divergence(self, trainer, error):
            seen.append(error.iteration)

    tr = _mle()
    with pytest.raises(DivergenceError, match="iteration 2: veto"):
        tr.fit(gaussian_data(64), 5, batch_size=16, out_dir=tmp_path, hooks=[Veto()])
    assert seen == [2] and tr.iteration == 2
    assert read_jsonl(tmp_path / "log.jsonl")[-1] == {"it": 2, "diverged": "veto", "value": "1.0"}


def test_jsonl_log_truncates_and_skips_torn_lines(tmp_path):
    log = JsonlLog(tmp_path / "m.jsonl")
    log.extend([{"it": 0}, {"event": "resume"}, {"it": 1, "x": float("nan")}, {"it": 2}])
    log.close()
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write('{"it": 3, "tor')                    # a crash mid-write
    assert [r.get("it") for r in read_jsonl(tmp_path / "m.jsonl")] == [0, None, 1, 2]
    assert read_jsonl(tmp_path / "m.jsonl")[2]["x"] == "nan"  # non-finite floats stay readable JSON
    log.truncate_from(2)
    assert read_jsonl(tmp_path / "m.jsonl") == [{"it": 0}, {"event": "resume"}, {"it": 1, "x": "nan"}]
    assert json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0]) == {"it": 0}
    log.clear()
    assert not (tmp_path / "m.jsonl").exists()


def test_per_method_facts():
    mle = _mle()
    assert mle.pool_size() == 16 and _mle(sample_steps=5).pool_size() is None
    assert WGCNTrainer({"hidden": 8, "n_layers": 2, "n_chains": 12}, dim=2).pool_size() == 12
    assert MLETrainer.step_sizes(mle.config) == ["lr", "step_size"]
    assert OTEBMTrainer.step_sizes(OTEBMConfig()) == ["lr", "particle_lr"]
    # vpfb: lr_decay_iters (an iteration count) is not a step size
    vp = VPFBTrainer.Config(lr_decay_iters=100)
    assert VPFBTrainer.step_sizes(vp) == ["lr", "lr_min"]
    # the generic rule, for a trainer that declares nothing
    from ebmfast.trainers import Trainer
    assert Trainer.step_sizes(vp) == ["lr", "lr_decay_iters", "lr_min"]
    assert mle.energy_fn() is mle.energy and VPFBTrainer({"hidden": 8}, dim=2).energy_fn() is None
    w = WGCNTrainer({"hidden": 8, "n_layers": 2, "n_chains": 4}, dim=2)
    assert w.energy_fn() == w.full_energy and torch.equal(w.init_points(3), torch.zeros(3, 2))
    assert not VPFBTrainer.has_chain and all(c.has_chain for c in (MLETrainer, OTEBMTrainer, WGCNTrainer,
                                                                    SelfAdversarialTrainer, JKOTrainer))
    frames = mle.chain_trajectory(5, 4, n_frames=3)
    assert frames.shape == (3, 5, 2)
    assert mle.frame_marks(4, 3) == [0, 2, 4] and mle.figure_chain_steps() == 100
    with pytest.raises(ValueError, match="no step-by-step sampling chain"):
        VPFBTrainer({"hidden": 8}, dim=2).fresh_chain(2, 3)


def test_jko_run_facts():
    cfg = JKOTrainer.Config(n_jko_steps=2, j1=3)
    assert JKOTrainer.iteration_limit(cfg) == (6, "the JKO schedule n_jko_steps * j1 = 2 * 3 = 6")
    assert MLETrainer.iteration_limit(MLEConfig()) is None
    assert JKOTrainer.cli_presets({}, has_data=False, has_target=True) == {"functional": "kl"}
    assert JKOTrainer.cli_presets({}, has_data=True, has_target=False) == {"functional": "jsd"}
    assert JKOTrainer.cli_presets({"functional": "entropy"}, has_data=True, has_target=False) == {}

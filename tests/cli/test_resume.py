"""Run management: kill -9 and resume gives the identical run; divergence stop / rollback; resume rules."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from _cli import TINY, cli, cli_env, run_main

RUN = ["train", "--method", "mle", "--data", "ring8", "--iters", 300, "--seed", 3, *TINY["mle"],
       "--n-samples", 200, "--ckpt-every", 7, "--log-every", 1, "--eval-every", 100, "--no-figures", "--quiet"]


def _last_it(path) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return -1
    its = [json.loads(ln).get("it", -1) for ln in lines[-5:] if ln.strip().endswith("}")]
    return max(its, default=-1)


def _start(args, tmp_path):
    return subprocess.Popen([sys.executable, "-m", "ebmfast", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=tmp_path)


def _wait_for(proc, path, it, timeout=180):
    t0 = time.time()
    while _last_it(path) < it:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before iteration {it}: {proc.stderr.read()[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail(f"no iteration {it} after {timeout} s")
        time.sleep(0.01)


def _losses(path):
    return [(r["it"], r["loss"], r.get("eval_mmd_ratio")) for r in map(json.loads, path.read_text().splitlines())
            if "it" in r and "loss" in r]


def test_killed_run_resumes_to_identical_parameters_and_samples(tmp_path):
    from ebmfast.trainers import load_checkpoint_files
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    ref_proc = _start([*RUN, "--out", ref], tmp_path)     # the uninterrupted run, side by side
    proc = _start([*RUN, "--out", killed], tmp_path)
    _wait_for(proc, killed / "metrics.jsonl", 120)
    proc.send_signal(signal.SIGKILL)              # no chance to clean up: the hardest kill
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    _, err = ref_proc.communicate(timeout=240)
    assert ref_proc.returncode == 0, err[-2000:]
    assert not (killed / "final.json").exists()
    ck = json.loads((killed / "ckpt" / "latest.json").read_text())
    assert 120 - 7 <= ck["iteration"] < 300 and ck["iteration"] % 7 == 0  # killed at it >= 120
    p = cli("train", "--resume", killed, "--quiet", check_rc=0)
    assert f"from iteration {ck['iteration']}" in p.stderr
    wa, sa = load_checkpoint_files(ref / "ckpt")
    wb, sb = load_checkpoint_files(killed / "ckpt")
    assert sa["iteration"] == sb["iteration"] == 300
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), "parameters differ"
    assert torch.equal(sa["extra"]["particles"], sb["extra"]["particles"])
    for k, v in sa["optimizers"]["energy"]["state"].items():
        assert torch.equal(v["exp_avg"], sb["optimizers"]["energy"]["state"][k]["exp_avg"])
    assert np.array_equal(np.load(ref / "samples.npy"), np.load(killed / "samples.npy")), "samples differ"
    # the logs were cut back to the checkpoint and replayed: one record per iteration, same values
    assert _losses(ref / "metrics.jsonl") == _losses(killed / "metrics.jsonl")
    fa, fb = (json.loads((d / "final.json").read_text()) for d in (ref, killed))
    assert fa["train_metrics"] == fb["train_metrics"] and fa["eval"] == fb["eval"]
    assert fb["resumed_from"] == ck["iteration"]
    # a finished run resumed again does nothing
    p = cli("train", "--resume", killed, "--quiet", check_rc=0)
    assert "already complete" in p.stdout


def test_sigterm_stops_cleanly_with_a_resume_hint(tmp_path):
    out = tmp_path / "run"
    proc = _start([*RUN, "--out", out], tmp_path)
    _wait_for(proc, out / "metrics.jsonl", 20)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted after iteration" in err and f"--resume {out}" in err


def test_resume_refuses_to_change_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, se = run_main("train", "--method", "mle", "--data", "ring8", "--iters", 2, *TINY["mle"], "--out", out,
                         "--quiet", "--no-figures", capsys=capsys)
    assert rc == 0, se
    for extra in (["--set", "lr=1"], ["--seed", "5"], ["--data", "grid9"]):
        rc, _, se = run_main("train", "--resume", out, *extra, capsys=capsys)
        assert rc == 2 and "cannot change" in se, se
    rc, _, se = run_main("train", "--resume", tmp_path / "nothing", capsys=capsys)
    assert rc == 2 and "does not exist" in se
    # extending a finished run is allowed
    rc, _, se = run_main("train", "--resume", out, "--iters", 3, "--quiet", capsys=capsys)
    assert rc == 0, se
    assert json.loads((out / "final.json").read_text())["iterations"] == 3


DIVERGING = textwrap.dedent('''
    """A test trainer that diverges (NaN loss) from iteration ``blow_at`` while its lr > ``threshold``."""
    from dataclasses import dataclass
    import torch
    from torch import nn
    from ebmfast.trainers import Trainer, TrainerConfig, param, register_trainer

    @dataclass
    class DivConfig(TrainerConfig):
        lr: float = param(0.4, gt=0.0)
        step_size: float = param(1.0, gt=0.0)
        blow_at: int = param(5, ge=0)
        threshold: float = param(0.15, gt=0.0)
        runaway: bool = param(False)  # diverge by a finite, runaway e_sample instead of a NaN loss

    @register_trainer
    class DivTrainer(Trainer):
        name = "test-div"
        Config = DivConfig

        def build(self):
            self.net = nn.Linear(2, 1)
            self.opt = torch.optim.SGD(self.net.parameters(), lr=self.config.lr)

        def train_step(self, batch, it):
            loss = self.net(batch).pow(2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            if it >= self.config.blow_at and self.opt.param_groups[0]["lr"] > self.config.threshold:
                if self.config.runaway:
                    return {"loss": float(loss.detach()), "e_data": 0.0, "e_sample": -1e3}
                return {"loss": float("nan")}
            return {"loss": float(loss.detach())}

        def sample(self, n):
            return torch.randn(n, 2)

        def modules(self):
            return {"net": self.net}

        def optimizers(self):
            return {"net": self.opt}
''')


class _Result:
    def __init__(self, rc, stdout, stderr):
        self.returncode, self.stdout, self.stderr = rc, stdout, stderr


def _run_div(tmp_path, capsys, *args):
    """A user's own registered trainer through the CLI (in this process: the trainer module is imported here)."""
    import importlib.util
    from ebmfast.trainers import TRAINERS
    if "test-div" not in TRAINERS:
        (tmp_path / "divtrainer.py").write_text(DIVERGING)
        spec = importlib.util.spec_from_file_location("divtrainer", tmp_path / "divtrainer.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["divtrainer"] = mod
        spec.loader.exec_module(mod)
    rc, so, se = run_main("train", "--method", "test-div", "--data", "ring8", "--iters", 8, "--ckpt-every", 2,
                          "--log-every", 1, "--no-figures", "--quiet", "--n-samples", 50, *args, capsys=capsys)
    return _Result(rc, so, se)


def test_divergence_stop_names_iteration_metric_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "stop"
    p = _run_div(tmp_path, capsys, "--out", out)
    assert p.returncode == 3, p.stderr
    assert "training diverged at iteration 5: loss = nan" in p.stderr
    assert f"last good checkpoint: {out / 'ckpt'} (iteration 4)" in p.stderr
    assert json.loads((out / "ckpt" / "latest.json").read_text())["iteration"] == 4
    events = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"event": "divergence", "at_iteration": 5, "metric": "loss", "value": "nan"} in events


def test_divergence_on_runaway_energy_follows_max_abs_energy(tmp_path, capsys):
    p = _run_div(tmp_path, capsys, "--out", tmp_path / "e", "--set", "runaway=true", "--max-abs-energy", 100)
    assert p.returncode == 3, p.stderr
    assert "training diverged at iteration 5: e_sample (|value| > max_abs_energy = 100) = -1000.0" in p.stderr
    assert json.loads((tmp_path / "e" / "ckpt" / "latest.json").read_text())["iteration"] == 4
    # the default bound (1e6) lets a finite -1e3 pass, and so does "none"
    for extra in ((), ("--max-abs-energy", "none")):
        p = _run_div(tmp_path, capsys, "--out", tmp_path / f"e{len(extra)}", "--set", "runaway=true", *extra)
        assert p.returncode == 0, p.stderr
    p = _run_div(tmp_path, capsys, "--out", tmp_path / "e_bad", "--max-abs-energy", -1)
    assert p.returncode == 2 and "max_abs_energy (--max-abs-energy)" in p.stderr, p.stderr


def test_divergence_rollback_halves_step_sizes_and_finishes(tmp_path, capsys):
    out = tmp_path / "rb"
    p = _run_div(tmp_path, capsys, "--out", out, "--on-divergence", "rollback", "--max-rollbacks", 3)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("rollback ") == 2 and "lr 0.4 -> 0.2" in p.stderr and "lr 0.2 -> 0.1" in p.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["trainer"]["lr"] == pytest.approx(0.1) and cfg["trainer"]["step_size"] == pytest.approx(0.25)
    assert [r["restored_iteration"] for r in cfg["rollbacks"]] == [4, 4]
    final = json.loads((out / "final.json").read_text())
    assert final["iterations"] == 8 and len(final["rollbacks"]) == 2
    from ebmfast.trainers import load_checkpoint_files
    _, state = load_checkpoint_files(out / "ckpt")
    assert state["optimizers"]["net"]["param_groups"][0]["lr"] == pytest.approx(0.1)
    its = [r["it"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert its == list(range(8)), "the logs must hold each iteration once after rollbacks"
    # too few rollbacks allowed: exit 3 and the message says so
    p = _run_div(tmp_path, capsys, "--out", tmp_path / "rb1", "--on-divergence", "rollback", "--max-rollbacks", 1)
    assert p.returncode == 3 and "after 1 rollbacks, the maximum" in p.stderr

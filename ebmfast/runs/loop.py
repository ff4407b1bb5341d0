"""The training loop of ``ebmfast train``: Trainer.fit plus everything a run shows and keeps.

``Runner.train`` calls ``trainer.fit(data, iters, callback=...)`` (no out_dir: the
Runner owns the run directory) and does, after each iteration, in this order:

1. progress bar (tqdm: loss, energy gap, MAEE, gradient norm, it/s) or, with
   ``quiet``, one plain log line per log point;
2. metrics.jsonl / layers.jsonl (per-layer spectral and gradient norms) / TensorBoard;
3. periodic evaluation (MMD ratio, modes) and the best checkpoint (``best/``);
4. the checkpoint (``ckpt/``, the trainer's ``Checkpointer``; last ``keep_last`` kept);
5. figures.

Reproducibility: everything in 2-5 that draws random numbers runs inside
:func:`isolated_rng` (seeded, then every global RNG is restored), and nothing
touches the trainer's state, so the training trajectory is the same with or
without evaluation / figures, and a run killed at any point and resumed from its
last checkpoint replays the identical iterations (the checkpoint holds every RNG
state). Checkpoints are written after the log record of the same iteration, and a
resume cuts the logs back to the checkpoint.

Divergence (``DivergenceError`` from the Trainer base, raised before the state of the
bad iteration is saved anywhere): ``on_divergence="stop"`` raises :class:`RunDiverged`
whose message names the iteration, the metric and the last good checkpoint;
``"rollback"`` rebuilds the trainer with every step size halved
(the trainer class's ``step_sizes``), restores the last good checkpoint
(or restarts from scratch if there is none), halves the optimisers' learning rates,
checkpoints that state at once and continues, at most ``max_rollbacks`` times.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from typing import Any, Optional

import numpy as np
import torch

from ..trainers import Checkpointer, DivergenceError, load_checkpoint_files
from . import methods
from .data import RunData, resolve_target
from .evaluation import RunEvaluator, summary_line
from .io import JsonlLog, atomic_save_npy, atomic_write_json, read_json
from .rundir import RunPaths, build_trainer
from .spec import RunConfig

__all__ = ["Runner", "RunDiverged", "RunInterrupted", "isolated_rng", "backend_used", "resolve_cadence"]


class RunDiverged(RuntimeError):
    """Training diverged and was not (or could no longer be) rolled back. Exit code 3."""


class RunInterrupted(RuntimeError):
    """SIGINT / SIGTERM during training. Exit code 130."""


@contextlib.contextmanager
def isolated_rng(seed: Optional[int] = None):
    """Run a block with its own RNG stream: python, numpy and torch (CPU + current CUDA device) states
    are restored afterwards; ``seed`` seeds them inside the block."""
    py, npst = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npst)


def backend_used() -> str:
    """The backends ebmfast's dispatcher chose for the ops that ran (e.g. 'langevin_step=cpu')."""
    from ..ops import _dispatch
    if not _dispatch.LAST_CHOICE:
        return "pytorch (no ebmfast op ran)"
    return ", ".join(f"{op}={b}" if dev == "cpu" else f"{op}@{dev}={b}"
                     for (op, dev), b in sorted(_dispatch.LAST_CHOICE.items()))


def resolve_cadence(spec: RunConfig, iters: int) -> dict:
    """Defaults of the cadences that depend on the run length."""
    return {
        "log_every": spec.log_every or max(1, iters // 100),
        "ckpt_every": spec.ckpt_every or max(1, iters // 10),
        "eval_every": spec.eval_every if spec.eval_every is not None else max(1, iters // 10),
        "fig_every": spec.fig_every if spec.fig_every is not None else (iters // 4 if iters >= 1000 else 0),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class Runner:
    """Trains one run into ``paths`` (see the module docstring).

    Args:
        paths: the run directory (created, config.json written).
        spec: run options; ``iters`` resolved.
        cls: trainer class; ``trainer_config``: its validated Config.
        data: the run's data (None for data-free trainers).
        quiet: plain log lines instead of a progress bar.
        stream: where log lines / the bar go (default stderr for the bar, stdout for lines).
    """

    def __init__(self, paths: RunPaths, spec: RunConfig, cls: type, trainer_config: Any, data: Optional[RunData],
                 dim: int, quiet: bool = False):
        self.paths, self.spec, self.cls, self.data, self.dim, self.quiet = paths, spec, cls, data, dim, quiet
        self.iters = int(spec.iters)
        self.cad = resolve_cadence(spec, self.iters)
        self.target = resolve_target(spec.target)
        self.trainer = self._build(trainer_config)
        self.metrics_log = JsonlLog(paths.metrics)
        self.layers_log = JsonlLog(paths.layers)
        self.evaluator = RunEvaluator(data.test, data.mixture, seed=spec.seed) if data is not None else None
        self.train_x = (data.train * spec.data_scale) if data is not None else None
        self.best: Optional[dict] = None
        self.rollbacks: list[dict] = []
        self.last_metrics: dict = {}
        self.last_eval: Optional[dict] = None
        self.resumed_from: Optional[int] = None
        self._tb = None
        self._bar = None
        self._cb_time = 0.0
        self._cb_cpu = 0.0
        self._last_log = (0, time.perf_counter())

    # ----------------------------------------------------------------- setup
    def _build(self, cfg):
        tr = build_trainer(self.cls, cfg, self.spec, self.dim, target=self.target)
        self.ckpt = tr.checkpointer(self.paths.ckpt, keep=self.spec.keep_last)
        self.best_ckpt = Checkpointer(self.paths.best, tr, keep=1)
        return tr

    def restore(self) -> Optional[int]:
        """Resume: rebuild the trainer from the latest checkpoint's config, load it, cut the logs back."""
        rec = self.ckpt.latest()
        if rec is not None:
            _, state = load_checkpoint_files(self.paths.ckpt)
            self.trainer = self._build(self.cls.Config.from_dict(state["config"]))
            self.ckpt.load()
        it = self.trainer.iteration
        self.metrics_log.truncate_from(it)
        self.layers_log.truncate_from(it)
        best_json = self.paths.best / "best.json"
        self.best = read_json(best_json) if best_json.is_file() else None
        try:
            cfg = read_json(self.paths.config)
            self.rollbacks = list(cfg.get("rollbacks", []))
        except (OSError, json.JSONDecodeError):  # a torn config.json: the rollback history is lost, not the run
            self.rollbacks = []
        self.resumed_from = it if rec is not None else None
        self.metrics_log.write({"event": "resume", "at_iteration": it, "time": time.time()})
        return self.resumed_from

    # ------------------------------------------------------------ callbacks
    def _on_iter(self, trainer, it: int, metrics: dict) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        n = it + 1
        m = dict(metrics)
        m["grad_norm"] = methods.total_grad_norm(trainer)
        if "e_data" in m and "e_sample" in m:
            m["energy_gap"] = m["e_data"] - m["e_sample"]
        elif "cd" in m:
            m["energy_gap"] = m["cd"]
        if "maee" not in m and "energy_gap" in m:
            m["maee"] = abs(m["energy_gap"])
        self.last_metrics = m
        if self._bar is not None:
            self._bar.update(1)
            post = {k: _fmt(m[k]) for k in ("loss", "energy_gap", "maee", "grad_norm") if k in m}
            self._bar.set_postfix(post, refresh=False)
        log_now = it == 0 or n % self.cad["log_every"] == 0 or n == self.iters
        rec = None
        if log_now:
            now = time.perf_counter()
            last_n, last_t = self._last_log
            ips = (n - last_n) / max(now - last_t, 1e-9)
            self._last_log = (n, now)
            rec = {"it": it, "wall_s": round(now - self._t_start, 4), "it_per_s": round(ips, 3), **m}
        ev_now = self.cad["eval_every"] and n % self.cad["eval_every"] == 0 and n != self.iters
        if ev_now:
            ev = self.evaluate(self.spec.eval_samples, seed=self.spec.seed + n)
            if ev is not None:
                if rec is None:
                    rec = {"it": it, "wall_s": round(time.perf_counter() - self._t_start, 4), **m}
                rec.update({f"eval_{k}": v for k, v in ev.items()})
                self._maybe_best(n, ev)
        if rec is not None:
            self.metrics_log.write(rec)
            if log_now:
                self._log_layers(it)
                if self.quiet:
                    self._print_line(n, rec)
            if self._tb is not None:
                for k, v in rec.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "it":
                        self._tb.add_scalar(k, v, n)
        if n % self.cad["ckpt_every"] == 0 and n != self.iters:
            self.ckpt.save(trainer.iteration)
        if self.spec.figures and self.cad["fig_every"] and n % self.cad["fig_every"] == 0 and n != self.iters:
            self.write_figures(final=False)
        self._cb_time += time.perf_counter() - t0
        self._cb_cpu += time.process_time() - c0

    def _print_line(self, n: int, rec: dict) -> None:
        keys = ("loss", "energy_gap", "maee", "grad_norm", "it_per_s", "eval_mmd_ratio", "eval_high_quality")
        if "loss" not in rec:  # e.g. jko: show its own first metrics
            keys = tuple(k for k in self.last_metrics if k not in keys)[:3] + keys
        parts = [f"{k}={_fmt(rec[k])}" for k in keys if k in rec]
        print(f"[{self.cls.name}] it {n}/{self.iters} " + " ".join(parts), flush=True)

    def _log_layers(self, it: int) -> None:
        from ..evaluators import grad_norms, spectral_norms
        spec, grad = {}, {}
        for mname, mod in methods.weight_modules(self.trainer).items():
            try:
                for k, v in spectral_norms(mod).items():
                    spec[f"{mname}.{k}"] = v
                for k, v in grad_norms(mod, weights_only=True).items():
                    grad[f"{mname}.{k}"] = v
            except (RuntimeError, ValueError):  # e.g. an SVD that does not converge: skip this module's norms
                continue
        if spec:
            self.layers_log.write({"it": it, "spectral": spec, "grad": grad})

    # ------------------------------------------------------------ evaluation
    def draw_samples(self, n: int, seed: int) -> torch.Tensor:
        """``n`` samples of the current model in data coordinates, [n, D] (CPU, float32); isolated RNG."""
        pool = self.trainer.pool_size()
        if pool is not None:
            n = min(n, pool)
        with isolated_rng(seed), torch.no_grad():
            x = self.trainer.sample(n)
        return (x.detach().to("cpu", torch.float32).reshape(x.shape[0], -1) / self.spec.data_scale)

    def evaluate(self, n: int, seed: int) -> Optional[dict]:
        if self.evaluator is None:
            return None
        try:
            x = self.draw_samples(n, seed)
        except (ValueError, RuntimeError):
            return None
        ev = self.evaluator(x)
        self.last_eval = ev
        return ev

    def _maybe_best(self, n: int, ev: dict) -> None:
        v = ev.get("mmd_ratio")
        if v is None or not math.isfinite(v):
            return
        if self.best is not None and not v < self.best["value"]:
            return
        self.best_ckpt.save(self.trainer.iteration)
        self.best = {"iteration": n, "metric": "mmd_ratio", "value": v, "eval": ev}
        atomic_write_json(self.paths.best / "best.json", self.best)

    # ---------------------------------------------------------------- figures
    def write_figures(self, final: bool) -> list:
        from .figures import write_run_figures
        try:
            with isolated_rng(self.spec.seed + 7):
                return write_run_figures(self, final=final)
        except (OSError, ValueError, RuntimeError, TypeError) as e:  # a figure must never kill a run; say so
            print(f"warning: figures failed ({type(e).__name__}: {e})", file=sys.stderr)
            return []

    # ------------------------------------------------------------- divergence
    def _divergence_message(self, e: DivergenceError) -> str:
        rec = self.ckpt.latest()
        where = (f"last good checkpoint: {self.paths.ckpt} (iteration {rec['iteration']})" if rec else
                 "no checkpoint was written before it")
        return (f"training diverged at iteration {e.iteration}: {e.metric} = {e.value}; {where}")

    def _rollback(self, e: DivergenceError) -> None:
        old = self.trainer
        new_cfg, changed = methods.halve_step_sizes(self.cls, old.config)
        rec = self.ckpt.latest()
        self.trainer = self._build(self.cls.Config.from_dict(new_cfg))
        if rec is not None:
            self.ckpt.load()
            for opt in self.trainer.optimizers().values():
                for g in opt.param_groups:
                    if "lr" in g:
                        g["lr"] = g["lr"] * 0.5
        restart = self.trainer.iteration
        self.metrics_log.truncate_from(restart)
        self.layers_log.truncate_from(restart)
        event = {"at_iteration": e.iteration, "metric": e.metric, "value": repr(e.value),
                 "restored_iteration": restart, "halved": {k: list(v) for k, v in changed.items()}}
        self.rollbacks.append(event)
        if rec is not None:  # the restored, halved state becomes the latest checkpoint at once
            self.ckpt.save(self.trainer.iteration)
        cfg = read_json(self.paths.config)
        cfg["trainer"] = self.trainer.config.to_dict()
        cfg["rollbacks"] = self.rollbacks
        atomic_write_json(self.paths.config, cfg)
        self.metrics_log.write({"event": "rollback", **event})
        msg = (f"rollback {len(self.rollbacks)}/{self.spec.max_rollbacks}: {self._divergence_message(e)}; "
               f"restored iteration {restart}, halved " + ", ".join(f"{k} {a:g} -> {b:g}" for k, (a, b) in changed.items()))
        self._say(msg)

    def _say(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ train
    def train(self) -> dict:
        """Train to ``spec.iters`` iterations, then write samples.npy, final.json and the figures."""
        spec = self.spec
        if spec.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self.paths.tensorboard))
        self._t_start = time.perf_counter()
        self._last_log = (self.trainer.iteration, self._t_start)
        start_it = self.trainer.iteration
        if not self.quiet:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.iters, initial=start_it, desc=self.cls.name, file=sys.stderr,
                             dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
        data = self.train_x if self.trainer.requires_data else None
        t_fit, c_fit = time.perf_counter(), time.process_time()
        try:
            while True:
                try:
                    self.trainer.fit(data, self.iters, batch_size=spec.batch_size, log_every=max(self.iters, 1),
                                     ckpt_every=None, out_dir=None, callback=self._on_iter,
                                     max_abs_energy=spec.max_abs_energy)
                    break
                except DivergenceError as e:
                    self.metrics_log.write({"event": "divergence", "at_iteration": e.iteration, "metric": e.metric,
                                            "value": repr(e.value)})
                    if spec.on_divergence == "rollback" and len(self.rollbacks) < spec.max_rollbacks:
                        self._rollback(e)
                        if self._bar is not None:
                            self._bar.n = self.trainer.iteration
                            self._bar.refresh()
                        data = self.train_x if self.trainer.requires_data else None
                        continue
                    extra = (f" (after {len(self.rollbacks)} rollbacks, the maximum)" if spec.on_divergence == "rollback"
                             else "; rerun with --resume DIR --on-divergence rollback, or lower the step sizes")
                    raise RunDiverged(self._divergence_message(e) + extra) from e
        except KeyboardInterrupt:
            rec = self.ckpt.latest()
            where = f"checkpoint at iteration {rec['iteration']}" if rec else "no checkpoint yet"
            raise RunInterrupted(f"interrupted after iteration {self.trainer.iteration} ({where}); continue with: "
                                 f"ebmfast train --resume {self.paths.root}") from None
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self.metrics_log.close()
            self.layers_log.close()
        fit_wall, fit_cpu = time.perf_counter() - t_fit, time.process_time() - c_fit
        return self.finish(start_it, fit_wall, fit_cpu)

    def finish(self, start_it: int, fit_wall: float, fit_cpu: float = 0.0) -> dict:
        spec, tr = self.spec, self.trainer
        rec = self.ckpt.latest()
        if rec is None or rec.get("iteration") != tr.iteration:
            self.ckpt.save(tr.iteration)
        n_run = tr.iteration - start_it
        train_s = max(fit_wall - self._cb_time, 0.0)
        train_cpu = max(fit_cpu - self._cb_cpu, 0.0)
        samples = self.draw_samples_final()
        atomic_save_npy(self.paths.samples, samples.numpy())
        ev = self.evaluator(samples) if self.evaluator is not None else None
        self.last_eval = ev
        if ev is not None:
            self._maybe_best(tr.iteration, ev)
            self.metrics_log.write({"it": tr.iteration - 1, **{f"eval_{k}": v for k, v in ev.items()}, "final": True})
            self.metrics_log.close()
        final = {
            "method": self.cls.name, "data": spec.data, "iterations": tr.iteration, "seed": spec.seed,
            "train_metrics": self.last_metrics, "eval": ev, "best": self.best,
            "train_s": round(train_s, 3), "s_per_iter": (train_s / n_run) if n_run else None,
            "it_per_s": (n_run / train_s) if n_run and train_s > 0 else None,
            "cpu_s_per_iter": (train_cpu / n_run) if n_run else None,
            "overhead_s": round(self._cb_time, 3),
            "backend": backend_used(), "threads": torch.get_num_threads(), "device": spec.device,
            "rollbacks": self.rollbacks, "resumed_from": self.resumed_from,
            "samples": {"file": self.paths.samples.name, "shape": list(samples.shape)},
        }
        atomic_write_json(self.paths.final, final)
        if spec.figures:
            final["figures"] = [str(p) for p in self.write_figures(final=True)]
        if self._tb is not None:
            self._tb.close()
        return final

    def draw_samples_final(self) -> torch.Tensor:
        """samples.npy: ``n_samples`` draws with a fixed seed (identical for a resumed run)."""
        pool = self.trainer.pool_size()
        n = self.spec.n_samples
        if pool is not None and n > pool:
            raise ValueError(f"n_samples={n} > pool {pool}")  # prevented by validation in the CLI
        return self.draw_samples(n, seed=self.spec.seed + 99991)

    def summary(self, final: dict) -> str:
        ev = final.get("eval")
        s = f"{self.cls.name}: {final['iterations']} iterations"
        if final.get("s_per_iter"):
            s += f", {1000 * final['s_per_iter']:.1f} ms/iteration"
        if ev:
            s += ", " + summary_line(ev)
        return s

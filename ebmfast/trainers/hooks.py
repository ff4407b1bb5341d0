"""The hooks that ``Trainer.fit`` runs around each iteration: divergence guard, user callback,
JSONL log, progress bar, checkpoints.

``fit`` is a plain loop::

    for it in range(trainer.iteration, n_iters):
        metrics = trainer.train_step(next_batch(), it)
        for h in hooks: h.check_step(trainer, it, metrics)     # may raise DivergenceError
        trainer.iteration = it + 1
        for h in hooks: h.after_step(trainer, it, metrics)
    for h in hooks: h.on_end(trainer)

A :class:`DivergenceError` raised by ``check_step`` is shown to every hook (``on_divergence``)
before it propagates, so the bad iteration is logged but never checkpointed.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Optional

import torch

from .checkpoint import Checkpointer
from .jsonl import JsonlLog

__all__ = ["Hook", "DivergenceError", "DivergenceGuard", "CallbackHook", "LogHook", "ProgressHook",
           "CheckpointHook"]


class DivergenceError(RuntimeError):
    """Training produced a non-finite metric or parameter, or a runaway mean energy.

    Attributes:
        iteration: 0-based index of the iteration whose step diverged.
        metric: name of the offending metric (``"param:<module>.<name>"`` for a
            parameter, ``"extra:<key>"`` for extra state).
        value: the offending value (a float: nan/inf, or a finite energy beyond max_abs_energy).
        checkpoint: directory of the last good checkpoint (untouched), or None.
    """

    def __init__(self, iteration: int, metric: str, value: float, checkpoint: str | None = None):
        self.iteration, self.metric, self.value, self.checkpoint = iteration, metric, value, checkpoint
        where = f"; last good checkpoint in {checkpoint}" if checkpoint else "; no checkpoint written"
        super().__init__(f"training diverged at iteration {iteration}: {metric} = {value}{where}")


class Hook:
    """Base of the fit hooks; every method is a no-op."""

    def on_start(self, trainer, resumed_from: Optional[int]) -> None:
        """Before the first iteration (``resumed_from``: the checkpoint's iteration, or None)."""

    def check_step(self, trainer, it: int, metrics: Mapping[str, Any]) -> None:
        """Raise :class:`DivergenceError` to reject iteration ``it`` before it is committed."""

    def after_step(self, trainer, it: int, metrics: Mapping[str, Any]) -> None:
        """After iteration ``it`` is committed (``trainer.iteration == it + 1``)."""

    def on_divergence(self, trainer, error: DivergenceError) -> None:
        """A ``check_step`` rejected an iteration; the error propagates afterwards."""

    def on_end(self, trainer) -> None:
        """After the last iteration (not called when the loop raised)."""

    def close(self) -> None:
        """Always called when fit leaves the loop (release files, bars)."""


def _first_nonfinite(t: torch.Tensor) -> float:
    return t[~torch.isfinite(t)].flatten()[0].item()


class DivergenceGuard(Hook):
    """Rejects an iteration whose metrics, parameters or floating extra state are non-finite, or
    whose mean energies (``trainer.energy_metrics``) leave [-max_abs_energy, max_abs_energy]."""

    def __init__(self, max_abs_energy: Optional[float], checkpointer: Optional[Checkpointer] = None):
        self.max_abs_energy = max_abs_energy
        self.checkpointer = checkpointer

    def _last_good(self) -> Optional[str]:
        ck = self.checkpointer
        return str(ck.folder) if ck is not None and ck.latest() is not None else None

    def check_step(self, trainer, it, metrics) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not math.isfinite(v):
                raise DivergenceError(it, k, float(v), self._last_good())
        if self.max_abs_energy is not None:
            # finite but runaway energies: the chains' gradients are then so steep (or flat) that
            # the samples stop moving, and training never recovers (examples/self_adversarial)
            for k in trainer.energy_metrics:
                v = metrics.get(k)
                if isinstance(v, (int, float)) and abs(v) > self.max_abs_energy:
                    raise DivergenceError(it, f"{k} (|value| > max_abs_energy = {self.max_abs_energy:g})",
                                          float(v), self._last_good())
        for mname, m in trainer.modules().items():
            for pname, p in m.named_parameters():
                if not bool(torch.isfinite(p).all()):
                    raise DivergenceError(it, f"param:{mname}.{pname}", _first_nonfinite(p), self._last_good())
        for k, v in trainer.extra_state().items():
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise DivergenceError(it, f"extra:{k}", _first_nonfinite(v), self._last_good())


class CallbackHook(Hook):
    """Calls ``fn(trainer, it, metrics)`` after each committed iteration."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def after_step(self, trainer, it, metrics) -> None:
        self.fn(trainer, it, metrics)


class LogHook(Hook):
    """Keeps one record ``{"it", "wall_s", **metrics}`` at the first, every ``log_every``-th and the
    last iteration in ``history`` and, with ``path``, appends it to a JSONL file. On resume the
    file is cut back to the checkpoint; a fresh run (iteration 0) starts a fresh file."""

    def __init__(self, n_iters: int, log_every: int, path=None):
        self.n_iters, self.log_every = n_iters, log_every
        self.log = JsonlLog(path) if path is not None else None
        self.history: list[dict] = []
        self.t0 = time.perf_counter()

    def on_start(self, trainer, resumed_from) -> None:
        if self.log is not None:
            if resumed_from is not None:  # records past the checkpoint would be duplicated
                self.log.truncate_from(resumed_from)
            elif trainer.iteration == 0:
                self.log.clear()
        self.t0 = time.perf_counter()

    def is_log_point(self, it: int) -> bool:
        return it == 0 or (it + 1) % self.log_every == 0 or it == self.n_iters - 1

    def after_step(self, trainer, it, metrics) -> None:
        if self.is_log_point(it):
            rec = {"it": it, "wall_s": round(time.perf_counter() - self.t0, 4), **metrics}
            self.history.append(rec)
            if self.log is not None:
                self.log.write(rec)

    def on_divergence(self, trainer, error) -> None:
        if self.log is not None:
            self.log.write({"it": error.iteration, "diverged": error.metric, "value": repr(error.value)})

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


class ProgressHook(Hook):
    """A tqdm bar (first three metrics shown at the log points of ``log_hook``)."""

    def __init__(self, desc: str, n_iters: int, log_hook: LogHook):
        self.desc, self.n_iters, self.log_hook = desc, n_iters, log_hook
        self.bar = None

    def on_start(self, trainer, resumed_from) -> None:
        from tqdm.auto import tqdm
        self.bar = tqdm(desc=self.desc, initial=trainer.iteration, total=self.n_iters)

    def after_step(self, trainer, it, metrics) -> None:
        self.bar.update(1)
        if self.log_hook.is_log_point(it):
            self.bar.set_postfix({k: v for k, v in list(metrics.items())[:3]})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class CheckpointHook(Hook):
    """``checkpointer.save`` every ``every`` iterations (0 or None: never during the loop) and at the end."""

    def __init__(self, checkpointer: Checkpointer, every: Optional[int]):
        self.checkpointer, self.every = checkpointer, every

    def after_step(self, trainer, it, metrics) -> None:
        if self.every and trainer.iteration % self.every == 0:
            self.checkpointer.save(trainer.iteration)

    def on_end(self, trainer) -> None:
        if (self.checkpointer.latest() or {}).get("iteration") != trainer.iteration:
            self.checkpointer.save(trainer.iteration)

"""Run-directory layout, creation rules and re-opening a finished or interrupted run.

Layout of ``DIR``::

    config.json      resolved run options + trainer hyper-parameters + data fingerprint + versions
    metrics.jsonl    one record per log point: {"it", "wall_s", "it_per_s", <trainer metrics>,
                     "grad_norm", "energy_gap", "eval_*"}; events (divergence, rollback, resume)
                     have "event" and no "it"
    layers.jsonl     per-layer weight spectral norms and gradient norms at log points
    final.json       final metrics, timing, backend, rollbacks
    samples.npy      [n_samples, D] generated samples in the data's coordinates
    ckpt/            trainer checkpoints (ebmfast.trainers.checkpoint: safetensors + state, atomic; last N kept)
    best/            the checkpoint with the lowest MMD ratio so far, and best.json
    figures/         PNG figures (matplotlib Agg)

An existing directory is never overwritten without ``overwrite=True``, and even then
only if it is empty or an ebmfast run (has config.json): ``--out .`` cannot wipe a
project.
"""
from __future__ import annotations

import inspect
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from .io import read_json
from .spec import RunConfig, SpecError, build_run_config, build_trainer_config

__all__ = ["RunPaths", "prepare_run_dir", "open_run", "build_trainer", "OpenedRun", "torch_dtype"]


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def layers(self) -> Path:
        return self.root / "layers.jsonl"

    @property
    def final(self) -> Path:
        return self.root / "final.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples.npy"

    @property
    def ckpt(self) -> Path:
        return self.root / "ckpt"

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"


def prepare_run_dir(path: str | Path, overwrite: bool) -> RunPaths:
    """Check that ``path`` may receive a new run (call before creating anything); returns its paths.

    Raises SpecError when the directory exists and is not empty, unless ``overwrite``
    (then it must be an ebmfast run directory, which is deleted).
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise SpecError(f"--out {str(root)!r} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise SpecError(f"run directory {str(root)!r} already exists; pass --overwrite to replace it, "
                            f"--resume {str(root)} to continue it, or choose another --out")
        if not (root / "config.json").is_file():
            raise SpecError(f"--overwrite refused: {str(root)!r} is not an ebmfast run directory (no config.json); "
                            "delete it yourself or choose another --out")
    return RunPaths(root)


def create_run_dir(paths: RunPaths, overwrite: bool) -> None:
    if paths.root.is_dir() and any(paths.root.iterdir()) and overwrite:
        shutil.rmtree(paths.root)
    paths.root.mkdir(parents=True, exist_ok=True)


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def build_trainer(cls: type, config: Any, spec: RunConfig, dim: int, target=None):
    """Instantiate ``cls`` for a run; ``target`` is passed to trainers that accept it (jko)."""
    kw: dict[str, Any] = dict(dim=dim, device=spec.device, dtype=torch_dtype(spec.dtype), seed=spec.seed,
                              backend=spec.backend)
    if target is not None:
        params = inspect.signature(cls.__init__).parameters
        if "target" not in params:
            raise SpecError(f"--target is not used by method {cls.name!r}")
        kw["target"] = target
    return cls(config, **kw)


@dataclass
class OpenedRun:
    """A run directory re-opened for sampling / evaluation / resuming."""

    paths: RunPaths
    record: dict              # config.json
    spec: RunConfig
    cls: type
    trainer_config: Any       # from the checkpoint when there is one (it is the truth after rollbacks)
    checkpoint: Optional[dict]  # latest.json record used, or None


def read_run_config(root: str | Path) -> dict:
    paths = RunPaths(Path(root))
    if not paths.root.is_dir():
        raise SpecError(f"run directory {str(paths.root)!r} does not exist")
    if not paths.config.is_file():
        raise SpecError(f"{str(paths.root)!r} is not an ebmfast run directory (no config.json)")
    try:
        return read_json(paths.config)
    except (OSError, ValueError) as e:  # ValueError: not JSON / not UTF-8
        raise SpecError(f"{str(paths.config)!r} is unreadable ({type(e).__name__}: {e})") from e


def open_run(root: str | Path, which: str = "last") -> OpenedRun:
    """Re-open a run: its spec, trainer class and the trainer config of checkpoint ``which`` ("last"/"best")."""
    from ..trainers import get_trainer, latest_checkpoint, load_checkpoint_files
    rec = read_run_config(root)
    paths = RunPaths(Path(root))
    spec = build_run_config(rec["run"])
    try:
        cls = get_trainer(spec.method)
    except ValueError as e:
        raise SpecError(str(e)) from e
    ckdir = paths.ckpt if which == "last" else paths.best
    ck = latest_checkpoint(ckdir) if ckdir.is_dir() else None
    cfg_dict = rec["trainer"]
    if ck is not None:
        _, state = load_checkpoint_files(ckdir)
        cfg_dict = state["config"]
    cfg = build_trainer_config(cls, cfg_dict)
    return OpenedRun(paths, rec, spec, cls, cfg, ck)


def load_trained(run: OpenedRun, which: str = "last"):
    """(trainer with the checkpoint loaded, RunData). Raises SpecError if the run has no checkpoint."""
    from .data import load_run_data, resolve_target
    if run.checkpoint is None:
        where = run.paths.ckpt if which == "last" else run.paths.best
        raise SpecError(f"run {str(run.paths.root)!r} has no checkpoint in {str(where)!r} yet")
    spec = run.spec
    data = load_run_data(spec.data, spec.n_data, spec.seed if spec.data_seed is None else spec.data_seed,
                         expect_sha256=run.record.get("data", {}).get("sha256")) if spec.data else None
    dim = data.dim if data is not None else int(run.record["dim"])
    tr = build_trainer(run.cls, run.trainer_config, spec, dim, target=resolve_target(spec.target))
    tr.load_checkpoint(run.paths.ckpt if which == "last" else run.paths.best)
    return tr, data

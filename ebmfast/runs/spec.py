"""Run options: what a training run is, validated before anything runs.

A run is described by two validated dataclasses:

- :class:`RunConfig`: method, data, iteration count, seed, logging / checkpoint /
  figure cadence, divergence policy... (the CLI flags of ``ebmfast train``);
- the trainer's own ``Config`` (``get_trainer(method).Config``): the method's
  hyper-parameters (``--set key=value`` or the ``[trainer]`` table of a config file).

Both derive from :class:`ebmfast.trainers.config.TrainerConfig`, so an unknown key, a
wrong type or an out-of-range value raises an error that names the key, the allowed
range and the value. Precedence, lowest first::

    dataclass defaults < CLI presets (see resolve_trainer_config) < config file < flags < --set

Config files are TOML (``tomllib``) or YAML (``pyyaml``)::

    method = "ot-ebm"          # run options at the top level (dashes or underscores)
    data = "grid9"
    iters = 2000
    [trainer]                  # the method's hyper-parameters
    tau = 20.0
    lipschitz = 1.0
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..trainers.config import TrainerConfig, param

__all__ = ["RunConfig", "SpecError", "parse_value", "parse_set_args", "load_config_file", "coerce_for",
           "RUN_KEYS", "rename_run_error", "DEFAULT_ITERS"]

DEFAULT_ITERS = 2000  # paper 000 / 003 toy runs


class SpecError(ValueError):
    """A bad run specification (unknown key, wrong type, out of range, unreadable file...): exit code 2."""


@dataclass
class RunConfig(TrainerConfig):
    """Options of one training run (everything that is not a hyper-parameter of the method)."""

    method: str = param(None, optional=True, kind=str, doc="trainer name (ebmfast.trainers.available_trainers())")
    data: str = param(None, optional=True, kind=str, doc="data set name (ebmfast.data.DATASETS) or .npy/.pt [N, D] path")
    target: str = param(None, optional=True, kind=str,
                        doc="energy target for data-free trainers (jko functional='kl'): ring8, grid9, grid25 "
                            "or module:callable")
    dim: int = param(None, ge=1, optional=True, kind=int, doc="event size when there is no --data (jko with --target)")
    iters: int = param(None, ge=1, optional=True, kind=int, doc="total training iterations (default 2000; jko: n_jko_steps*j1)")
    seed: int = param(0, ge=0, doc="seed of the trainer (and of the data unless data_seed)")
    batch_size: int = param(200, ge=1, optional=True, kind=int, doc="data mini-batch per iteration (None = all)")
    n_data: int = param(None, ge=4, optional=True, kind=int, doc="points drawn from a toy set (default 10000) / rows of a file")
    data_seed: int = param(None, ge=0, optional=True, kind=int, doc="seed of the data draw (default: seed)")
    data_scale: float = param(1.0, gt=0.0, doc="the trainer sees data * data_scale; samples are mapped back")
    image_shape: tuple = param(None, ge=1, optional=True, kind=tuple,
                               doc="C,H,W or H,W of image rows [N, C*H*W] (figures and .png grids)")
    n_samples: int = param(2000, ge=2, doc="samples written to samples.npy at the end")
    log_every: int = param(None, ge=1, optional=True, kind=int, doc="metrics.jsonl cadence (default iters/100)")
    ckpt_every: int = param(None, ge=1, optional=True, kind=int, doc="checkpoint cadence (default iters/10)")
    keep_last: int = param(3, ge=1, doc="checkpoints kept in ckpt/ (the best one is kept in best/)")
    eval_every: int = param(None, ge=0, optional=True, kind=int,
                            doc="MMD evaluation / best-checkpoint cadence (default iters/10; 0 = only at the end)")
    eval_samples: int = param(1000, ge=10, doc="samples drawn for each periodic evaluation")
    fig_every: int = param(None, ge=0, optional=True, kind=int,
                           doc="figure cadence (default iters/4 for runs >= 1000 iterations; 0 = only at the end)")
    figures: bool = param(True, doc="write figures (matplotlib Agg)")
    on_divergence: str = param("stop", choices=("stop", "rollback"),
                               doc="stop, or restore the last good checkpoint and halve the step sizes")
    max_rollbacks: int = param(3, ge=0, doc="rollbacks allowed before giving up")
    max_abs_energy: float = param(1e6, gt=0.0, optional=True, kind=float,
                                  doc="diverged when a mean energy (e_data, e_sample) leaves [-V, V]; none = off")
    threads: int = param(None, ge=1, optional=True, kind=int, doc="torch threads (default 1 for D <= 16, else torch's)")
    device: str = param("cpu", kind=str, doc="torch device")
    dtype: str = param("float32", choices=("float32", "float64"))
    backend: str = param("auto", choices=("auto", "cpu", "cuda", "triton", "ref"), doc="ebmfast sampler backend")
    tensorboard: bool = param(False, doc="also write TensorBoard events (needs the tensorboard package)")

    def validate(self) -> "RunConfig":
        super().validate()
        if self.image_shape is not None:
            if len(self.image_shape) not in (2, 3) or any(not isinstance(s, int) or isinstance(s, bool)
                                                          for s in self.image_shape):
                raise SpecError(f"image_shape (--image-shape) must be 2 or 3 positive ints (H,W or C,H,W), "
                                f"got {self.image_shape!r}")
        return self


RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))


def rename_run_error(e: Exception) -> str:
    """'RunConfig.iters must ...' -> 'iters (--iters) must ...': name the flag the user typed."""
    msg = str(e)
    for k in sorted(RUN_KEYS, key=len, reverse=True):
        msg = msg.replace(f"RunConfig.{k}", f"{k} (--{k.replace('_', '-')})")
    return msg.replace("RunConfig:", "run options:")


# ------------------------------------------------------------------ parsing
def parse_value(text: str) -> Any:
    """A command-line value as python: none/null -> None, true/false, int, float (1e-3, inf), a,b,c -> tuple, else str."""
    s = text.strip()
    low = s.lower()
    if low in ("none", "null", "~"):
        return None
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if s.startswith("[") and s.endswith("]"):
        inner = s[1:-1].strip()
        return tuple(parse_value(p) for p in inner.split(",")) if inner else ()
    if "," in s:
        return tuple(parse_value(p) for p in s.split(","))
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def _field_meta(cls: type, key: str) -> dict | None:
    for f in dataclasses.fields(cls):
        if f.name == key:
            return f.metadata.get("ebmfast")
    return None


def coerce_for(cls: type, key: str, value: Any) -> Any:
    """Friendly, lossless coercions before validation: int -> float for float fields, numeric strings
    (YAML reads '1e-3' as a string) -> numbers, a scalar -> 1-tuple for tuple fields. Anything else is
    left as is, so ``validate()`` reports it."""
    m = _field_meta(cls, key)
    if m is None:
        return value
    kind = m.get("kind")
    if isinstance(value, str) and kind in (int, float):
        v = parse_value(value)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            value = v
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and math.isfinite(value) and value.is_integer() and \
            isinstance(value, float) and abs(value) < 2**53:
        # '1e3' typed for an int option: exact, so accept; 2.5 stays a float and is rejected by validate()
        return int(value)
    if kind is tuple and value is not None and not isinstance(value, (tuple, list)):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    return value


def parse_set_args(items: list[str] | None) -> dict[str, Any]:
    """``["tau=20", "lr=1e-3"]`` -> ``{"tau": 20, "lr": 0.001}`` (later items win)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SpecError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise SpecError(f"--set expects key=value with a non-empty key, got {item!r}")
        out[k] = parse_value(v)
    return out


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config file into a dict (must be a mapping)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"--config: file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise SpecError(f"--config: {str(p)!r} must end in .toml, .yaml, .yml or .json, got {suffix!r}")
    parse_errors: tuple = (OSError, ValueError)  # TOML and JSON decode errors and bad UTF-8 are ValueErrors
    try:
        if suffix == ".toml":
            import tomllib
            with open(p, "rb") as f:
                d = tomllib.load(f)
        elif suffix == ".json":
            import json
            with open(p) as f:
                d = json.load(f)
        else:
            try:
                import yaml
            except ImportError as e:
                raise SpecError(f"--config: {str(p)!r} is YAML, which needs the pyyaml package ({e})") from e
            parse_errors += (yaml.YAMLError,)
            with open(p) as f:
                d = yaml.safe_load(f)
    except parse_errors as e:
        raise SpecError(f"--config: could not parse {str(p)!r} ({type(e).__name__}: {e})") from e
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise SpecError(f"--config: {str(p)!r} must hold a mapping of options, got {type(d).__name__}")
    return dict(d)


def split_file_config(d: Mapping[str, Any], path: str = "config file") -> tuple[dict, dict]:
    """(run options, trainer options) of a config-file mapping; unknown top-level keys are errors."""
    run, trainer = {}, {}
    for k, v in d.items():
        key = str(k).replace("-", "_")
        if key in ("trainer", "method_options", "options"):
            if not isinstance(v, Mapping):
                raise SpecError(f"{path}: [{k}] must be a table/mapping of hyper-parameters, got {type(v).__name__}")
            trainer.update(v)
        elif key in RUN_KEYS:
            run[key] = v
        else:
            raise SpecError(f"{path}: unknown key {k!r}; valid top-level keys: {', '.join(RUN_KEYS)}, "
                            f"and a [trainer] table for the method's hyper-parameters")
    return run, trainer


def build_run_config(values: Mapping[str, Any]) -> RunConfig:
    """RunConfig from a mapping, coerced then validated; errors name the flag."""
    kw = {k: coerce_for(RunConfig, k, v) for k, v in values.items()}
    try:
        return RunConfig.from_dict(kw)
    except (TypeError, ValueError) as e:
        raise SpecError(rename_run_error(e)) from e


def build_trainer_config(cls: type, values: Mapping[str, Any]):
    """``cls.Config`` from a mapping (coerced, validated). Errors name the method, the key and the range."""
    cfg_cls = cls.Config
    kw = {k: coerce_for(cfg_cls, k, v) for k, v in values.items()}
    try:
        return cfg_cls.from_dict(kw)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{cls.name} option error: {e}"
                        + ("" if "valid keys" in str(e) else f" (list them with: ebmfast train --method {cls.name} "
                                                              "--list-options)")) from e

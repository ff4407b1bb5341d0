"""Trainer base class, config validation, checkpoints and the trainer registry.

Every ebmfast trainer subclasses :class:`Trainer` and implements the hooks
``build``, ``train_step``, ``sample``, ``modules``, ``optimizers`` and (when it
carries state across iterations) ``extra_state`` / ``load_extra_state``. The
base provides ``fit``: seeding, batching, JSONL logging, atomic checkpoints,
resume and a divergence guard.

Config (hyper-parameters)
    A trainer's ``Config`` is a ``@dataclass`` deriving from
    :class:`TrainerConfig`; fields declared with :func:`param` carry their
    allowed range, so ``validate()`` is one generic loop and every error names
    the key, the range and the value::

        @dataclass
        class OTEBMConfig(TrainerConfig):
            tau: float = param(20.0, ge=0.0, doc="penalty weight")
        OTEBMConfig(tau=-1).validate()
        # ValueError: OTEBMConfig.tau (penalty weight) must be >= 0.0 (allowed range [0.0, inf)), got -1
        OTEBMConfig.from_dict({"tua": 3})
        # ValueError: OTEBMConfig: unknown key 'tua'; valid keys: tau, ...

Reproducibility
    ``__init__`` seeds torch / numpy / random with ``seed`` and calls ``build``;
    the RNG state right after ``build`` is remembered and restored when ``fit``
    starts at iteration 0, so a run does not depend on what else touched the
    global RNGs in between. Mini-batches are drawn with a trainer-owned
    ``torch.Generator``. A checkpoint stores every RNG state (torch CPU, CUDA
    if initialised, numpy, python ``random``, the batch generator), so
    ``fit(..., resume=True)`` continues bit-identically on CPU.

Checkpoint layout (``<out_dir>/ckpt`` when ``fit`` writes them)::

    weights-00000500.safetensors   # every module's state_dict, "<module>.<key>"
    state-00000500.pt              # torch.save: iteration, config, optimisers, RNG, extra_state
    latest.json                    # {"iteration": 500, "weights": ..., "state": ...}

    Each file is written to a temporary name, fsync'ed, then ``os.replace``-d;
    ``latest.json`` is replaced last, so it is the commit point: a crash at any
    moment leaves ``latest.json`` pointing at a complete older pair. Only the
    newest ``keep_checkpoints`` pairs are kept.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "Trainer", "TrainerConfig", "param", "DivergenceError", "TRAINERS",
    "register_trainer", "get_trainer", "available_trainers", "seed_everything",
    "load_checkpoint_files", "latest_checkpoint",
]

_MISSING = dataclasses.MISSING


def param(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: Sequence[Any] | None = None,
    optional: bool = False,
    kind: type | None = None,
    doc: str = "",
) -> Any:
    """Declare a validated config field.

    Args:
        default: default value. Lists are stored as tuples (dataclass defaults
            must be immutable).
        gt, ge, lt, le: numeric bounds (strict / inclusive). For tuple fields
            the bounds apply to every element.
        choices: allowed values (strings, usually).
        optional: ``None`` is an allowed value.
        kind: expected python type (``float``, ``int``, ``bool``, ``str``,
            ``tuple``); inferred from ``default`` when omitted.
        doc: one line shown in error messages and ``describe()``.
    """
    if isinstance(default, list):
        default = tuple(default)
    if kind is None and default is not None:
        kind = type(default)
    meta = dict(gt=gt, ge=ge, lt=lt, le=le, choices=tuple(choices) if choices is not None else None,
                optional=optional or default is None, kind=kind, doc=doc)
    return dataclasses.field(default=default, metadata={"ebmfast": meta})


def _range_text(m: dict) -> str:
    lo = m["gt"] if m["gt"] is not None else m["ge"]
    hi = m["lt"] if m["lt"] is not None else m["le"]
    left = "(" if m["gt"] is not None or lo is None else "["
    right = ")" if m["lt"] is not None or hi is None else "]"
    return f"{left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{right}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class TrainerConfig:
    """Base of every trainer's hyper-parameter dataclass (no fields of its own)."""

    # ------------------------------------------------------------------ checks
    def _check_scalar(self, key: str, v: Any, m: dict) -> None:
        cls = type(self).__name__
        if m["choices"] is not None:
            if v not in m["choices"]:
                raise ValueError(f"{cls}.{key} must be one of {list(m['choices'])}, got {v!r}")
            return
        kind = m["kind"]
        if kind is bool:
            if not isinstance(v, bool):
                raise TypeError(f"{cls}.{key} must be a bool, got {type(v).__name__} {v!r}")
            return
        if kind is int and not (isinstance(v, int) and not isinstance(v, bool)):
            raise TypeError(f"{cls}.{key} must be an int, got {type(v).__name__} {v!r}")
        if kind is float and not _is_number(v):
            raise TypeError(f"{cls}.{key} must be a number, got {type(v).__name__} {v!r}")
        if kind is str and not isinstance(v, str):
            raise TypeError(f"{cls}.{key} must be a str, got {type(v).__name__} {v!r}")
        if _is_number(v):
            if isinstance(v, float) and math.isnan(v):
                raise ValueError(f"{cls}.{key} must be a number in {_range_text(m)}, got nan")
            bad = ((m["gt"] is not None and not v > m["gt"]) or (m["ge"] is not None and not v >= m["ge"])
                   or (m["lt"] is not None and not v < m["lt"]) or (m["le"] is not None and not v <= m["le"]))
            if bad:
                op = (f"> {m['gt']}" if m["gt"] is not None and not v > m["gt"] else
                      f">= {m['ge']}" if m["ge"] is not None and not v >= m["ge"] else
                      f"< {m['lt']}" if m["lt"] is not None and not v < m["lt"] else f"<= {m['le']}")
                doc = f" ({m['doc']})" if m["doc"] else ""
                raise ValueError(f"{cls}.{key}{doc} must be {op} (allowed range {_range_text(m)}), got {v!r}")

    def validate(self) -> "TrainerConfig":
        """Check every field against its declared type/range; returns self.

        Raises:
            TypeError / ValueError naming ``<Config>.<key>``, the allowed range
            or choices, and the offending value.
        """
        for f in dataclasses.fields(self):
            m = f.metadata.get("ebmfast")
            if m is None:
                continue
            v = getattr(self, f.name)
            if v is None:
                if not m["optional"]:
                    raise ValueError(f"{type(self).__name__}.{f.name} must not be None")
                continue
            if m["kind"] is tuple or isinstance(v, (tuple, list)):
                if not isinstance(v, (tuple, list)):
                    raise TypeError(f"{type(self).__name__}.{f.name} must be a tuple, got "
                                    f"{type(v).__name__} {v!r}")
                if isinstance(v, list):
                    object.__setattr__(self, f.name, tuple(v))
                sub = dict(m, kind=None, choices=None)
                for i, e in enumerate(v):
                    if not _is_number(e) and not isinstance(e, str):
                        raise TypeError(f"{type(self).__name__}.{f.name}[{i}] must be a number, got {e!r}")
                    self._check_scalar(f"{f.name}[{i}]", e, sub)
                continue
            self._check_scalar(f.name, v, m)
        return self

    # ------------------------------------------------------------ conversion
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "TrainerConfig":
        """Build and validate a config from a mapping; unknown keys are rejected."""
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict expects a mapping, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown key{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(repr(k) for k in unknown)}; valid keys: {', '.join(names)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw).validate()

    def to_dict(self) -> dict:
        """Plain-python dict of the fields (tuples kept), suitable for json/torch.save."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def describe(cls) -> str:
        """One line per key: name, default, allowed range/choices, doc."""
        lines = []
        for f in dataclasses.fields(cls):
            m = f.metadata.get("ebmfast", {})
            rng = (f"one of {list(m['choices'])}" if m.get("choices") else
                   _range_text(m) if m and any(m[k] is not None for k in ("gt", "ge", "lt", "le")) else "")
            lines.append(f"{f.name} = {f.default!r}  {rng}  {m.get('doc', '')}".rstrip())
        return "\n".join(lines)


# =====================================================================  errors
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


# ========================================================================= RNG
def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and, if present, CUDA)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _get_rng_state() -> dict:
    """All global RNG states as tensors / plain python (torch.load weights_only-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    st = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: Mapping) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = st["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# ================================================================ checkpoints
def _fsync_dir(path: Path) -> None:
    try:  # directory fsync makes the rename durable; not supported everywhere (Windows)
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via ``path.tmp`` + fsync + os.replace."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def latest_checkpoint(path_dir: str | os.PathLike) -> dict | None:
    """The committed ``latest.json`` record of a checkpoint directory, or None."""
    p = Path(path_dir) / "latest.json"
    if not p.is_file():
        return None
    with open(p) as f:
        return json.load(f)


def load_checkpoint_files(path_dir: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """Read the latest committed checkpoint: (flat weights dict, state dict)."""
    from safetensors.torch import load_file

    rec = latest_checkpoint(path_dir)
    if rec is None:
        raise FileNotFoundError(f"no checkpoint in {path_dir!s} (latest.json missing)")
    d = Path(path_dir)
    weights = load_file(str(d / rec["weights"]))
    state = torch.load(d / rec["state"], map_location="cpu", weights_only=True)
    if state.get("iteration") != rec["iteration"]:
        raise RuntimeError(f"checkpoint {d} is inconsistent: latest.json says iteration {rec['iteration']}, "
                           f"{rec['state']} says {state.get('iteration')}")
    return weights, state


# ================================================================== registry
TRAINERS: dict[str, type] = {}
_IMPORT_ERRORS: dict[str, str] = {}
_DISCOVERED = False


def register_trainer(cls: type) -> type:
    """Class decorator: add a :class:`Trainer` subclass to ``TRAINERS`` under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Trainer)):
        raise TypeError(f"register_trainer expects a Trainer subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__}.name must be a non-empty str, got {name!r}")
    cfg = getattr(cls, "Config", None)
    if not (isinstance(cfg, type) and issubclass(cfg, TrainerConfig) and dataclasses.is_dataclass(cfg)):
        raise TypeError(f"{cls.__name__}.Config must be a @dataclass subclass of TrainerConfig, got {cfg!r}")
    old = TRAINERS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"trainer name {name!r} already registered by {old.__module__}.{old.__qualname__}")
    TRAINERS[name] = cls
    return cls


def _discover() -> None:
    """Import every trainer module of this package once (each registers itself).

    A module that fails to import is remembered, not raised, so one broken
    trainer does not take the others down; ``get_trainer`` reports it.
    """
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import importlib
    import pkgutil

    pkg_dir = Path(__file__).resolve().parent
    for info in pkgutil.iter_modules([str(pkg_dir)]):
        if info.name.startswith("_") or info.name == "base":
            continue
        mod = f"{__package__}.{info.name}"
        try:
            importlib.import_module(mod)
        except Exception as e:  # reported by get_trainer, never swallowed silently
            _IMPORT_ERRORS[info.name] = f"{type(e).__name__}: {e}"


def available_trainers() -> list[str]:
    """Sorted names of every registered trainer (after importing all trainer modules)."""
    _discover()
    return sorted(TRAINERS)


def get_trainer(name: str) -> type:
    """The trainer class registered as ``name`` (e.g. "mle", "ot-ebm", "w-gcn").

    Raises:
        ValueError listing the valid names (and any trainer module that failed to import).
    """
    if not isinstance(name, str):
        raise TypeError(f"get_trainer(name) expects a str, got {type(name).__name__}")
    if name not in TRAINERS:
        _discover()
    if name not in TRAINERS:
        msg = f"unknown trainer {name!r}; valid names: {', '.join(sorted(TRAINERS)) or '(none)'}"
        if _IMPORT_ERRORS:
            msg += "; modules that failed to import: " + "; ".join(f"{k} ({v})" for k, v in _IMPORT_ERRORS.items())
        raise ValueError(msg)
    return TRAINERS[name]


# =================================================================== Trainer
class Trainer:
    """Base class of every ebmfast trainer.

    Subclass hooks (see the module docstring of each trainer for its method):
        build()                          create modules, optimisers, particles
        train_step(batch, it) -> dict    one iteration; returns float metrics
        sample(n) -> Tensor [n, *event_shape]
        modules() -> dict[str, nn.Module]           saved with safetensors
        optimizers() -> dict[str, Optimizer]        saved with torch.save
        extra_state() -> dict[str, Tensor]          particles, buffers, ...
        load_extra_state(state)

    Args:
        config: a ``cls.Config`` instance, a dict (``Config.from_dict``), or None
            for the defaults. Validated here, before anything is built.
        dim: event size (int, e.g. 2 for 2-D toys) or event shape (tuple, e.g.
            (3, 32, 32) for images). ``self.event_shape`` is always a tuple.
        device, dtype: where modules/particles live.
        seed: seeds every RNG before ``build`` (see "Reproducibility").
        backend: passed to ``ebmfast.sample`` ("auto", "ref", "triton", ...).

    Attributes:
        iteration: number of completed iterations (0 for a fresh trainer).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = TrainerConfig
    keep_checkpoints: ClassVar[int] = 2
    #: set False in trainers that train without data (JKO with a KL target)
    requires_data: ClassVar[bool] = True
    #: metrics holding mean energies, checked against fit(max_abs_energy=...) when present
    energy_metrics: ClassVar[tuple[str, ...]] = ("e_data", "e_sample")

    def __init__(self, config: Any = None, dim: int | Sequence[int] = 2, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, seed: int = 0, backend: str = "auto"):
        if config is None:
            config = self.Config()
        elif isinstance(config, Mapping):
            config = self.Config.from_dict(config)
        elif not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__}: config must be a {self.Config.__name__}, a dict or None, "
                            f"got {type(config).__name__}")
        self.config = config.validate()
        if isinstance(dim, bool) or not isinstance(dim, (int, tuple, list, torch.Size)):
            raise TypeError(f"dim must be an int or a tuple of ints, got {type(dim).__name__} {dim!r}")
        shape = (dim,) if isinstance(dim, int) else tuple(dim)
        if not shape or any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in shape):
            raise ValueError(f"dim must be a positive int or a tuple of positive ints, got {dim!r}")
        self.event_shape: tuple[int, ...] = shape
        self.dim: int = int(math.prod(shape))
        self.device = torch.device(device)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str, got {type(backend).__name__}")
        self.backend = backend
        self.iteration = 0
        seed_everything(seed)
        self._batch_gen = torch.Generator().manual_seed(seed)
        self.build()
        self._rng_after_build = _get_rng_state()

    # ------------------------------------------------------------------ hooks
    def build(self) -> None:
        """Create modules, optimisers and particles (called once by ``__init__``)."""
        raise NotImplementedError

    def train_step(self, batch: Tensor | None, it: int) -> dict[str, float]:
        """One training iteration on ``batch`` [B, *event_shape]; returns float metrics."""
        raise NotImplementedError

    def sample(self, n: int) -> Tensor:
        """``n`` generated samples [n, *event_shape] in data coordinates (detached)."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """Every trainable/stateful module, by name (saved with safetensors)."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser, by name (state saved with torch.save)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Tensors (or plain python values) that persist across iterations: particles, buffers..."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``extra_state``."""
        if state:
            raise NotImplementedError(f"{type(self).__name__} saved extra state {sorted(state)} "
                                      "but does not implement load_extra_state")

    # -------------------------------------------------------------- helpers
    def parameters(self):
        """All parameters of ``modules()`` (each once)."""
        seen = set()
        for m in self.modules().values():
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def _check_finite(self, it: int, metrics: Mapping[str, float], ckpt: str | None,
                      max_abs_energy: float | None = None) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not math.isfinite(v):
                raise DivergenceError(it, k, float(v), ckpt)
        if max_abs_energy is not None:
            # finite but runaway energies: the chains' gradients are then so steep (or flat) that
            # the samples stop moving, and training never recovers (examples/self_adversarial)
            for k in self.energy_metrics:
                v = metrics.get(k)
                if isinstance(v, (int, float)) and abs(v) > max_abs_energy:
                    raise DivergenceError(it, f"{k} (|value| > max_abs_energy = {max_abs_energy:g})", float(v), ckpt)
        for mname, m in self.modules().items():
            for pname, p in m.named_parameters():
                if not bool(torch.isfinite(p).all()):
                    bad = p[~torch.isfinite(p)].flatten()[0].item()
                    raise DivergenceError(it, f"param:{mname}.{pname}", bad, ckpt)
        for k, v in self.extra_state().items():
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                bad = v[~torch.isfinite(v)].flatten()[0].item()
                raise DivergenceError(it, f"extra:{k}", bad, ckpt)

    # ----------------------------------------------------------- checkpoints
    def save_checkpoint(self, path_dir: str | os.PathLike, it: int | None = None) -> Path:
        """Atomically write a checkpoint of the current state into ``path_dir``.

        Args:
            path_dir: directory (created if needed).
            it: iteration count to record (default ``self.iteration``: the
                number of completed iterations).
        Returns:
            the directory.
        """
        from safetensors.torch import save as st_save

        it = self.iteration if it is None else int(it)
        d = Path(path_dir)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for mname, m in self.modules().items():
            for k, v in m.state_dict().items():
                # clone: safetensors refuses shared / non-contiguous storage
                tensors[f"{mname}.{k}"] = v.detach().to("cpu").clone().contiguous()
        state = {
            "iteration": it,
            "trainer": self.name,
            "config": self.config.to_dict(),
            "event_shape": list(self.event_shape),
            "seed": self.seed,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "rng": _get_rng_state(),
            "batch_gen": self._batch_gen.get_state(),
            "extra": self.extra_state(),
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        # a fresh token per save: saving the same iteration twice never overwrites the committed pair
        # (os.urandom, not the seeded RNGs, so checkpointing does not change the run)
        tag = f"{it:08d}-{os.urandom(4).hex()}"
        wname, sname = f"weights-{tag}.safetensors", f"state-{tag}.pt"
        _atomic_write_bytes(d / wname, st_save(tensors, metadata={"iteration": str(it), "trainer": self.name}))
        _atomic_write_bytes(d / sname, buf.getvalue())
        _fsync_dir(d)
        prev = latest_checkpoint(d)
        kept = ([] if prev is None else prev.get("previous", []) + [[prev["weights"], prev["state"]]])
        kept = kept[-(self.keep_checkpoints - 1):] if self.keep_checkpoints > 1 else []
        rec = {"iteration": it, "weights": wname, "state": sname, "trainer": self.name, "time": time.time(),
               "previous": kept}
        _atomic_write_bytes(d / "latest.json", json.dumps(rec).encode())  # commit point
        _fsync_dir(d)
        self._prune_checkpoints(d)
        return d

    @staticmethod
    def _prune_checkpoints(d: Path) -> None:
        """Delete checkpoint files that latest.json no longer references (and stale .tmp files)."""
        rec = latest_checkpoint(d)
        if rec is None:
            return
        live = {rec["weights"], rec["state"]} | {n for pair in rec.get("previous", []) for n in pair}
        for p in list(d.glob("weights-*.safetensors*")) + list(d.glob("state-*.pt*")):
            if p.name not in live:
                p.unlink(missing_ok=True)

    def load_checkpoint(self, path_dir: str | os.PathLike) -> int:
        """Restore modules, optimisers, RNG states and extra state; returns the iteration."""
        weights, state = load_checkpoint_files(path_dir)
        if state.get("trainer") != self.name:
            raise ValueError(f"checkpoint in {path_dir} was written by trainer {state.get('trainer')!r}, "
                             f"not {self.name!r}")
        if tuple(state["event_shape"]) != self.event_shape:
            raise ValueError(f"checkpoint event shape {tuple(state['event_shape'])} != trainer {self.event_shape}")
        for mname, m in self.modules().items():
            pre = mname + "."
            sd = {k[len(pre):]: v for k, v in weights.items() if k.startswith(pre)}
            m.load_state_dict(sd, strict=True)
        opts = self.optimizers()
        missing = set(opts) ^ set(state["optimizers"])
        if missing:
            raise ValueError(f"checkpoint optimisers {sorted(state['optimizers'])} != trainer {sorted(opts)}")
        for k, o in opts.items():
            o.load_state_dict(state["optimizers"][k])
        self.load_extra_state(state["extra"])
        _set_rng_state(state["rng"])
        self._batch_gen.set_state(state["batch_gen"])
        self.iteration = int(state["iteration"])
        return self.iteration

    # ------------------------------------------------------------------ fit
    def _check_data(self, data: Tensor | None) -> Tensor | None:
        if data is None:
            if self.requires_data:
                raise ValueError(f"{type(self).__name__}.fit needs data [N, {', '.join(map(str, self.event_shape))}],"
                                 " got None")
            return None
        if not torch.is_tensor(data):
            raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
        if data.dim() < 2 or tuple(data.shape[1:]) != self.event_shape or data.shape[0] == 0:
            raise ValueError(f"data must have shape [N, {', '.join(map(str, self.event_shape))}] with N > 0, "
                             f"got {list(data.shape)}")
        if not data.is_floating_point():
            raise TypeError(f"data must be floating point, got {data.dtype}")
        if not bool(torch.isfinite(data).all()):
            raise ValueError("data contains non-finite values")
        return data

    def _next_batch(self, data: Tensor | None, batch_size: int | None) -> Tensor | None:
        if data is None:
            return None
        if batch_size is None or batch_size >= data.shape[0]:
            b = data
        else:
            idx = torch.randint(data.shape[0], (batch_size,), generator=self._batch_gen)
            b = data[idx.to(data.device)]
        return b.to(self.device, self.dtype)

    def fit(self, data: Tensor | None, n_iters: int, batch_size: int | None = None, log_every: int = 50,
            ckpt_every: int | None = 500, out_dir: str | os.PathLike | None = None, resume: bool = False,
            progress: bool = False, callback=None, max_abs_energy: float | None = 1e6) -> dict:
        """Train until ``self.iteration == n_iters`` (``n_iters`` is the *total* count).

        Args:
            data: [N, *event_shape] training set (kept where it is; mini-batches
                are moved to ``self.device``), or None for data-free trainers.
            n_iters: total number of iterations (a resumed or repeated call
                continues from ``self.iteration``).
            batch_size: mini-batch size drawn with replacement each iteration;
                None = the full data set every iteration.
            log_every: append one JSONL record every ``log_every`` iterations
                (plus the first and the last) to ``out_dir/log.jsonl``.
            ckpt_every: checkpoint every ``ckpt_every`` iterations and at the
                end into ``out_dir/ckpt`` (None or 0: only at the end; needs out_dir).
            out_dir: where logs/checkpoints go; None = in memory only.
            resume: load ``out_dir/ckpt`` first if it holds a checkpoint.
            progress: tqdm progress bar.
            callback: optional ``callback(trainer, it, metrics)`` after each iteration.
            max_abs_energy: stop when a mean-energy metric of the trainer (``energy_metrics``:
                ``e_data``, ``e_sample``) leaves [-max_abs_energy, max_abs_energy]; None turns
                this off (non-finite values always stop the run).
        Returns:
            {"iteration": int, "metrics": last metrics, "history": logged records,
             "wall_s": float, "resumed_from": int | None, "out_dir": str | None}
        Raises:
            DivergenceError naming the iteration and metric when a metric,
            parameter or extra-state tensor becomes non-finite, or a mean energy
            exceeds ``max_abs_energy`` (no checkpoint is written for that
            iteration, so the last good one is untouched).
        """
        data = self._check_data(data)
        if isinstance(n_iters, bool) or not isinstance(n_iters, int) or n_iters < 0:
            raise ValueError(f"n_iters must be a non-negative int, got {n_iters!r}")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size <= 0):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every <= 0:
            raise ValueError(f"log_every must be a positive int, got {log_every!r}")
        if ckpt_every is not None and (isinstance(ckpt_every, bool) or not isinstance(ckpt_every, int)
                                       or ckpt_every < 0):
            raise ValueError(f"ckpt_every must be a non-negative int or None, got {ckpt_every!r}")
        if resume and out_dir is None:
            raise ValueError("resume=True needs out_dir (where the checkpoint lives)")
        if max_abs_energy is not None and (not _is_number(max_abs_energy) or not max_abs_energy > 0):
            raise ValueError(f"max_abs_energy must be a number > 0 or None, got {max_abs_energy!r}")

        out = Path(out_dir) if out_dir is not None else None
        ckpt_dir = out / "ckpt" if out is not None else None
        log_path = out / "log.jsonl" if out is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)

        resumed_from = None
        if resume and latest_checkpoint(ckpt_dir) is not None:
            resumed_from = self.load_checkpoint(ckpt_dir)
            if log_path.is_file():  # drop records written after the checkpoint (would duplicate)
                keep = [ln for ln in log_path.read_text().splitlines()
                        if ln.strip() and json.loads(ln).get("it", -1) < resumed_from]
                _atomic_write_bytes(log_path, ("\n".join(keep) + ("\n" if keep else "")).encode())
        elif self.iteration == 0:
            # fresh run: replay the RNG state left by build(), whatever ran in between
            _set_rng_state(self._rng_after_build)
            if log_path is not None and log_path.is_file():
                log_path.unlink()  # a fresh run starts a fresh log
        last_ckpt = str(ckpt_dir) if ckpt_dir is not None and latest_checkpoint(ckpt_dir) is not None else None

        history: list[dict] = []
        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        rng = range(self.iteration, n_iters)
        if progress:
            from tqdm.auto import tqdm
            rng = tqdm(rng, desc=self.name, initial=self.iteration, total=n_iters)
        logf = open(log_path, "a") if log_path is not None else None
        try:
            for it in rng:
                batch = self._next_batch(data, batch_size)
                metrics = {k: (float(v) if torch.is_tensor(v) else v) for k, v in self.train_step(batch, it).items()}
                try:
                    self._check_finite(it, metrics, last_ckpt, max_abs_energy)
                except DivergenceError as e:
                    if logf is not None:
                        logf.write(json.dumps({"it": it, "diverged": e.metric, "value": repr(e.value)}) + "\n")
                        logf.flush()
                    raise
                self.iteration = it + 1
                if callback is not None:
                    callback(self, it, metrics)
                if it == 0 or (it + 1) % log_every == 0 or it == n_iters - 1:
                    rec = {"it": it, "wall_s": round(time.perf_counter() - t0, 4), **metrics}
                    history.append(rec)
                    if logf is not None:
                        logf.write(json.dumps(rec) + "\n")
                        logf.flush()
                    if progress:
                        rng.set_postfix({k: v for k, v in list(metrics.items())[:3]})
                if ckpt_dir is not None and ckpt_every and self.iteration % ckpt_every == 0:
                    self.save_checkpoint(ckpt_dir)
                    last_ckpt = str(ckpt_dir)
            if ckpt_dir is not None and (latest_checkpoint(ckpt_dir) or {}).get("iteration") != self.iteration:
                self.save_checkpoint(ckpt_dir)
        finally:
            if logf is not None:
                logf.close()
            if progress:
                rng.close()
        return {"iteration": self.iteration, "metrics": metrics, "history": history,
                "wall_s": time.perf_counter() - t0, "resumed_from": resumed_from,
                "out_dir": str(out) if out is not None else None}

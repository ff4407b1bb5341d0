"""The :class:`Trainer` base class: construction, reproducibility, checkpoint state and ``fit``.

Every ebmfast trainer subclasses :class:`Trainer` and implements the hooks ``build``,
``train_step``, ``sample``, ``modules``, ``optimizers`` and (when it carries state across
iterations) ``extra_state`` / ``load_extra_state``. The base provides ``fit``: seeding,
batching, then a plain loop over the hooks of :mod:`ebmfast.trainers.hooks` (divergence
guard, callback, JSONL log, progress bar, checkpoints of :mod:`ebmfast.trainers.checkpoint`).

Reproducibility
    ``__init__`` seeds torch / numpy / random with ``seed`` and calls ``build``;
    the RNG state right after ``build`` is remembered and restored when ``fit``
    starts at iteration 0, so a run does not depend on what else touched the
    global RNGs in between. Mini-batches are drawn with a trainer-owned
    ``torch.Generator``. A checkpoint stores every RNG state (torch CPU, CUDA
    if initialised, numpy, python ``random``, the batch generator), so
    ``fit(..., resume=True)`` continues bit-identically on CPU.

Method facts used by the run tools (``ebmfast.runs``, the command line) are class attributes
and methods here, overridden per trainer: ``pool_key`` / ``pool_size`` (how many samples
``sample(n)`` can return), ``step_size_keys`` (halved by a divergence rollback), ``energy_fn``
(the learned energy), ``has_chain`` / ``init_points`` / ``chain`` / ``fresh_chain`` /
``chain_trajectory`` (the method's own sampling chain), ``figure_chain_steps``,
``cli_presets`` and ``iteration_limit``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from .checkpoint import Checkpointer
from .config import TrainerConfig
from .hooks import CallbackHook, CheckpointHook, DivergenceError, DivergenceGuard, Hook, LogHook, ProgressHook
from .rng import get_rng_state, seed_everything, set_rng_state

__all__ = ["Trainer"]

#: names of config fields treated as step sizes by the generic ``step_size_keys`` rule
_STEP_NAMES = ("step_size", "eta", "delta", "dt")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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
    #: config key bounding the n of ``sample(n)`` (the persistent particles), or None
    pool_key: ClassVar[Optional[str]] = None
    #: config keys halved by a divergence rollback (optimiser and sampler step sizes); None = the
    #: generic rule: ``lr``, ``lr_*``, ``*_lr``, step_size, eta, delta, dt
    step_size_keys: ClassVar[Optional[tuple[str, ...]]] = None
    #: whether ``chain`` / ``fresh_chain`` run the method's own sampling chain
    has_chain: ClassVar[bool] = False

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
        self._rng_after_build = get_rng_state()

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

    # ------------------------------------------------------------ method facts
    def parameters(self):
        """All parameters of ``modules()`` (each once)."""
        seen = set()
        for m in self.modules().values():
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    @classmethod
    def sample_pool_key(cls, config) -> Optional[str]:
        """Config key bounding ``sample(n)``'s n under ``config``, or None when any n works."""
        return cls.pool_key if cls.pool_key is not None and hasattr(config, cls.pool_key) else None

    def pool_size(self) -> Optional[int]:
        """How many samples ``sample(n)`` can return at most, or None (no bound)."""
        key = self.sample_pool_key(self.config)
        return None if key is None else int(getattr(self.config, key))

    @classmethod
    def step_sizes(cls, config) -> list[str]:
        """Keys of ``config`` that are step sizes (learning rates, sampler steps) and are set."""
        fields = [f.name for f in dataclasses.fields(config)]
        if cls.step_size_keys is not None:
            return [k for k in cls.step_size_keys if k in fields and getattr(config, k) is not None]
        keys = [k for k in fields if k == "lr" or k.startswith("lr_") or k.endswith("_lr") or k in _STEP_NAMES]
        return [k for k in keys if _is_number(getattr(config, k))]

    @classmethod
    def cli_presets(cls, user: Mapping[str, Any], *, has_data: bool, has_target: bool) -> dict:
        """Options the command line sets when the user did not (``user``: the options given)."""
        return {}

    @classmethod
    def iteration_limit(cls, config) -> Optional[tuple[int, str]]:
        """(the largest ``n_iters`` a run of ``config`` can do, how it is computed), or None: unbounded."""
        return None

    def energy_fn(self):
        """The learned energy [B, ...] -> [B] (low = likely), or None when the method has none."""
        e = getattr(self, "energy", None)
        return e if isinstance(e, nn.Module) else None

    def init_points(self, n: int) -> Tensor:
        """Starting points [n, *event_shape] of fresh chains (global torch RNG)."""
        return torch.randn((n, *self.event_shape), device=self.device, dtype=self.dtype)

    def chain(self, x: Tensor, n_steps: int) -> Tensor:
        """``n_steps`` steps of the method's sampler from ``x`` (detached result)."""
        raise ValueError(f"method {self.name!r} has no step-by-step sampling chain; sample without --steps")

    def fresh_chain(self, n: int, n_steps: int) -> Tensor:
        """``n`` fresh chains of ``n_steps`` steps of the method's own sampler: [n, *event_shape]."""
        return self.chain(self.init_points(n), n_steps).detach()

    def chain_trajectory(self, n: int, n_steps: int, n_frames: int = 8) -> Tensor:
        """Snapshots of ``n`` fresh chains: [frames, n, *event_shape] (first = start, last = step n_steps)."""
        marks = self.frame_marks(n_steps, n_frames)
        x = self.init_points(n)
        frames, done = [x.detach().clone()], 0
        for m in marks[1:]:
            x = self.chain(x, m - done).detach()
            done = m
            frames.append(x.detach().clone())
        return torch.stack(frames)

    @staticmethod
    def frame_marks(n_steps: int, n_frames: int) -> list[int]:
        """The chain steps shown by ``chain_trajectory`` (at most ``n_frames``, first 0, last n_steps)."""
        n_frames = max(2, min(n_frames, n_steps + 1))
        return sorted({round(i * n_steps / (n_frames - 1)) for i in range(n_frames)})

    def figure_chain_steps(self) -> int:
        """Steps of the fresh chains drawn for chain figures."""
        return max(int(getattr(self.config, "sample_steps", 0) or 0), 100)

    # ----------------------------------------------------------- checkpoints
    def checkpoint_tensors(self) -> dict[str, Tensor]:
        """Every module's state_dict as ``{"<module>.<key>": tensor}`` (CPU copies)."""
        # clone: safetensors refuses shared / non-contiguous storage
        return {f"{mname}.{k}": v.detach().to("cpu").clone().contiguous()
                for mname, m in self.modules().items() for k, v in m.state_dict().items()}

    def checkpoint_state(self) -> dict:
        """Config, optimisers, every RNG state and the extra state (torch.load weights_only-safe)."""
        return {
            "config": self.config.to_dict(),
            "event_shape": list(self.event_shape),
            "seed": self.seed,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "rng": get_rng_state(),
            "batch_gen": self._batch_gen.get_state(),
            "extra": self.extra_state(),
        }

    def load_checkpoint_state(self, weights: Mapping[str, Tensor], state: Mapping) -> None:
        """Restore modules, optimisers, extra state, RNG states and the iteration count."""
        if tuple(state["event_shape"]) != self.event_shape:
            raise ValueError(f"checkpoint event shape {tuple(state['event_shape'])} != trainer {self.event_shape}")
        for mname, m in self.modules().items():
            pre = mname + "."
            m.load_state_dict({k[len(pre):]: v for k, v in weights.items() if k.startswith(pre)}, strict=True)
        opts = self.optimizers()
        if set(opts) != set(state["optimizers"]):
            raise ValueError(f"checkpoint optimisers {sorted(state['optimizers'])} != trainer {sorted(opts)}")
        for k, o in opts.items():
            o.load_state_dict(state["optimizers"][k])
        self.load_extra_state(state["extra"])
        set_rng_state(state["rng"])
        self._batch_gen.set_state(state["batch_gen"])
        self.iteration = int(state["iteration"])

    def checkpointer(self, path_dir: str | os.PathLike, keep: Optional[int] = None) -> Checkpointer:
        """A :class:`Checkpointer` of this trainer into ``path_dir`` (``keep`` default: keep_checkpoints)."""
        return Checkpointer(path_dir, self, keep=self.keep_checkpoints if keep is None else keep)

    def save_checkpoint(self, path_dir: str | os.PathLike, it: int | None = None) -> Path:
        """Atomically write a checkpoint of the current state into ``path_dir`` (created if needed),
        recorded as iteration ``it`` (default ``self.iteration``); returns the directory."""
        return self.checkpointer(path_dir).save(self.iteration if it is None else int(it))

    def load_checkpoint(self, path_dir: str | os.PathLike) -> int:
        """Restore modules, optimisers, RNG states and extra state; returns the iteration."""
        it = self.checkpointer(path_dir).load()
        if it is None:
            raise FileNotFoundError(f"no checkpoint in {path_dir!s} (latest.json missing)")
        return it

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

    @staticmethod
    def _check_fit_args(n_iters, batch_size, log_every, ckpt_every, out_dir, resume, max_abs_energy) -> None:
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

    def fit(self, data: Tensor | None, n_iters: int, batch_size: int | None = None, log_every: int = 50,
            ckpt_every: int | None = 500, out_dir: str | os.PathLike | None = None, resume: bool = False,
            progress: bool = False, callback=None, max_abs_energy: float | None = 1e6,
            hooks: Sequence[Hook] = ()) -> dict:
        """Train until ``self.iteration == n_iters`` (``n_iters`` is the *total* count).

        Args:
            data: [N, *event_shape] training set (kept where it is; mini-batches
                are moved to ``self.device``), or None for data-free trainers.
            n_iters: total number of iterations (a resumed or repeated call
                continues from ``self.iteration``).
            batch_size: mini-batch size drawn with replacement each iteration;
                None = the full data set every iteration.
            log_every: keep one record every ``log_every`` iterations (plus the
                first and the last) in the returned history and ``out_dir/log.jsonl``.
            ckpt_every: checkpoint every ``ckpt_every`` iterations and at the
                end into ``out_dir/ckpt`` (None or 0: only at the end; needs out_dir).
            out_dir: where logs/checkpoints go; None = in memory only.
            resume: load ``out_dir/ckpt`` first if it holds a checkpoint.
            progress: tqdm progress bar.
            callback: optional ``callback(trainer, it, metrics)`` after each iteration.
            max_abs_energy: stop when a mean-energy metric of the trainer (``energy_metrics``:
                ``e_data``, ``e_sample``) leaves [-max_abs_energy, max_abs_energy]; None turns
                this off (non-finite values always stop the run).
            hooks: more :class:`~ebmfast.trainers.hooks.Hook` objects, run after the built-in ones.
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
        self._check_fit_args(n_iters, batch_size, log_every, ckpt_every, out_dir, resume, max_abs_energy)
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        ckpt = self.checkpointer(out / "ckpt") if out is not None else None

        resumed_from = ckpt.load() if resume else None
        if resumed_from is None and self.iteration == 0:
            # fresh run: replay the RNG state left by build(), whatever ran in between
            set_rng_state(self._rng_after_build)

        log = LogHook(n_iters, log_every, out / "log.jsonl" if out is not None else None)
        all_hooks: list[Hook] = [DivergenceGuard(max_abs_energy, ckpt)]
        if callback is not None:
            all_hooks.append(CallbackHook(callback))
        all_hooks.append(log)
        if progress:
            all_hooks.append(ProgressHook(self.name, n_iters, log))
        if ckpt is not None:
            all_hooks.append(CheckpointHook(ckpt, ckpt_every))
        all_hooks.extend(hooks)

        metrics: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            for h in all_hooks:
                h.on_start(self, resumed_from)
            for it in range(self.iteration, n_iters):
                batch = self._next_batch(data, batch_size)
                metrics = {k: (float(v) if torch.is_tensor(v) else v) for k, v in self.train_step(batch, it).items()}
                try:
                    for h in all_hooks:
                        h.check_step(self, it, metrics)
                except DivergenceError as e:
                    for h in all_hooks:
                        h.on_divergence(self, e)
                    raise
                self.iteration = it + 1
                for h in all_hooks:
                    h.after_step(self, it, metrics)
            for h in all_hooks:
                h.on_end(self)
        finally:
            for h in all_hooks:
                h.close()
        return {"iteration": self.iteration, "metrics": metrics, "history": log.history,
                "wall_s": time.perf_counter() - t0, "resumed_from": resumed_from,
                "out_dir": str(out) if out is not None else None}

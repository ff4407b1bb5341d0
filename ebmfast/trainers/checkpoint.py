"""Atomic, pruned checkpoints of a trainer (modelled on torchtitan's ``CheckpointManager``: the
owner builds a :class:`Checkpointer` once and only calls ``save(step)`` / ``load()``).

Layout of a checkpoint directory::

    weights-00000500-<tag>.safetensors   # every module's state_dict, "<module>.<key>"
    state-00000500-<tag>.pt              # torch.save: iteration, config, optimisers, RNG, extra state
    latest.json                          # {"iteration": 500, "weights": ..., "state": ..., "previous": [...]}

Each file is written to a temporary name, fsync'ed, then ``os.replace``-d; ``latest.json`` is
replaced last, so it is the commit point: a crash at any moment leaves ``latest.json`` pointing at
a complete older pair. Only the newest ``keep`` pairs are kept; files that ``latest.json`` no
longer names (and stale ``.tmp`` files) are deleted after each commit. The ``<tag>`` is a fresh
random token per save, so saving the same iteration twice never overwrites the committed pair.
"""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Mapping, Protocol

import torch
from torch import Tensor

from ..core.io import atomic_write_bytes, fsync_dir

__all__ = ["Checkpointer", "Checkpointable", "latest_checkpoint", "load_checkpoint_files"]


class Checkpointable(Protocol):
    """What a :class:`Checkpointer` saves: a named object that gives and takes its state."""

    name: str

    def checkpoint_tensors(self) -> dict[str, Tensor]:
        """Flat ``{"<module>.<key>": tensor}`` of every module (written with safetensors)."""

    def checkpoint_state(self) -> dict:
        """Everything else (optimisers, RNG, extra state...), readable by ``torch.load(weights_only=True)``."""

    def load_checkpoint_state(self, weights: Mapping[str, Tensor], state: Mapping) -> None:
        """Restore from what the two methods above returned."""


def latest_checkpoint(folder: str | os.PathLike) -> dict | None:
    """The committed ``latest.json`` record of a checkpoint directory, or None."""
    p = Path(folder) / "latest.json"
    if not p.is_file():
        return None
    with open(p) as f:
        return json.load(f)


def load_checkpoint_files(folder: str | os.PathLike) -> tuple[dict[str, Tensor], dict]:
    """Read the latest committed checkpoint: (flat weights dict, state dict)."""
    from safetensors.torch import load_file

    rec = latest_checkpoint(folder)
    if rec is None:
        raise FileNotFoundError(f"no checkpoint in {folder!s} (latest.json missing)")
    d = Path(folder)
    weights = load_file(str(d / rec["weights"]))
    state = torch.load(d / rec["state"], map_location="cpu", weights_only=True)
    if state.get("iteration") != rec["iteration"]:
        raise RuntimeError(f"checkpoint {d} is inconsistent: latest.json says iteration {rec['iteration']}, "
                           f"{rec['state']} says {state.get('iteration')}")
    return weights, state


class Checkpointer:
    """Saves / restores ``stateful`` into ``folder`` (see the module docstring).

    Args:
        folder: checkpoint directory (created on the first save).
        stateful: a :class:`Checkpointable` (every ebmfast ``Trainer`` is one).
        keep: number of checkpoint pairs kept (>= 1).
    """

    def __init__(self, folder: str | os.PathLike, stateful: Checkpointable, keep: int = 2):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        self.folder = Path(folder)
        self.stateful = stateful
        self.keep = keep

    def latest(self) -> dict | None:
        """The committed ``latest.json`` record, or None when nothing was saved yet."""
        return latest_checkpoint(self.folder)

    def save(self, step: int) -> Path:
        """Atomically write the state of ``stateful`` as checkpoint ``step``; returns the folder."""
        from safetensors.torch import save as st_save

        step, name = int(step), self.stateful.name
        d = self.folder
        d.mkdir(parents=True, exist_ok=True)
        state = {"iteration": step, "trainer": name, **self.stateful.checkpoint_state()}
        buf = io.BytesIO()
        torch.save(state, buf)
        # os.urandom, not the seeded RNGs: checkpointing must not change the run
        tag = f"{step:08d}-{os.urandom(4).hex()}"
        wname, sname = f"weights-{tag}.safetensors", f"state-{tag}.pt"
        atomic_write_bytes(d / wname, st_save(self.stateful.checkpoint_tensors(),
                                              metadata={"iteration": str(step), "trainer": name}))
        atomic_write_bytes(d / sname, buf.getvalue())
        fsync_dir(d)
        prev = self.latest()
        kept = ([] if prev is None else prev.get("previous", []) + [[prev["weights"], prev["state"]]])
        kept = kept[-(self.keep - 1):] if self.keep > 1 else []
        rec = {"iteration": step, "weights": wname, "state": sname, "trainer": name, "time": time.time(),
               "previous": kept}
        atomic_write_bytes(d / "latest.json", json.dumps(rec).encode())  # commit point
        fsync_dir(d)
        self.prune()
        return d

    def prune(self) -> None:
        """Delete checkpoint files that latest.json no longer references (and stale .tmp files)."""
        rec = self.latest()
        if rec is None:
            return
        live = {rec["weights"], rec["state"]} | {n for pair in rec.get("previous", []) for n in pair}
        for p in list(self.folder.glob("weights-*.safetensors*")) + list(self.folder.glob("state-*.pt*")):
            if p.name not in live:
                p.unlink(missing_ok=True)

    def load(self) -> int | None:
        """Restore the latest checkpoint into ``stateful``; returns its step, or None when there is none."""
        if self.latest() is None:
            return None
        weights, state = load_checkpoint_files(self.folder)
        if state.get("trainer") != self.stateful.name:
            raise ValueError(f"checkpoint in {self.folder} was written by trainer {state.get('trainer')!r}, "
                             f"not {self.stateful.name!r}")
        self.stateful.load_checkpoint_state(weights, state)
        return int(state["iteration"])

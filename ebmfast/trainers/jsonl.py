"""JSON-lines training logs: one flushed record per line, cut back to a checkpoint on resume.

Used by ``Trainer.fit`` (``log.jsonl``) and by the run directories of ``ebmfast.runs``
(``metrics.jsonl``, ``layers.jsonl``).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..core.io import atomic_write_text

__all__ = ["JsonlLog", "read_jsonl", "jsonable"]


def jsonable(x: Any) -> Any:
    """Plain-JSON version of ``x``: tuples -> lists, tensors/numpy -> lists/floats, non-finite floats -> str."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else repr(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if torch.is_tensor(x):
        return jsonable(x.detach().cpu().tolist())
    if isinstance(x, torch.dtype):
        return str(x).replace("torch.", "")
    return str(x)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every complete JSON line of ``path`` ([] if missing). A torn last line (crash mid-write) is skipped."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class JsonlLog:
    """Append-only JSON-lines log (one flushed line per record)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f = None

    def write(self, record: dict) -> None:
        if self._f is None:
            self._f = open(self.path, "a")
        self._f.write(json.dumps(jsonable(record)) + "\n")
        self._f.flush()

    def extend(self, records: Iterable[dict]) -> None:
        for r in records:
            self.write(r)

    def truncate_from(self, iteration: int) -> None:
        """Drop records of iterations >= ``iteration`` (0-based ``it``); keeps records without ``it``."""
        self.close()
        recs = read_jsonl(self.path)
        keep = [r for r in recs if not isinstance(r.get("it"), int) or r["it"] < iteration]
        if len(keep) != len(recs) or self.path.is_file():
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def clear(self) -> None:
        """Delete the log file (a fresh run starts a fresh log)."""
        self.close()
        self.path.unlink(missing_ok=True)

    def records(self) -> list[dict]:
        return read_jsonl(self.path)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

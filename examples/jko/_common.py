"""Shared helpers of the JKO reproduction scripts: CPU threads, results files."""
from __future__ import annotations

from pathlib import Path

import torch

from ebmfast.runs.study import environment, write_json as _write_json

RESULTS = Path(__file__).resolve().parent / "results"


def setup(threads: int = 1) -> None:
    """Pin torch to ``threads`` CPU threads: the nets are tiny, extra threads only contend."""
    torch.set_num_threads(threads)


def write_json(name: str, payload: dict) -> Path:
    """Write ``results/<name>.json`` (atomic replace, with the environment) and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return _write_json(RESULTS / f"{name}.json", {**payload, "env": environment()}, indent=1, default=float,
                       newline=True)

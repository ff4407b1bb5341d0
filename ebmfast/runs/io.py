"""Crash-safe files of run directories: config.json, final.json, samples.npy, best.json.

Every such file goes through :func:`ebmfast.core.io.atomic_write_bytes` (temporary name,
``fsync``, ``os.replace``), so a process killed at any moment leaves either the old or the new
complete file. JSONL logs are the trainers' (:mod:`ebmfast.trainers.jsonl`), re-exported here.
"""
from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np

from ..core.io import atomic_write_bytes, atomic_write_text
from ..trainers.jsonl import JsonlLog, jsonable, read_jsonl

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_npy", "read_json",
           "JsonlLog", "read_jsonl", "jsonable"]


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())

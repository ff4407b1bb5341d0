"""Crash-safe file writes shared by the trainers (checkpoints, logs) and the run directories.

A file that a later process reads is written to ``<name>.tmp``, flushed, ``fsync``-ed and then
``os.replace``-d onto its name, so a process killed at any moment leaves either the old or the
new complete file, never half of one.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_dir"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via ``path.tmp`` + fsync + ``os.replace`` (all or nothing)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the renames inside directory ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)

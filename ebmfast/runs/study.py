"""Scripted studies (the reproduction scripts under ``examples/``): the pieces every study repeats.

    p = study_parser(__doc__, tag="repro", seeds=(0, 1, 2), quick="60 iterations, 1 seed")
    p.add_argument("--iters", type=int, default=2000)            # the study's own options
    a = p.parse_args()
    out = study_dir(__file__, a)                                  # --out, else results/<tag> beside the script
    write_json(out / "runs.json", {"args": vars(a), "runs": runs})
    write_markdown(out / "summary.md", f"# My study ({a.tag})",
                   ["data", "method", "MMD^2"], [[ds, m, mean_sd_text(v)] for ...],
                   preamble=[f"args: {json.dumps(vars(a))}"])

Files are written atomically (:mod:`ebmfast.core.io`): a study cut off mid-write keeps the
previous complete file.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..core.io import atomic_write_text

__all__ = ["study_parser", "study_dir", "environment", "write_json", "mean_sd", "mean_sd_text", "markdown_table",
           "write_markdown"]


def study_parser(doc: Optional[str], *, tag: Optional[str] = None, seeds: Optional[Sequence[int]] = None,
                 threads: int = 1, quick: Optional[str] = None, out_help: str = "results directory "
                 "(default: results/<tag> beside the script)") -> argparse.ArgumentParser:
    """An ArgumentParser (the script's docstring as description) with the flags studies share.

    Args:
        doc: the script's docstring.
        tag: default of ``--tag`` (the results sub-folder); None = no ``--tag`` flag.
        seeds: default of ``--seeds`` (several ints); None = no ``--seeds`` flag.
        threads: default of ``--threads`` (torch CPU threads: the study nets are tiny).
        quick: help text of ``--quick`` (a CI-sized smoke run); None = no ``--quick`` flag.
    Every parser has ``--out`` and ``--threads``.
    """
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if tag is not None:
        p.add_argument("--tag", default=tag, help=f"name of this study's results (default {tag!r})")
    p.add_argument("--out", default=None, help=out_help)
    if seeds is not None:
        p.add_argument("--seeds", nargs="+", type=int, default=list(seeds), help="seeds (one run each)")
    p.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    if quick is not None:
        p.add_argument("--quick", action="store_true", help=f"CI smoke run: {quick}")
    return p


def study_dir(script: str, args: argparse.Namespace, default: Optional[str] = None) -> Path:
    """The results folder (created): ``args.out``, else ``results/<args.tag or default>`` beside ``script``."""
    if getattr(args, "out", None):
        out = Path(args.out)
    else:
        out = Path(script).resolve().parent / "results"
        name = getattr(args, "tag", None) or default
        if name:
            out = out / name
    out.mkdir(parents=True, exist_ok=True)
    return out


def environment() -> dict:
    """What produced a result: torch and python versions, machine, CPU threads, date, command line."""
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "argv": " ".join(sys.argv)}


def write_json(path: str | Path, payload: Any, indent: Optional[int] = None, default=None,
               newline: bool = False) -> Path:
    """``json.dumps(payload, indent=indent, default=default)`` (plus a final newline if asked) written
    atomically to ``path``; returns the path."""
    path = Path(path)
    atomic_write_text(path, json.dumps(payload, indent=indent, default=default) + ("\n" if newline else ""))
    return path


def mean_sd(values: Iterable[float], skip_nonfinite: bool = True) -> tuple[float, float]:
    """(mean, sample standard deviation) of the values (sd 0 for one value; (nan, nan) for none).

    ``skip_nonfinite``: leave out NaN / inf (e.g. diverged runs, counted elsewhere); False keeps
    them, so one NaN / inf makes both NaN.
    """
    v = [float(x) for x in values if x is not None]
    if skip_nonfinite:
        v = [x for x in v if math.isfinite(x)]
    if not v or not all(math.isfinite(x) for x in v):
        return math.nan, math.nan
    return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0


def mean_sd_text(values: Iterable[float], digits: int = 4) -> str:
    """``"m ± sd"`` of :func:`mean_sd`, or ``"nan"`` when no value is finite."""
    m, s = mean_sd(values)
    return "nan" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a markdown table (cells converted with ``str``)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return lines


def write_markdown(path: str | Path, title: str, header: Sequence[str], rows: Iterable[Sequence[Any]],
                   preamble: Sequence[str] = (), notes: Sequence[str] = ()) -> list[str]:
    """A summary file: title, preamble lines, the table, notes (blank lines between); returns its lines."""
    lines = [title, ""]
    if preamble:
        lines += [*preamble, ""]
    lines += markdown_table(header, rows)
    if notes:
        lines += ["", *notes]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return lines

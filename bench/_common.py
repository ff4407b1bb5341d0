"""Shared helpers for ebmfast benchmarks: environment, timing, CSV rows, markdown tables.

Every bench/bench_<op>.py imports this module (run as `python bench/bench_<op>.py`, so
`bench/` is on sys.path and `import _common` works; the repository root is added to
sys.path here so `import ebmfast` finds the in-place build).

Timing policy (STYLE.md, Benchmarks):
  * CPU: warm-up, then `repeats` timed blocks of `number` calls each (number chosen so a
    block lasts >= `min_block_s`), median over blocks. Candidates of one comparison are
    timed round-robin (`time_group`), block by block, so a burst of load from other
    processes hits all of them alike and their ratios stay meaningful.
    (torch.utils.benchmark.Timer is not used: it defaults to num_threads=1, and its
    blocked_autorange times one candidate at a time.)
  * CUDA: triton.testing.do_bench (median, ms) when triton imports, else CUDA events.
"""
from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402


# --------------------------------------------------------------------------- environment
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_avg() -> tuple[float, float, float]:
    """(1, 5, 15)-minute load averages; (nan, nan, nan) where the OS has none."""
    try:
        return os.getloadavg()
    except (OSError, AttributeError):
        return (float("nan"),) * 3


def device_name(device: str | torch.device = "cpu") -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return cpu_model()


def _version(mod: str) -> str:
    try:
        return getattr(__import__(mod), "__version__", "?")
    except Exception:  # not installed / broken install: record it, do not fail the benchmark
        return "n/a"


def git_commit() -> str:
    """HEAD of the repository (+ '-dirty' if the tree has changes); '?' outside git."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (head + ("-dirty" if dirty else "")) or "?"
    except Exception:
        return "?"


def env_info(device: str | torch.device = "cpu") -> dict:
    """Columns written with every CSV row: where, when and with what a number was taken."""
    la = load_avg()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": device_name(device),
        "cpu_model": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "ebmfast": _version("ebmfast"),
        "commit": git_commit(),
        "python": platform.python_version(),
        "load_1m": round(la[0], 2),
    }


# --------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Per-call seconds over timed blocks (one entry per block)."""

    samples: list[float] = field(default_factory=list)
    number: int = 1  # calls per block
    cpu_samples: list[float] = field(default_factory=list)  # process CPU seconds per call, per block

    @property
    def cpu_median(self) -> float:
        """Median process CPU time per call (all threads summed; includes OpenMP spin-waits).

        Unlike wall time it does not grow while the process waits for a core, so it is the
        steadier figure on a loaded machine; it is not a latency.
        """
        return statistics.median(self.cpu_samples) if self.cpu_samples else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def iqr(self) -> float:
        if len(self.samples) < 4:
            return max(self.samples) - min(self.samples)
        q = statistics.quantiles(self.samples, n=4)
        return q[2] - q[0]


def _sync(device: Optional[torch.device]) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_group(
    fns: dict[str, Callable[[], object]],
    repeats: int = 15,
    min_block_s: float = 0.02,
    warmup_s: float = 0.05,
    max_number: int = 10_000,
    device: Optional[torch.device] = None,
    repeats_for: Optional[dict[str, int]] = None,
) -> dict[str, Timing]:
    """Median-of-blocks timing of several candidates, interleaved block by block.

    Args:
        fns: name -> zero-argument callable (one call = one unit of work).
        repeats: timed blocks per candidate (the median is over these).
        min_block_s: each block runs `number` calls, `number` chosen so the block
            lasts at least this long (amortises timer resolution and call jitter).
        warmup_s: untimed calls per candidate first (at least 1 call).
        repeats_for: name -> fewer blocks for slow candidates (they sit out the later rounds).
    Returns:
        name -> Timing (per-call seconds per block).
    """
    numbers: dict[str, int] = {}
    for name, fn in fns.items():
        # warm-up (allocator, lazy init, first-call dispatch) and a first estimate
        t0, calls = time.perf_counter(), 0
        while calls < 1 or time.perf_counter() - t0 < warmup_s:
            fn()
            calls += 1
        _sync(device)
        per_call = (time.perf_counter() - t0) / calls
        numbers[name] = int(min(max_number, max(1, round(min_block_s / max(per_call, 1e-9)))))
    out = {name: Timing(number=numbers[name]) for name in fns}
    repeats_for = repeats_for or {}
    for rep in range(repeats):
        for name, fn in fns.items():
            if rep >= repeats_for.get(name, repeats):
                continue
            n = numbers[name]
            _sync(device)
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                fn()
            _sync(device)
            t1, c1 = time.perf_counter(), time.process_time()
            out[name].samples.append((t1 - t0) / n)
            out[name].cpu_samples.append((c1 - c0) / n)
    return out


def time_cuda(fn: Callable[[], object], warmup_ms: float = 25, rep_ms: float = 100) -> Timing:
    """Median seconds of one call on the GPU (triton.testing.do_bench, else CUDA events)."""
    try:
        from triton.testing import do_bench

        q = do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.25, 0.5, 0.75])
        return Timing(samples=[q[0] / 1e3, q[1] / 1e3, q[1] / 1e3, q[2] / 1e3])
    except ImportError:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(10):
            fn()
        samples = []
        for _ in range(50):
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        return Timing(samples=samples)


# --------------------------------------------------------------------------- output
def append_csv(path: str, rows: Sequence[dict], env: dict, columns: Optional[Sequence[str]] = None) -> None:
    """Append rows (each merged with `env`) to a CSV; writes the header for a new file.

    columns: the full column list (env keys first, then every row key a benchmark can
    write), so files stay appendable when a later run has rows of other kinds; default:
    the keys of `env` and of the rows in order of appearance. When the file exists its
    header is kept, and keys the header lacks raise (a silent column shift would corrupt it).
    """
    if not rows:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    full = [{**env, **r} for r in rows]
    cols = list(env.keys()) + [c for c in (columns or []) if c not in env]
    for r in full:
        cols += [k for k in r if k not in cols]
    exists = os.path.exists(path) and os.path.getsize(path) > 0
    if exists:
        with open(path, newline="") as f:
            header = next(csv.reader(f))
        extra = [c for c in cols if c not in header]
        if extra:
            raise ValueError(f"{path}: rows have columns {extra} that its header lacks; use a new file")
        cols = header
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, restval="")
        if not exists:
            w.writeheader()
        w.writerows(full)


def markdown_table(rows: Sequence[dict], columns: Sequence[str], headers: Optional[Sequence[str]] = None) -> str:
    """GitHub markdown table of `columns` from `rows` (floats formatted by `fmt`)."""
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def fmt(v) -> str:
    """Short human formatting: 3 significant digits for floats, '' for None."""
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)


def env_markdown(env: dict, extra: Optional[dict] = None) -> str:
    """A bullet list of the environment, for the top of a results .md file."""
    items = {**env, **(extra or {})}
    return "\n".join(f"- {k}: {v}" for k, v in items.items())


def peer_samplers(energy, step: float, noise: float, clamp=None, device=None) -> tuple[dict, dict]:
    """The peers' Langevin samplers on `energy`, set to our update x - step * g + noise * xi.

    Returns ({"torchebm" | "ebmkit": f(x0, k) -> x_k}, {name: why it is unavailable}).
    torchebm's Euler-Maruyama step adds sqrt(2 step) * noise_scale * xi, so its noise_scale is
    noise / sqrt(2 step); ebmkit (package `ebm`) adds noise_scale * xi like we do.
    """
    import math

    peers, missing = {}, {}
    try:
        from torchebm.core import BaseModel
        from torchebm.samplers import LangevinDynamics

        class _Wrap(BaseModel):  # torchebm samplers take a BaseModel; this one calls the user's module
            def __init__(self, net):
                super().__init__(device=device)
                self.net = net

            def forward(self, x):
                return self.net(x)

        ts = LangevinDynamics(_Wrap(energy), step_size=step, noise_scale=noise / math.sqrt(2 * step), clamp=clamp,
                              device=device)
        peers["torchebm"] = lambda x0, k: ts.sample(x=x0, n_steps=k)
    except Exception as exc:  # optional peer
        missing["torchebm"] = f"torchebm unavailable: {type(exc).__name__}: {exc}"
    try:
        import ebm  # the `ebmkit` distribution installs the `ebm` package

        ks = ebm.LangevinDynamics(step_size=step, noise_scale=noise, clamp=clamp)
        peers["ebmkit"] = lambda x0, k: ks.sample(energy, x0, steps=k)
    except Exception as exc:  # optional peer
        missing["ebmkit"] = f"ebmkit unavailable: {type(exc).__name__}: {exc}"
    return peers, missing

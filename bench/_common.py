"""Shared helpers of the ebmfast benchmarks: environment, FLOP counts, peers, pytest-benchmark glue, output.

The benchmark functions (`bench_speed_*`, `bench_memory_*` in bench/bench_<op>.py) are pytest-benchmark
tests: `pytest bench/ --benchmark-only [--bench-device cuda] [--bench-quick]` runs them (bench/pytest.ini
collects `bench_*` functions from `bench_*.py`), with pytest-benchmark's statistics, JSON history
(`--benchmark-autosave`) and `--benchmark-compare`. Each script's command line
(`python bench/bench_<op>.py --device cpu|cuda [--quick] [--out DIR]`) runs the same functions through
`run_pytest` and turns the JSON into ratio tables (.md, rewritten) and CSV rows (appended).

Timing: pytest-benchmark calibrates the calls per round and reports statistics over rounds; ratios use
medians. On CUDA its timer is torch.utils.benchmark's (`torch.cuda.synchronize()` then
`timeit.default_timer()`), so a round measures the kernels, not their launches. Benchmarks run one
after the other: a ratio is only as steady as the machine's load over the run, hence the load average
is recorded with every row.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import Callable, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(ROOT, "bench")
RESULTS = os.path.join(BENCH_DIR, "results")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

CUDA_TIMER = "torch.utils.benchmark.utils.timer.timer"  # synchronises the GPU before reading the clock


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
    return f"{cpu_model()} ({os.cpu_count()} logical CPUs)"


def package_version(dist: str) -> str:
    """Installed version of a distribution; '-' when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def git_commit() -> str:
    """HEAD of the repository (+ '-dirty' if tracked files other than results changed); '?' outside git."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)bench/results"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head + ("-dirty" if dirty else "")) or "?"


def env_info(device: str | torch.device = "cpu") -> dict:
    """Columns written with every CSV row: where, when and with what a number was taken."""
    import ebmfast

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "triton": package_version("triton"),
        "ebmfast": ebmfast.__version__,
        "commit": git_commit(),
        "python": platform.python_version(),
        "load_1m": round(load_avg()[0], 2),
    }


# --------------------------------------------------------------------------- FLOP counts
def mlp_macs(dims: Sequence[int]) -> int:
    """Multiply-adds of one forward pass of an MLP with layer widths `dims`, per row."""
    return sum(dims[i] * dims[i + 1] for i in range(len(dims) - 1))


def chain_flops(dims: Sequence[int], batch: int, n_steps: int) -> float:
    """FLOPs of K Langevin steps (forward + input gradient: 2 passes, a multiply-add = 2 FLOPs)."""
    return 4.0 * mlp_macs(dims) * batch * n_steps


def penalty_flops(dims: Sequence[int], batch: int) -> float:
    """FLOPs of a gradient-penalty step: forward + input gradient + analytic double backward (6 passes)."""
    return 12.0 * mlp_macs(dims) * batch


# --------------------------------------------------------------------------- peers
def peer_samplers(energy, step: float, noise: float, clamp=None, device=None) -> tuple[dict, dict]:
    """The peers' Langevin samplers on `energy`, set to our update x - step * g + noise * xi.

    Returns ({"torchebm" | "ebmkit": f(x0, k) -> x_k}, {name: why it is unavailable}).
    torchebm's Euler-Maruyama step adds sqrt(2 step) * noise_scale * xi, so its noise_scale is
    noise / sqrt(2 step); ebmkit (package `ebm`) adds noise_scale * xi like ebmfast does.
    """
    import math

    peers, missing = {}, {}
    try:
        from torchebm.core import BaseModel
        from torchebm.samplers import LangevinDynamics
    except ImportError as exc:
        missing["torchebm"] = f"torchebm not installed ({exc})"
    else:
        class _Wrap(BaseModel):  # torchebm samplers take a BaseModel; this one calls the user's module
            def __init__(self, net):
                super().__init__(device=device)
                self.net = net

            def forward(self, x):
                return self.net(x)

        ts = LangevinDynamics(_Wrap(energy), step_size=step, noise_scale=noise / math.sqrt(2 * step), clamp=clamp,
                              device=device)
        peers["torchebm"] = lambda x0, k: ts.sample(x=x0, n_steps=k)
    try:
        import ebm  # the `ebmkit` distribution installs the `ebm` package
    except ImportError as exc:
        missing["ebmkit"] = f"ebmkit not installed ({exc})"
    else:
        ks = ebm.LangevinDynamics(step_size=step, noise_scale=noise, clamp=clamp)
        peers["ebmkit"] = lambda x0, k: ks.sample(energy, x0, steps=k)
    return peers, missing


# --------------------------------------------------------------------------- pytest-benchmark glue
def cpu_ms_per_call(fn: Callable[[], object], min_s: float = 0.1) -> float:
    """Process CPU milliseconds per call (all threads) over a back-to-back block of >= min_s.

    It does not grow while the process waits for a core, so it shows the work done when other load
    inflates the wall clock; it includes OpenMP spin-waits and is not a latency. Over a block (not per
    call), because Linux adds another thread's CPU time to the process clock only at that thread's
    next tick: per-call deltas of a few milliseconds are noise with 2 threads.
    """
    calls, c0, t0 = 0, time.process_time(), time.perf_counter()
    while calls < 1 or time.perf_counter() - t0 < min_s:
        fn()
        calls += 1
    return (time.process_time() - c0) / calls * 1e3


def run_benchmark(benchmark, fn: Callable[[], object], info: dict, device: torch.device,
                  cpu_time: bool = True) -> None:
    """Times fn (already warmed up) with the pytest-benchmark fixture; `info` goes to its extra_info."""
    benchmark.extra_info.update(info, load_before=round(load_avg()[0], 2))
    benchmark(fn)
    if cpu_time and device.type == "cpu":
        benchmark.extra_info["cpu_ms"] = cpu_ms_per_call(fn)
    benchmark.extra_info["load_after"] = round(load_avg()[0], 2)


def thread_counts(config) -> list[int]:
    """Torch thread counts to run: `--bench-threads` on the CPU; the current count on CUDA (host side)."""
    import pytest

    if config.getoption("bench_device") == "cuda":
        return [torch.get_num_threads()]
    text = config.getoption("bench_threads")
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise pytest.UsageError(f"--bench-threads must be comma-separated ints, got {text!r}") from exc
    if not threads or min(threads) < 1:
        raise pytest.UsageError(f"--bench-threads must list thread counts >= 1, got {text!r}")
    return threads


class _Recorder:
    """pytest plugin: the order of the cases, and the info and reason of every skipped one."""

    def __init__(self):
        self.order: list[str] = []
        self.skipped: dict[str, dict] = {}
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report):
        case = dict(report.user_properties).get("case")
        if report.failed:
            self.failed.append(report.nodeid)
        if case is None or report.nodeid in self.order:
            return
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.skipped[report.nodeid] = {**case, "note": f"not measured: {reason.removeprefix('Skipped: ')}"}
            self.order.append(report.nodeid)
        elif report.when == "call":
            self.order.append(report.nodeid)


def start_run(device: torch.device) -> tuple[tuple[float, float, float], float, dict]:
    """Checks a command-line run can use `device` (exits with the reason if not); returns the load
    average, the start time and the environment to record."""
    from ebmfast.ops import _dispatch

    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible to torch")
    if device.type == "cuda" and _dispatch.triton_interpret():
        sys.exit("TRITON_INTERPRET=1 is set: unset it to run the Triton kernels on the GPU")
    return load_avg(), time.perf_counter(), env_info(device)


def run_pytest(script: str, device: str, quick: bool, extra_args: Sequence[str] = ()) -> list[dict]:
    """Runs the `bench_*` functions of `script` under pytest-benchmark in this process.

    Returns one dict per case in run order: a timed case is its extra_info with the statistics (seconds:
    median_s, min_s, q1_s, q3_s, iqr_s; rounds, iterations); a skipped one its info and a `note` saying
    why. Raises if a benchmark failed.
    """
    import pytest

    try:
        import pytest_benchmark  # noqa: F401  (the timing library of these benchmarks)
    except ImportError as exc:
        raise SystemExit("the benchmarks time with pytest-benchmark: pip install pytest-benchmark") from exc
    rec = _Recorder()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.json")
        args = [script, "-q", "-p", "no:cacheprovider", "--benchmark-only", f"--benchmark-json={path}",
                f"--bench-device={device}", "--benchmark-min-time=0.002", "--benchmark-sort=fullname",
                "--benchmark-columns=median,iqr,rounds"]
        args += ["--bench-quick", "--benchmark-max-time=0.2", "--benchmark-min-rounds=3"] if quick else \
            ["--benchmark-max-time=0.5", "--benchmark-min-rounds=7"]
        rc = pytest.main(args + list(extra_args), plugins=[rec])
        if rc not in (0, 5) or rec.failed:
            raise RuntimeError(f"pytest {' '.join(args)} exited {int(rc)}; failed: {rec.failed}")
        data = {"benchmarks": []}
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
    timed = {}
    for b in data["benchmarks"]:
        s = b["stats"]
        timed[b["fullname"]] = {**b["extra_info"], "median_s": s["median"], "min_s": s["min"], "q1_s": s["q1"],
                                "q3_s": s["q3"], "iqr_s": s["iqr"], "rounds": s["rounds"],
                                "iterations": s["iterations"]}
    return [timed.get(n) or rec.skipped[n] for n in rec.order if n in timed or n in rec.skipped]


# --------------------------------------------------------------------------- output
def append_csv(path: str, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Append rows to a CSV with these columns; writes the header for a new file.

    An existing file must have exactly this header (a silent column shift would corrupt it)."""
    if not rows:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    extra = sorted({k for r in rows for k in r} - set(columns))
    if extra:
        raise ValueError(f"{path}: rows have columns {extra} that the column list lacks")
    exists = os.path.exists(path) and os.path.getsize(path) > 0
    if exists:
        with open(path, newline="") as f:
            header = next(csv.reader(f))
        if header != list(columns):
            raise ValueError(f"{path}: header {header} differs from the columns {list(columns)}; use a new file")
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), restval="")
        if not exists:
            w.writeheader()
        w.writerows(rows)


def fmt(v) -> str:
    """Short human formatting: 3 significant digits for floats, '' for None, '-' for NaN."""
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return "-"
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


def markdown_table(rows: Sequence[dict], columns: Sequence[str], headers: Optional[Sequence[str]] = None) -> str:
    """GitHub markdown table of `columns` from `rows` (values formatted by `fmt`)."""
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def env_markdown(env: dict, extra: Optional[dict] = None) -> str:
    """A bullet list of the environment, for the top of a results .md file."""
    return "\n".join(f"- {k}: {v}" for k, v in {**env, **(extra or {})}.items())


def conditions_markdown(load_before: Sequence[float], t_start: float, command: str) -> list[str]:
    """The closing 'Conditions' section: load before and after, wall time, the command."""
    after = load_avg()
    return ["## Conditions", "",
            f"- load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; after: "
            f"{', '.join(f'{v:.2f}' for v in after)} ({os.cpu_count()} logical CPUs)",
            f"- wall time of the run: {time.perf_counter() - t_start:.0f} s",
            f"- command: `{command}`", ""]

"""Benchmark of the fused MLP energy (CPU): whole Langevin chains and gradient-penalty steps.

    PYTHONPATH=. python bench/bench_mlp.py            # full run, writes bench/results/mlp_cpu.{csv,md}
    PYTHONPATH=. python bench/bench_mlp.py --quick    # fewer repeats, smaller chains (smoke test)

Chains (K Langevin steps, SiLU unless noted; x0 ~ N(0, I); step 0.01, noise 0.1):
  eager      plain PyTorch loop: autograd.grad + x - step * g + noise * randn  (the baseline)
  ebm_loop   ebmfast's step-by-step sampler (autograd gradient + fused update op)
  fused      ebmfast.sample on an MLPEnergy: the whole chain in one CPU kernel
  torchebm / ebmkit   the peers' Langevin samplers on the same network
Penalty step (energy + gradient-norm penalty + backward to every parameter):
  autograd   create_graph=True double backward;  fused  ebmfast.ops.grad_norm_penalty
Timings are medians over repeats, implementations interleaved so that load from other
processes hits all of them alike; the load average is recorded with every row. GFLOP/s count
multiply-adds as 2 FLOPs: a chain step is forward + input gradient (4 sum(d_i d_{i+1}) per
particle), a penalty step adds the analytic double backward (12 sum(d_i d_{i+1}) per particle).
"Peak" is torch.mm on [1024, 256] x [256, 256] float32 with the same thread count.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import math

import os
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402  (bench/_common.py: environment and timing helpers)

import ebmfast  # noqa: E402
from ebmfast.energies import MLPEnergy  # noqa: E402
from ebmfast.ops import grad_norm_penalty  # noqa: E402
from ebmfast.ops import _dispatch  # noqa: E402

STEP, NOISE = 0.01, 0.1
CHAINS = [  # name, in_dim, hidden, batch
    ("i: 2-128x3-1 silu", 2, (128, 128, 128), 1000),
    ("ii: 2-256x4-1 silu", 2, (256, 256, 256, 256), 800),
    ("iii: 2-32x3-1 silu", 2, (32, 32, 32), 1000),
    ("iii: 2-64x3-1 silu", 2, (64, 64, 64), 1000),
    ("iv: 32-128x3-1 silu", 32, (128, 128, 128), 1000),
    ("iv: 128-128x3-1 silu", 128, (128, 128, 128), 1000),
]
PENALTIES = [("pen: 2-32x3-1 silu", 2, (32, 32, 32), 1000), ("pen: 2-128x3-1 silu", 2, (128, 128, 128), 1000)]
TARGETS = {"iii: 2-32x3-1 silu": 6.0, "iii: 2-64x3-1 silu": 2.5, "i: 2-128x3-1 silu": 1.6,
           "pen: 2-32x3-1 silu": 6.0, "pen: 2-128x3-1 silu": 2.5}


def macs(dims) -> int:
    return sum(dims[i] * dims[i + 1] for i in range(len(dims) - 1))


def load_avg() -> float:
    return _common.load_avg()[0]


MAX_LOAD = [None]  # --max-load: wait for a quieter machine before each workload


def wait_for_quiet(timeout_s: float = 600.0) -> None:
    """Sleeps (up to timeout_s) until the 1-minute load average is below --max-load."""
    if MAX_LOAD[0] is None:
        return
    t0 = time.time()
    while load_avg() >= MAX_LOAD[0] and time.time() - t0 < timeout_s:
        time.sleep(5)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the calling thread). The CPU time is meaningful with one torch
    thread only (all the work runs on this thread); see bench_interleaved."""
    c0, t0 = time.thread_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.thread_time() - c0


def bench_interleaved(impls: dict, repeats: int) -> dict:
    """impl -> (median wall s, min wall s, median CPU s); one warm-up call each, then round robin.

    With one thread the CPU time is the contention-robust figure: other jobs on the shared cores
    stretch the wall time of whatever runs, not the CPU time it needs. With more threads it is
    NaN (shown as "-"): Linux adds another thread's running time to the process CPU clock only at
    that thread's next tick or scheduler event, so the CPU delta of a call a few ms long is noise
    in both directions (2 threads, per call vs a back-to-back block: ten 1000x128x128 matmuls,
    1.7 ms wall, read 1.72 vs 3.40 ms CPU; a width-128 penalty step, 3.0 ms wall, 6.97 vs
    6.04 ms), and a separate block would time a different scenario than the interleaved wall.
    """
    for fn in impls.values():
        fn()
    walls, cpus = {k: [] for k in impls}, {k: [] for k in impls}
    for _ in range(repeats):
        for k, fn in impls.items():
            w, c = timed(fn)
            walls[k].append(w)
            cpus[k].append(c)
    one_thread = torch.get_num_threads() == 1
    return {k: (statistics.median(walls[k]), min(walls[k]), statistics.median(cpus[k]) if one_thread else math.nan)
            for k in impls}


def matmul_peak(repeats: int) -> float:
    a, b = torch.randn(1024, 256), torch.randn(256, 256)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(20):
            a @ b
        ts.append((time.perf_counter() - t0) / 20)
    return 2 * 1024 * 256 * 256 / min(ts) / 1e9


# --------------------------------------------------------------------------- chain implementations
def eager_chain(energy, x0, k):
    x = x0.clone()
    for _ in range(k):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(energy(x).sum(), x)
        x = x.detach() - STEP * g + NOISE * torch.randn_like(x)
    return x


def make_peers(energy):
    peers, missing = _common.peer_samplers(energy, STEP, NOISE)
    for why in missing.values():
        print(why)
    return peers


def chain_rows(repeats: int, n_steps: int, peak: float, meta: dict) -> list[dict]:
    rows = []
    for name, d, hidden, b in CHAINS:
        torch.manual_seed(0)
        energy = MLPEnergy(d, hidden, activation="silu")
        x0 = torch.randn(b, d)
        plain = lambda x: energy(x)  # noqa: E731 - no ebmfast_chain hook: the step-by-step loop
        wait_for_quiet()
        impls = {
            "eager": lambda: eager_chain(energy, x0, n_steps),
            "ebm_loop": lambda: ebmfast.sample(plain, x0, n_steps, STEP, NOISE, seed=0),
            "fused": lambda: ebmfast.sample(energy, x0, n_steps, STEP, NOISE, seed=0),
        }
        for peer, fn in make_peers(energy).items():
            impls[peer] = (lambda f: (lambda: f(x0, n_steps)))(fn)
        la0 = load_avg()
        res = bench_interleaved(impls, repeats)
        backend = _dispatch.LAST_CHOICE.get(("mlp_langevin_chain", "cpu"), "?")
        flops = 4.0 * macs((d,) + hidden + (1,)) * b * n_steps
        for impl, (med, best, cpu) in res.items():
            rows.append(dict(meta, workload=name, kind="chain", impl=impl if impl != "fused" else f"fused[{backend}]",
                             batch=b, steps=n_steps, ms_median=round(med * 1e3, 2), ms_min=round(best * 1e3, 2),
                             cpu_ms_median=round(cpu * 1e3, 2), speedup_vs_eager=round(res["eager"][0] / med, 2),
                             cpu_speedup_vs_eager=round(res["eager"][2] / cpu, 2),
                             target=TARGETS.get(name, "") if impl == "fused" else "",
                             particle_steps_per_s=round(b * n_steps / med),
                             gflops=round(flops / med / 1e9, 2), gflops_per_cpu_s=round(flops / cpu / 1e9, 2), pct_peak=round(100 * flops / med / 1e9 / peak, 1),
                             load_avg=f"{la0:.1f}-{load_avg():.1f}"))
        print(f"{name:24s} " + "  ".join(f"{k} {v[0] * 1e3:8.1f} ms" for k, v in res.items())
              + f"  fused speedup wall {res['eager'][0] / res['fused'][0]:.2f}x cpu "
              f"{res['eager'][2] / res['fused'][2]:.2f}x  (load {la0:.1f})")
    return rows


# --------------------------------------------------------------------------- penalty step
class _NoComputePenalty(torch.autograd.Function):
    """(penalty, E) of the fused node's shape with no computation: what a penalty step costs in
    PyTorch's autograd machinery alone (apply, saved tensors, the engine, one gradient per
    parameter, the outer loss). No autograd node can beat it, however fast its kernels."""

    @staticmethod
    def forward(ctx, x, *params):
        ctx.save_for_backward(x, *params)
        return x.new_zeros(()), x.new_zeros(x.shape[0])

    @staticmethod
    def backward(ctx, grad_pen, grad_e):
        _, *params = ctx.saved_tensors
        return (None, *[torch.zeros_like(p) for p in params])


def penalty_rows(repeats: int, peak: float, meta: dict) -> list[dict]:
    rows = []
    for name, d, hidden, b in PENALTIES:
        torch.manual_seed(0)
        energy = MLPEnergy(d, hidden, activation="silu")
        x = torch.randn(b, d)

        def autograd_step():
            xr = x.detach().requires_grad_(True)
            e = energy(xr)
            (g,) = torch.autograd.grad(e.sum(), xr, create_graph=True)
            pen = (torch.sqrt(g.pow(2).sum(1) + 1e-12) - 1.0).pow(2).mean()
            energy.zero_grad(set_to_none=True)
            (e.mean() + 0.1 * pen).backward()

        def fused_step():
            pen, e = grad_norm_penalty(energy, x, lipschitz=1.0, return_energy=True)
            energy.zero_grad(set_to_none=True)
            (e.mean() + 0.1 * pen).backward()

        params = list(energy.parameters())

        def node_floor_step():  # the same autograd glue around a node that computes nothing
            pen, e = _NoComputePenalty.apply(x, *params)
            energy.zero_grad(set_to_none=True)
            (e.mean() + 0.1 * pen).backward()

        wait_for_quiet()
        la0 = load_avg()
        res = bench_interleaved({"autograd": autograd_step, "fused": fused_step, "node_floor": node_floor_step},
                                repeats * 4)
        backend = _dispatch.LAST_CHOICE.get(("mlp_energy_grad", "cpu"), "?")
        flops = 12.0 * macs((d,) + hidden + (1,)) * b
        for impl, (med, best, cpu) in res.items():
            rows.append(dict(meta, workload=name, kind="penalty", impl=impl if impl != "fused" else f"fused[{backend}]",
                             batch=b, steps=1, ms_median=round(med * 1e3, 3), ms_min=round(best * 1e3, 3),
                             cpu_ms_median=round(cpu * 1e3, 3), speedup_vs_eager=round(res["autograd"][0] / med, 2),
                             cpu_speedup_vs_eager=round(res["autograd"][2] / cpu, 2),
                             target=TARGETS.get(name, "") if impl == "fused" else "", particle_steps_per_s=round(b / med),
                             gflops=round(flops / med / 1e9, 2), gflops_per_cpu_s=round(flops / cpu / 1e9, 2), pct_peak=round(100 * flops / med / 1e9 / peak, 1),
                             load_avg=f"{la0:.1f}-{load_avg():.1f}"))
        print(f"{name:24s} autograd {res['autograd'][0] * 1e3:.2f} ms  fused {res['fused'][0] * 1e3:.2f} ms  "
              f"node floor {res['node_floor'][0] * 1e3:.2f} ms  "
              f"speedup wall {res['autograd'][0] / res['fused'][0]:.2f}x cpu {res['autograd'][2] / res['fused'][2]:.2f}x"
              f"  (load {la0:.1f})")
    return rows


# --------------------------------------------------------------------------- memory vs K
_MEM_CHILD = r"""
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
import ebmfast
from ebmfast.energies import MLPEnergy
mode, ks = sys.argv[2], [int(k) for k in sys.argv[3].split(",")]
torch.manual_seed(0)
e = MLPEnergy(2, (128, 128, 128)); x0 = torch.randn(1000, 2)
def run(k):
    if mode == "fused":
        return ebmfast.sample(e, x0, k, 0.01, 0.1, seed=0)
    x = x0.clone()
    for _ in range(k):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(e(x).sum(), x)
        x = x.detach() - 0.01 * g + 0.1 * torch.randn_like(x)
    return x
run(2)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = []
for k in ks:
    run(k)
    out.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
print(",".join(map(str, out)))
"""


def memory_rows(ks, meta: dict) -> list[dict]:
    rows = []
    for mode in ("fused", "eager"):
        out = subprocess.run([sys.executable, "-c", _MEM_CHILD, ROOT, mode, ",".join(map(str, ks))],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        for k, kb in zip(ks, out.split(",")):
            rows.append(dict(meta, workload="mem: 2-128x3-1 silu B=1000", kind="memory", impl=mode, batch=1000, steps=k,
                             peak_rss_growth_mb=round(int(kb) / 1024, 2)))
        print(f"peak RSS growth over a K=2 warm-up, {mode}: " +
              ", ".join(f"K={k}: {int(kb) / 1024:.2f} MB" for k, kb in zip(ks, out.split(","))))
    return rows


# --------------------------------------------------------------------------- output
FIELDS = ["date", "device", "threads", "torch", "ebmfast", "workload", "kind", "impl", "batch", "steps", "ms_median",
          "ms_min", "cpu_ms_median", "speedup_vs_eager", "cpu_speedup_vs_eager", "target", "particle_steps_per_s",
          "gflops", "gflops_per_cpu_s", "pct_peak", "peak_rss_growth_mb", "load_avg", "matmul_peak_gflops"]


def target_needs(r: dict, rows: list) -> str:
    """'G GFLOP/s (P% peak)' that a targeted fused row needs (see the note in the markdown)."""
    if not r["target"]:
        return ""
    same = [q for q in rows if q["threads"] == r["threads"] and q["workload"] == r["workload"]]
    base = next(q for q in same if q["impl"] in ("eager", "autograd"))
    floor = next((q["ms_median"] for q in same if q["impl"] == "node_floor"), 0.0)
    budget_ms = base["ms_median"] / float(r["target"]) - floor
    if budget_ms <= 0:
        return "no time left after the node floor"
    flops = r["gflops"] * r["ms_median"] * 1e6  # GFLOP/s x ms -> FLOP
    need = flops / (budget_ms * 1e-3) / 1e9
    return f"{need:.0f} GFLOP/s ({100 * need / r['matmul_peak_gflops']:.0f}%)"


# glibc malloc settings of --steady-malloc: big tensors stay in the heap instead of being
# mmap'ed and unmapped (and page-faulted again) on every allocation, and the heap is never trimmed
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


def allocator_note() -> str:
    steady = all(os.environ.get(k) == v for k, v in STEADY_MALLOC.items())
    return ("glibc malloc with " + ", ".join(f"{k}={v}" for k, v in STEADY_MALLOC.items())
            + " (--steady-malloc)") if steady else "glibc malloc defaults"


def _cell(v, unit: str = "") -> str:
    return "-" if isinstance(v, float) and math.isnan(v) else f"{v}{unit}"


def write(rows, out_dir, meta, peak: str, tag: str = ""):
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"mlp_cpu{tag}.csv")
    new = not os.path.exists(csv_path)
    with open(csv_path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for r in rows:
            w.writerow(r)
    md = [f"# Fused MLP energy, CPU ({meta['date']})", "",
          f"Device: {meta['device']}; torch {meta['torch']}, ebmfast {meta['ebmfast']}; measured matmul peak "
          f"{peak}. Memory allocator: {allocator_note()}. Load average during each row in the last column.", "",
          "Speedups are against the eager autograd loop (chains) or autograd double backward (penalty "
          "steps). `wall` = median wall clock; `cpu` = median CPU time of the calling thread, the "
          "figure that other jobs on the shared cores do not inflate, given with 1 thread only (all "
          "work runs there); with 2 threads '-': the process CPU clock cannot attribute another "
          "thread's time to calls this short (the 2-thread `cpu` columns of runs before "
          "2026-11-23 are unreliable for that reason).",
          "`target needs` = the GFLOP/s (and % of the measured matmul peak at that thread count) the "
          "fused row would have to reach for its target, from the baseline's time in the same run; for "
          "penalty steps after subtracting `node_floor` (the same autograd glue around a node that "
          "computes nothing, with the same outer loss and zero_grad), which no kernel behind a Python "
          "autograd node can remove.",
          "", "| threads | workload | impl | wall ms | cpu ms | speedup wall | speedup cpu | target | target needs "
          "| GFLOP/s (wall) | GFLOP per CPU-s | % peak (wall) | load |",
          "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["kind"] in ("chain", "penalty"):
            md.append(f"| {r['threads']} | {r['workload']} | {r['impl']} | {r['ms_median']} | {_cell(r['cpu_ms_median'])} | "
                      f"{r['speedup_vs_eager']}x | {_cell(r['cpu_speedup_vs_eager'], 'x')} | "
                      f"{r['target'] and str(r['target']) + 'x'} | {target_needs(r, rows)} | "
                      + ("- | - | - | " if r["impl"] == "node_floor" else
                         f"{r['gflops']} | {_cell(r['gflops_per_cpu_s'])} | {r['pct_peak']} | ")
                      + f"{r['load_avg']} |")
    md += ["", "Peak memory of a chain vs K (RSS growth over a K=2 warm-up; no trajectory recorded):", "",
           "| impl | K | peak RSS growth (MB) |", "|---|---:|---:|"]
    for r in rows:
        if r["kind"] == "memory":
            md.append(f"| {r['impl']} | {r['steps']} | {r['peak_rss_growth_mb']} |")
    md += ["", "GPU (CUDA / Triton): not measured yet: no GPU in this session.", ""]
    with open(os.path.join(out_dir, f"mlp_cpu{tag}.md"), "w") as f:
        f.write("\n".join(md))
    print(f"wrote {csv_path} and mlp_cpu{tag}.md")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 repeats, 10-step chains, no memory sweep")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--threads", default="2,1", help="comma-separated torch thread counts to run")
    ap.add_argument("--max-load", type=float, default=None,
                    help="before each workload wait (up to 10 min) until the 1-min load average is below this")
    ap.add_argument("--steady-malloc", action="store_true",
                    help="re-run this script with glibc malloc never returning memory to the OS (see STEADY_MALLOC); "
                         "results go to mlp_cpu_steady_malloc.{md,csv}")
    args = ap.parse_args()
    if args.steady_malloc and allocator_note() == "glibc malloc defaults":
        # glibc reads these at process start: re-exec with them set
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **STEADY_MALLOC})
    repeats, steps = (3, 10) if args.quick else (args.repeats, args.steps)
    MAX_LOAD[0] = args.max_load
    rows, peaks = [], []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        peak = matmul_peak(repeats * 3)
        peaks.append(f"{peak:.1f} GFLOP/s at {threads} thread(s)")
        meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"),
                    device=f"{_common.cpu_model()} ({os.cpu_count()} cores)", threads=threads,
                    torch=torch.__version__, ebmfast=ebmfast.__version__, matmul_peak_gflops=round(peak, 1))
        print(f"{meta['device']}, threads={threads}, torch {meta['torch']}, matmul peak {peak:.1f} GFLOP/s, "
              f"load {load_avg():.1f}")
        rows += chain_rows(repeats, steps, peak, meta)
        rows += penalty_rows(repeats, peak, meta)
    if not args.quick:
        rows += memory_rows([10, 100, 1000], meta)
    write(rows, args.out, meta, " and ".join(peaks) + " (torch.mm 1024x256x256 float32)",
          tag="_steady_malloc" if args.steady_malloc else "")


if __name__ == "__main__":
    main()


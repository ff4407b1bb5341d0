"""Benchmark of the fused MLP energy: whole Langevin chains, gradient-penalty steps, E + grad, memory vs K.

    python bench/bench_mlp.py --device cpu [--quick] [--out DIR] [--threads 2,1] [--steady-malloc]
    python bench/bench_mlp.py --device cuda [--quick] [--out DIR]
    pytest bench/bench_mlp.py --benchmark-only [--bench-device cuda] [--bench-quick]   # the same benchmarks

The command line writes <out>/mlp_<cpu|gpu>[_steady_malloc][_quick].md (rewritten) and appends the same
rows to the .csv. Workloads and candidates: bench/_mlp_workloads.py. Speedups are against the baseline
measured in the same run (eager chain loop; autograd double backward). GFLOP/s count a multiply-add as
2 FLOPs (bench/_common.py: chain step 4 sum(d_i d_i+1) per particle, penalty step 12 sum(d_i d_i+1)).
"Peak" is torch.mm with the same thread count (CPU: [1024, 256] x [256, 256]; CUDA: 4096^3, TF32 off
and on), from its fastest round.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (also puts the repository root on sys.path)
import _mlp_report  # noqa: E402
import _mlp_workloads as W  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from ebmfast.ops import _dispatch  # noqa: E402


# --------------------------------------------------------------------------- cases
def _case(kind: str, threads: int, w: W.Workload, impl: str, device: torch.device) -> dict:
    """A benchmark case as plain data (it travels through pytest-benchmark's JSON)."""
    return {"kind": kind, "threads": threads, "workload": w.name, "impl": impl, "d": w.d, "hidden": list(w.hidden),
            "batch": w.batch, "steps": w.steps, "targets": [list(t) for t in w.targets], "device_type": device.type}


def planned_cases(device: torch.device, quick: bool, threads: list[int]) -> list[dict]:
    """Every case of a run, in run order (per thread count: peak, chains, penalties, E + grad; then memory)."""
    cases = []
    for t in threads:
        peak = W.Workload("matmul peak", 0, (), 0)
        cases += [_case("matmul", t, peak, p, device) for p in (["fp32", "tf32"] if device.type == "cuda" else ["fp32"])]
        cases += [_case("chain", t, w, i, device) for w in W.chains(device, quick) for i in W.chain_impls(device)]
        cases += [_case("penalty", t, w, i, device) for w in W.penalties(device, quick)
                  for i in W.penalty_impls(device)]
        if device.type == "cuda":
            cases += [_case("energy_grad", t, w.with_steps(1), i, device) for w in W.chains(device, quick)
                      for i in ["autograd"] + [f"fused[{b}]" for b in W.backends(device)]]
    if device.type == "cuda" or not quick:
        cases += [_case("memory", threads[-1], W.MEMORY.with_steps(k), i, device) for i in W.memory_impls(device)
                  for k in W.MEMORY_KS]
    return cases


def _workload(case: dict) -> W.Workload:
    return W.Workload(case["workload"], case["d"], tuple(case["hidden"]), case["batch"], case["steps"],
                      tuple(tuple(t) for t in case["targets"]))


def _case_id(c: dict) -> str:
    w = c["workload"].split(":")[-1].strip().replace(" silu", "").replace(" ", "-")
    return f"t{c['threads']}-{w}-K{c['steps']}-{c['impl']}" if c["kind"] == "memory" else f"t{c['threads']}-{w}-{c['impl']}"


_KIND_OF = {"bench_speed_matmul_peak": "matmul", "bench_speed_chain": "chain", "bench_speed_penalty": "penalty",
            "bench_speed_energy_grad": "energy_grad", "bench_memory_chain": "memory"}


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    device = torch.device(cfg.getoption("bench_device"))
    kind = _KIND_OF[metafunc.function.__name__]
    cases = [c for c in planned_cases(device, cfg.getoption("bench_quick"), _common.thread_counts(cfg))
             if c["kind"] == kind]
    metafunc.parametrize("case", cases, ids=[_case_id(c) for c in cases])


# --------------------------------------------------------------------------- benchmark functions
def _prepare(record_property, case: dict, make, device: torch.device):
    """Builds the candidate, runs it once (warm-up and probe) and returns (fn, info); skips, with the
    reason, a candidate that cannot run here or that ran another kernel than the one it names."""
    record_property("case", case)
    torch.set_num_threads(case["threads"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the baselines' matmuls in plain float32
    try:
        fn, kernel_of = make(_workload(case), case["impl"], device)
    except W.NotAvailable as exc:
        pytest.skip(str(exc))
    _dispatch.LAST_CHOICE.clear()  # what it records now is this candidate's
    fn()
    kernel = kernel_of()
    want = case["impl"][len("fused["):-1] if case["impl"].startswith("fused[") else None
    if want is not None and any(k.split("=")[-1] != want for k in kernel.split()):
        pytest.skip(f"the {case['kind']} ran on {kernel!r}, not {want!r}")  # never time a fallback under a fused name
    return fn, {**case, "kernel": kernel}


def bench_speed_matmul_peak(benchmark, record_property, device, case):
    record_property("case", case)
    torch.set_num_threads(case["threads"])
    fn, flops = W.matmul_candidate(device, tf32=case["impl"] == "tf32")
    fn()
    _common.run_benchmark(benchmark, fn, {**case, "flops": flops, "kernel": "torch.mm"}, device, cpu_time=False)


def bench_speed_chain(benchmark, record_property, device, case):
    fn, info = _prepare(record_property, case, W.chain_candidate, device)
    info["flops"] = _common.chain_flops(_workload(case).dims, case["batch"], case["steps"])
    _common.run_benchmark(benchmark, fn, info, device)


def bench_speed_penalty(benchmark, record_property, device, case):
    fn, info = _prepare(record_property, case, W.penalty_candidate, device)
    info["flops"] = _common.penalty_flops(_workload(case).dims, case["batch"])
    _common.run_benchmark(benchmark, fn, info, device)


def bench_speed_energy_grad(benchmark, record_property, device, case):
    fn, info = _prepare(record_property, case, W.energy_grad_candidate, device)
    info["flops"] = _common.chain_flops(_workload(case).dims, case["batch"], 1)
    _common.run_benchmark(benchmark, fn, info, device)


def bench_memory_chain(benchmark, record_property, device, case):
    """Peak memory growth of a K-step chain (no trajectory) over a K=2 warm-up; times the chain once."""
    warm, _ = _prepare(record_property, {**case, "steps": 2}, W.chain_candidate, device)
    fn, info = _prepare(record_property, case, W.chain_candidate, device)
    if device.type == "cuda":
        warm()
        info["peak_mem_growth_mb"] = W.cuda_peak_growth_mb(fn, device)
    else:
        info["peak_mem_growth_mb"] = W.cpu_rss_growth_mb(case["impl"].split("[")[0], case["steps"])
    benchmark.extra_info.update(info, load_before=round(_common.load_avg()[0], 2))
    benchmark.pedantic(fn, rounds=1, iterations=1)
    benchmark.extra_info["load_after"] = round(_common.load_avg()[0], 2)


# --------------------------------------------------------------------------- command line
# glibc malloc settings of --steady-malloc: big tensors stay in the heap instead of being mmap'ed and
# unmapped (and page-faulted again) on every allocation, and the heap is never trimmed
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


FILE_TAG = {"cpu": "cpu", "cuda": "gpu"}  # results file names: mlp_cpu.*, mlp_gpu.*


def allocator_note() -> str:
    if all(os.environ.get(k) == v for k, v in STEADY_MALLOC.items()):
        return "glibc malloc with " + ", ".join(f"{k}={v}" for k, v in STEADY_MALLOC.items()) + " (--steady-malloc)"
    return "glibc malloc defaults"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--quick", action="store_true",
                    help="CPU: 10-step chains, no memory sweep; CUDA: the first two chains and penalty workloads")
    ap.add_argument("--out", default=_common.RESULTS, help="results folder (default bench/results)")
    ap.add_argument("--threads", default="2,1", help="CPU: comma-separated torch thread counts (default 2,1)")
    ap.add_argument("--steady-malloc", action="store_true",
                    help="CPU: re-run with glibc malloc never returning memory to the OS (see STEADY_MALLOC)")
    ap.add_argument("-k", dest="select", default=None, help="pytest -k expression: run only matching cases")
    ap.add_argument("--not-measured", action="store_true",
                    help="write the planned table of --device with every row 'not measured', and exit")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.steady_malloc and args.device == "cuda":
        sys.exit("--steady-malloc is a CPU setting (glibc malloc); the CUDA caching allocator ignores it")
    if args.steady_malloc and allocator_note() == "glibc malloc defaults":
        # glibc reads these at process start: re-exec with them set
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **STEADY_MALLOC})
    device = torch.device(args.device)
    stem = f"mlp_{FILE_TAG[args.device]}" + ("_steady_malloc" if args.steady_malloc else "") + ("_quick" if args.quick else "")
    command = "python bench/bench_mlp.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.not_measured:
        threads = [1] if args.device == "cuda" else [int(t) for t in args.threads.split(",")]
        planned = planned_cases(device, args.quick, threads)
        _mlp_report.write_not_measured(planned, device, args.out, stem)
        return 0
    load_before, t_start, env = _common.start_run(device)
    extra = ["--bench-threads", args.threads] + (["-k", args.select] if args.select else [])
    cases = _common.run_pytest(os.path.abspath(__file__), args.device, args.quick, extra)
    run = {"mode": "quick" if args.quick else "full", "malloc": allocator_note()}
    rows = _mlp_report.table_rows(cases, env, run)
    _mlp_report.write(rows, device, args.out, stem, env, run, load_before, t_start, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())

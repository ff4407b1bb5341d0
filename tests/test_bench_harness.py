"""The benchmark harness in bench/: pytest-benchmark collects the bench_* functions, the command lines
write their CSV rows and ratio tables, and the ratios are computed from the right rows.

The command-line runs here are tiny (-k selects a few cases, --quick): they prove the code paths and
the files, not the speed.
"""
import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    import _langevin_report
    import _mlp_report
    import bench_mlp

    yield bench_mlp, _mlp_report, _langevin_report
    sys.path.remove(str(BENCH))


def test_pytest_collects_the_benchmark_functions_only_under_bench():
    pytest.importorskip("pytest_benchmark", reason="the benchmarks time with pytest-benchmark")
    res = _run("-m", "pytest", BENCH, "--benchmark-only", "--collect-only", "-q", "--bench-quick",
               "--bench-threads", "1")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ids = [line for line in res.stdout.splitlines() if "::" in line]
    assert "bench_mlp.py::bench_speed_chain[t1-2-128x3-1-fused[cpu]]" in ids
    assert "bench_mlp.py::bench_speed_penalty[t1-2-32x3-1-node_floor]" in ids
    assert "bench_langevin_step.py::bench_speed_langevin_step[t1-1000000-fused_]" in ids
    assert "bench_langevin_step.py::bench_speed_chain[t1-mlp-ebmfast.sample]" in ids
    assert not any("bench_memory_chain[t" in i for i in ids)  # --quick on the CPU: no memory sweep
    # the test suite's own run (`python -m pytest`, testpaths = tests) never reaches bench/
    assert 'testpaths = ["tests"]' in (ROOT / "pyproject.toml").read_text()
    assert not list(BENCH.glob("test_*.py"))


def test_mlp_command_line_writes_csv_and_table(tmp_path):
    pytest.importorskip("pytest_benchmark", reason="the benchmarks time with pytest-benchmark")
    res = _run(BENCH / "bench_mlp.py", "--device", "cpu", "--quick", "--threads", "1", "--out", tmp_path,
               "-k", "peak or (2-32x3-1 and not pen)")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = _csv(tmp_path / "mlp_cpu_quick.csv")
    by = {r["impl"]: r for r in rows}
    assert {"eager", "ebm_loop", "fused[cpu]", "torchebm", "ebmkit"} == set(by)
    for col in ("date", "device", "threads", "torch", "triton", "ebmfast", "commit", "load_1m", "malloc"):
        assert rows[0][col], col
    fused, eager = by["fused[cpu]"], by["eager"]
    assert fused["kernel"] == "cpu" and fused["target"] == "6x eager" and fused["meets_target"] in ("yes", "no")
    assert float(eager["speedup_vs_eager"]) == 1.0
    ratio = float(eager["ms_median"]) / float(fused["ms_median"])
    assert float(fused["speedup_vs_eager"]) == pytest.approx(ratio, rel=2e-3)
    assert float(fused["gflops"]) > 0 and float(fused["matmul_peak_gflops"]) > 0 and float(fused["cpu_ms_median"]) > 0
    for peer in ("torchebm", "ebmkit"):  # measured when installed, else a row saying why
        assert by[peer]["ms_median"] or by[peer]["note"].startswith(f"not measured: {peer} not installed")
    md = (tmp_path / "mlp_cpu_quick.md").read_text()
    assert "## Whole chains (K steps)" in md and "| 1 | iii: 2-32x3-1 silu | fused[cpu] |" in md
    assert "## Conditions" in md and "load average" in md


def test_langevin_command_line_writes_csv_and_table(tmp_path):
    pytest.importorskip("pytest_benchmark", reason="the benchmarks time with pytest-benchmark")
    res = _run(BENCH / "bench_langevin_step.py", "--device", "cpu", "--quick", "--threads", "1", "--out", tmp_path,
               "-k", "10000 and (copy or eager or fused)")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = {r["variant"]: r for r in _csv(tmp_path / "langevin_step_cpu_quick.csv")}
    assert {"copy", "eager", "eager_", "fused", "fused_", "fused_nonoise", "fused_noisegiven"} <= set(rows)
    f = rows["fused"]
    assert f["baseline"] == "eager" and int(f["blocks"]) >= 3 and f["commit"] and f["load_avg"]
    assert float(f["speedup"]) == pytest.approx(float(rows["eager"]["median_ms"]) / float(f["median_ms"]), rel=1e-9)
    assert float(rows["copy"]["pct_copy_bw"]) == pytest.approx(100.0)
    md = (tmp_path / "langevin_step_cpu_quick.md").read_text()
    assert "### (a) one step" in md and "Philox + Box-Muller" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without a CUDA device")
def test_cuda_without_a_gpu_says_so(tmp_path, bench_modules):
    import bench_langevin_step

    for mod in (bench_modules[0], bench_langevin_step):
        with pytest.raises(SystemExit, match="--device cuda: no CUDA device visible to torch"):
            mod.main(["--device", "cuda", "--quick", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_gpu_table_not_measured(tmp_path, bench_modules):
    bench_mlp = bench_modules[0]
    bench_mlp.main(["--device", "cuda", "--not-measured", "--out", str(tmp_path)])
    md = (tmp_path / "mlp_gpu.md").read_text()
    assert "| i: 2-128x3-1 silu | fused[triton] |" in md and "20x eager, 10x torchebm" in md
    assert md.count("not measured") >= 40 and "fused[cuda]" in md and "## Peak memory" in md
    assert not (tmp_path / "mlp_gpu.csv").exists()


def _timed(threads, kind, workload, impl, median_s, targets=(), **extra):
    return {"kind": kind, "threads": threads, "workload": workload, "impl": impl, "batch": 1000, "steps": 60,
            "targets": [list(t) for t in targets], "device_type": "cpu", "median_s": median_s,
            "min_s": median_s * 0.9, "q1_s": median_s, "q3_s": median_s, "rounds": 7, "iterations": 1,
            "flops": 1e9, "load_before": 0.5, "load_after": 0.6, "cpu_ms": median_s * 1e3, **extra}


def test_ratios_targets_and_target_needs(bench_modules):
    _, report, _ = bench_modules
    w, tg = "iii: 2-32x3-1 silu", (("eager", 6.0),)
    timed = [_timed(1, "matmul", "matmul peak", "fp32", 0.01), _timed(1, "chain", w, "eager", 0.030),
             _timed(1, "chain", w, "fused[cpu]", 0.006, tg), _timed(2, "chain", w, "eager", 0.020),
             _timed(2, "chain", w, "fused[cpu]", 0.002, tg)]
    skipped = [{**_timed(1, "chain", w, "torchebm", 0.0), "note": "not measured: torchebm not installed"}]
    for k in ("median_s", "min_s", "q1_s", "q3_s"):
        del skipped[0][k]
    rows = report.table_rows(timed + skipped, {"date": "d"}, {"mode": "full", "malloc": "m"})
    by = {(r["threads"], r["impl"]): r for r in rows}
    assert by[(1, "fused[cpu]")]["speedup_vs_eager"] == 5.0 and by[(1, "fused[cpu]")]["meets_target"] == "no"
    assert by[(2, "fused[cpu]")]["speedup_vs_eager"] == 10.0 and by[(2, "fused[cpu]")]["meets_target"] == "yes"
    # peak: 1e9 FLOP in the fastest round (0.009 s) = 111 GFLOP/s; 6x needs 1e9 FLOP in 5 ms = 200 GFLOP/s
    assert by[(1, "fused[cpu]")]["matmul_peak_gflops"] == pytest.approx(1e9 / 0.009 / 1e9, rel=1e-3)
    assert by[(1, "fused[cpu]")]["target_needs"] == "200 GFLOP/s (180%)"
    assert by[(1, "torchebm")]["note"] == "not measured: torchebm not installed" and "ms_median" not in by[(1, "torchebm")]
    assert by[(1, "eager")]["target"] == "" and by[(1, "fused[cpu]")]["target"] == "6x eager"


def test_cuda_runs_read_torch_benchmarks_synchronising_clock(monkeypatch, bench_modules):
    """On CUDA pytest-benchmark must time with a clock that waits for the GPU (set before it starts)."""
    pytest.importorskip("pytest_benchmark", reason="the benchmarks time with pytest-benchmark")
    import importlib.util
    import types

    from pytest_benchmark.utils import load_timer

    spec = importlib.util.spec_from_file_location("bench_conftest", BENCH / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    options = {"bench_device": "cuda"}
    config = types.SimpleNamespace(getoption=options.get, option=types.SimpleNamespace(benchmark_timer="x.y"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    conftest.pytest_configure(config)
    assert config.option.benchmark_timer == "torch.utils.benchmark.utils.timer.timer"
    assert load_timer(config.option.benchmark_timer).target.__module__ == "torch.utils.benchmark.utils.timer"
    options["bench_device"] = "cpu"
    config.option.benchmark_timer = "time.perf_counter"
    conftest.pytest_configure(config)
    assert config.option.benchmark_timer == "time.perf_counter"

"""The GPU session tooling runs here, without a GPU: scripts/gpu_session.sh and bench/bench_mlp_gpu.py.

A GPU session is short (30 minutes of device time, 10 per call), so a script that breaks there
wastes it. These tests run everything that can run on a CPU: the shell script's syntax, argument
checks, packing and its no-GPU failure path; the JUnit check that GPU-only tests really ran; and
`bench_mlp_gpu.py --smoke` (TRITON_INTERPRET=1, tiny sizes), whose CSV must hold every kind of row
(correctness checks, chains with the peers, penalty steps, memory, E + grad) with the issue's
targets, the kernel that ran, and a reason on every row that could not run.
"""
import csv
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_session.sh"
BENCH = ROOT / "bench" / "bench_mlp_gpu.py"
BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", PYTHON=sys.executable)
    env.update(extra)
    return env


def _session(tmp_path, *args, **env):
    return subprocess.run([BASH, str(SCRIPT), str(tmp_path / "out"), *args], capture_output=True, text=True,
                          env=_env(**env), timeout=120, cwd=tmp_path)


@needs_bash
def test_script_syntax():
    res = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@needs_bash
def test_usage_and_unknown_phase(tmp_path):
    res = subprocess.run([BASH, str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "usage: bash scripts/gpu_session.sh OUT_DIR" in res.stderr
    res = _session(tmp_path, "tests")
    assert res.returncode == 1
    assert "unknown phase 'tests'" in res.stdout
    # stopped before doing anything, and still packed what it had
    assert (tmp_path / "out" / "SUMMARY.txt").read_text().count("FAILED args") == 1


@needs_bash
def test_env_phase_packs_logs_and_says_why_without_gpu(tmp_path):
    res = _session(tmp_path, "env")
    out = tmp_path / "out"
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files  # the device tool returns at most 8 files
    assert {"session.log", "SUMMARY.txt", "results.tar.gz"} <= set(files), files
    summary = (out / "SUMMARY.txt").read_text()
    if torch.cuda.is_available():
        assert res.returncode == 0 and "OK env" in summary, res.stdout[-2000:]
    else:
        assert res.returncode == 1
        assert "FAILED env: no usable CUDA GPU" in summary and "STOPPED at step 'env'" in summary
        assert "no CUDA GPU visible to torch" in (out / "session.log").read_text()
    with tarfile.open(out / "results.tar.gz") as tar:
        assert "logs/env.log" in tar.getnames()


def _check_junit(tmp_path, cases):
    """Runs the script's check_junit function on a JUnit XML with these (classname, name, status)."""
    body = []
    for cls, name, status in cases:
        inner = {"passed": "", "skipped": '<skipped message="needs a GPU"/>', "failed": '<failure message="x"/>'}[status]
        body.append(f'<testcase classname="{cls}" name="{name}">{inner}</testcase>')
    xml = tmp_path / "j.xml"
    xml.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest">' + "".join(body)
                   + "</testsuite></testsuites>")
    text = SCRIPT.read_text()
    start = text.index("check_junit() {")
    fn = text[start:text.index("\n}\n", start) + 3]
    return subprocess.run([BASH, "-c", fn + f'\ncheck_junit "{xml}"'], capture_output=True, text=True,
                          env=_env(PY=sys.executable), timeout=60)


@needs_bash
def test_junit_check_requires_the_gpu_tests_to_have_run(tmp_path):
    good = [("tests.ops.test_mlp_cuda_backward_emulated", "test_cuda_op_on_gpu[f64]", "passed"),
            ("tests.ops.test_mlp_cuda_backward_emulated", "test_cuda_op_on_gpu[f32]", "passed"),
            ("tests.ops.test_langevin_step", "test_matches_reference[cuda-float32]", "passed"),
            ("tests.ops.test_mlp_triton_aot", "test_small_network_compiles_for_hopper", "passed"),
            ("tests.ops.test_langevin_step", "test_explicit_backend_that_cannot_run_says_why", "skipped")]
    res = _check_junit(tmp_path, good)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 tests: 4 passed, 0 failed, 1 skipped" in res.stdout
    # a GPU test that skipped (no GPU / no CUDA build) or failed must stop the session
    skipped = [c if c[1] != "test_cuda_op_on_gpu[f32]" else (c[0], c[1], "skipped") for c in good]
    res = _check_junit(tmp_path, skipped)
    assert res.returncode == 1 and "CUDA mlp_energy_grad_backward op on the GPU (f32, f64): 1/2" in res.stderr
    res = _check_junit(tmp_path, [c for c in good if "langevin" not in c[0]])
    assert res.returncode == 1 and "langevin_step on the cuda backend: 0/0" in res.stderr


def test_bench_smoke_writes_every_kind_of_row(tmp_path):
    pytest.importorskip("triton")
    res = subprocess.run([sys.executable, str(BENCH), "--smoke", "--out", str(tmp_path)], capture_output=True,
                         text=True, env=_env(TRITON_INTERPRET="1"), timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with open(tmp_path / "mlp_gpu_smoke.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for col in ("date", "device", "torch", "triton", "ebmfast", "workload", "kind", "impl", "kernel", "ms_median",
                "speedup_vs_baseline", "speedup_vs_torchebm", "target", "meets_target", "tflops", "pct_peak",
                "peak_mem_growth_mb", "max_rel_err", "status", "note"):
        assert col in rows[0], col
    by = {(r["kind"], r["impl"]): r for r in rows}
    assert {r["kind"] for r in rows} == {"check", "chain", "penalty", "memory", "energy_grad"}

    # correctness: the triton kernels (interpreter) match float64; cuda cannot run here and says why
    checks = [r for r in rows if r["kind"] == "check"]
    assert all(r["status"] != "FAIL" for r in checks), [r for r in checks if r["status"] == "FAIL"]
    ok = [r for r in checks if r["status"] == "ok"]
    assert {r["impl"] for r in ok} >= {"energy_grad[triton]", "chain[triton]", "penalty[triton]"}
    assert all(0 <= float(r["max_rel_err"]) <= float(r["tolerance"]) for r in ok)
    assert all("cannot run" in r["note"] for r in checks if r["impl"].endswith("[cuda]")) or torch.cuda.is_available()

    # chains of workload (i): baseline, the fused row with the kernel that ran and the targets
    fused = by[("chain", "fused[triton]")]
    assert fused["kernel"] == "triton" and float(fused["ms_median"]) > 0
    assert fused["target"] == "20x eager, 10x torchebm" and fused["meets_target"] in ("yes", "no")
    assert float(by[("chain", "eager")]["speedup_vs_baseline"]) == 1.0
    for peer in ("torchebm", "ebmkit"):  # measured when installed, else a row saying why
        r = by[("chain", peer)]
        assert r["ms_median"] or r["note"].startswith("not measured"), r
    if by[("chain", "torchebm")]["ms_median"]:
        assert float(fused["speedup_vs_torchebm"]) > 0
    assert by[("chain", "fused[cuda]")]["note"].startswith("not measured: ")

    # penalty step: forward and backward kernels named; the 3x target
    pen = by[("penalty", "fused[triton]")]
    assert pen["kernel"] == "fwd=triton bwd=cpu" and pen["target"] == "3x autograd"
    assert float(pen["tflops"]) > 0 and float(pen["pct_peak"]) > 0

    # memory rows for every K, for the eager loop and the fused chain
    mem = [r for r in rows if r["kind"] == "memory" and r["steps"]]
    assert {(r["impl"], r["steps"]) for r in mem} >= {("eager", "2"), ("eager", "4"), ("fused[triton]", "2"),
                                                      ("fused[triton]", "4")}
    md = (tmp_path / "mlp_gpu_smoke.md").read_text()
    for heading in ("## Issue #3 targets", "## Whole chains", "## Penalty step", "## Peak memory",
                    "## Correctness on this device", "## Environment"):
        assert heading in md, heading


def _bench_module():
    sys.path.insert(0, str(BENCH.parent))
    import bench_mlp_gpu

    return bench_mlp_gpu


def test_bench_not_measured_md(tmp_path):
    _bench_module().main(["--not-measured", "no GPU here", "--out", str(tmp_path)])
    md = (tmp_path / "mlp_gpu.md").read_text()
    assert "Not measured yet: no GPU here" in md
    assert "| i: 2-128x3-1 silu (D=2, B=1000, K=60) | chain |" in md and "20x eager, 10x torchebm" in md
    assert md.count("3x autograd") == 2 and "K = 10, 100, 1000" in md


def test_check_unit_crosses_a_process_boundary():
    """On a GPU the checks run in spawned workers (--jobs): a unit's arguments and results must
    pickle, and a unit must compare the kernel with the float64 reference by itself."""
    pytest.importorskip("triton")
    import pickle

    from ebmfast.ops import _dispatch

    if not _dispatch.triton_interpret():
        pytest.skip("needs TRITON_INTERPRET=1 (tests/conftest.py sets it)")
    b = _bench_module()
    unit = ("2-16x1-1", 2, (16,), 8, torch.float64, "tanh", b.FWD_BWD)
    args = pickle.loads(pickle.dumps((unit, "cpu", ("triton",), {"mode": "test"})))
    rows, lines = pickle.loads(pickle.dumps(b.check_unit(*args)))
    assert [r["impl"] for r in rows] == ["energy_grad[triton]", "penalty[triton]"], rows
    assert all(r["status"] == "ok" and r["max_rel_err"] <= 1e-10 and r["mode"] == "test" for r in rows), rows
    assert len(lines) == 2 and all("[triton]" in line for line in lines)

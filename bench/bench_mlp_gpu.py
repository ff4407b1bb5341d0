"""GPU benchmark of the fused MLP energy (issue #3): chains, penalty steps, memory, correctness.

    PYTHONPATH=. python bench/bench_mlp_gpu.py            # CUDA GPU: check + benchmark, writes
                                                          #   bench/results/mlp_gpu.{csv,md}
    PYTHONPATH=. python bench/bench_mlp_gpu.py --quick    # workload (i), one more chain, the penalties,
                                                          #   memory; writes mlp_gpu_quick.{csv,md}
    PYTHONPATH=. python bench/bench_mlp_gpu.py --check    # correctness of every GPU path only (exit 1 on a failure)
    TRITON_INTERPRET=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_mlp_gpu.py --smoke [--out DIR]
                                                          # CPU, tiny sizes (< 60 s): every code path runs;
                                                          #   files only with --out
    PYTHONPATH=. python bench/bench_mlp_gpu.py --not-measured "no GPU in this session"
                                                          # writes mlp_gpu.md: the planned rows, "not measured yet"

scripts/gpu_session.sh runs it on a GPU machine. Every row is MLPEnergy, float32, SiLU,
x0 ~ N(0, I), step 0.01, noise 0.1, TF32 off for PyTorch's own matmuls (the baselines).

chain (K Langevin steps; baseline: eager):
  eager          autograd.grad loop: x - step * g + noise * randn
  ebm_loop       ebmfast.sample on a plain callable: autograd gradients + the fused step op
  fused[cuda]    ebmfast.sample(MLPEnergy, backend="cuda"): the whole chain in one CUDA launch
  fused[triton]  the same with backend="triton": one Triton launch
  torchebm / ebmkit   the peers' Langevin samplers on the same module (as bench/bench_mlp.py;
                 torchebm's noise_scale is set so that its sqrt(2 step) * noise_scale = 0.1)
  Workload (i) is the issue's: 2-D input, 2-128-128-128-1, 1000 particles, 60 steps.
  Targets on (i): fused >= 20x eager and >= 10x torchebm.
energy_grad (one E + grad_x E; baseline: autograd): autograd vs ebmfast.ops.mlp_energy_grad.
penalty (one step: E + gradient-norm penalty (L=1) + backward to every parameter, as
  bench_mlp.py's penalty_rows; baseline: autograd create_graph double backward) vs
  ebmfast.ops.grad_norm_penalty with EBMFAST_BACKEND=cuda / triton set around the call: the
  variable picks the forward kernel AND the backward kernel (mlp_energy._gpu_backward_backend
  reads it; the backend= argument reaches the forward only). The row's `kernel` column is what
  _dispatch.LAST_CHOICE recorded for both. Target: >= 3x autograd (widths 32 and 128, B=1000).
memory: torch.cuda.max_memory_allocated growth over the memory allocated before the call, for
  chains of K = 10, 100, 1000 steps (one K=2 warm-up first); the fused chain's must not grow with K.
check: before timing, every fused path (E + grad, chain with and without noise, penalty
  gradients; every activation; float32 and float64) is compared with a float64 CPU reference
  (relative error ||out - ref|| / ||ref||) and the kernel that ran is checked to be the one asked
  for, so a fast but wrong kernel, or a silent fallback, is visible in the same report. The units
  run in --jobs spawned processes (Triton JIT-compiles ~50 kernel variants; compiles overlap).

Times: medians of triton.testing.do_bench (bench/_common.time_cuda; interquartile range
recorded). FLOPs count a multiply-add as 2: a chain step or E + grad is forward + input
gradient, 4 sum(d_i d_{i+1}) per particle; a penalty step adds the double backward, 12 sum(d_i
d_{i+1}) per particle (bench_mlp.py's accounting). "% peak" is against torch.mm [4096, 4096]
float32 on the same device with TF32 off (the FP32 FMA rate that the CUDA kernel's
arithmetic runs at); the TF32 matmul rate is recorded beside it (Triton's float32 dots use
three TF32 products, "tf32x3").
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import os
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (also puts the repository root on sys.path)

import torch  # noqa: E402

import ebmfast  # noqa: E402
from ebmfast import _ext  # noqa: E402
from ebmfast.energies import MLPEnergy  # noqa: E402
from ebmfast.ops import _dispatch, grad_norm_penalty  # noqa: E402
from ebmfast.ops.mlp_activations import CODE_NAMES  # noqa: E402
from ebmfast.ops.mlp_energy import mlp_energy_grad  # noqa: E402

STEP, NOISE = 0.01, 0.1
PEN_WEIGHT, LIPSCHITZ = 0.1, 1.0
RESULTS = os.path.join(_common.ROOT, "bench", "results")


@dataclass(frozen=True)
class Workload:
    """One benchmark row group. targets: ((baseline impl, minimum speedup of the fused rows), ...)."""

    name: str
    d: int
    hidden: tuple
    batch: int
    steps: int = 1
    targets: tuple = ()

    @property
    def dims(self) -> tuple:
        return (self.d,) + tuple(self.hidden) + (1,)


ISSUE_I = (("eager", 20.0), ("torchebm", 10.0))
PEN_TARGET = (("autograd", 3.0),)
CHAINS = [
    Workload("i: 2-128x3-1 silu", 2, (128,) * 3, 1000, 60, ISSUE_I),  # the issue's workload (i)
    Workload("2-32x3-1 silu", 2, (32,) * 3, 4096, 100),
    Workload("2-128x3-1 silu B=65536", 2, (128,) * 3, 65536, 100),
    Workload("2-128x5-1 silu", 2, (128,) * 5, 10000, 60),
    Workload("32-128x3-1 silu", 32, (128,) * 3, 10000, 60),
]
PENALTIES = [
    Workload("pen: 2-32x3-1 silu", 2, (32,) * 3, 1000, 1, PEN_TARGET),
    Workload("pen: 2-128x3-1 silu", 2, (128,) * 3, 1000, 1, PEN_TARGET),
    Workload("pen: 2-128x3-1 silu B=65536", 2, (128,) * 3, 65536),  # fills the GPU: launch cost vs work
]
MEMORY = Workload("mem: 2-128x3-1 silu B=1000", 2, (128,) * 3, 1000)
MEMORY_KS = (10, 100, 1000)
# --quick: the issue's rows only (plus one small chain); --smoke: tiny, CPU, the same code paths
QUICK_CHAINS, QUICK_PENALTIES = CHAINS[:2], PENALTIES[:2]
SMOKE_CHAINS = [Workload("i(smoke): 2-16x2-1 silu", 2, (16, 16), 40, 3, ISSUE_I)]
SMOKE_PENALTIES = [Workload("pen(smoke): 2-16x2-1 silu", 2, (16, 16), 40, 1, PEN_TARGET)]
SMOKE_MEMORY, SMOKE_MEMORY_KS = Workload("mem(smoke): 2-16x2-1 silu", 2, (16, 16), 40), (2, 4)

# correctness check: (name, in_dim, hidden, batch, dtypes, activations, ops). One unit per (net,
# dtype, activation) runs in a worker process (--jobs): Triton JIT-compiles every kernel variant
# (a few seconds each on the CPU, ~50 of them here), and the compiles of separate processes overlap.
ALL_OPS, FWD_BWD = ("energy_grad", "chain", "penalty"), ("energy_grad", "penalty")
ALL_ACTS = tuple(CODE_NAMES.values())
CHECKS = [
    ("2-32x3-1", 2, (32,) * 3, 257, (torch.float32, torch.float64), ("silu",), ALL_OPS),
    # every activation's sigma' and sigma'' in the forward and the analytic double backward
    ("2-32x2-1 every activation", 2, (32, 32), 100, (torch.float64,), ALL_ACTS, FWD_BWD),
    ("2-32x2-1 tanh chain", 2, (32, 32), 100, (torch.float64,), ("tanh",), ("chain",)),
    ("2-128x3-1", 2, (128,) * 3, 1000, (torch.float32, torch.float64), ("silu",), ALL_OPS),
    ("2-128x5-1", 2, (128,) * 5, 300, (torch.float32,), ("silu",), ALL_OPS),
    ("32-128x3-1", 32, (128,) * 3, 300, (torch.float32,), ("silu",), ALL_OPS),  # triton declines it on GPUs
    ("19-64x2-1 (D >= 16: tl.dot layer 1)", 19, (64, 64), 200, (torch.float32,), ("gelu",), ALL_OPS),
    ("5-60x2-1 odd sizes", 5, (60, 37), 77, (torch.float32,), ("tanh",), ALL_OPS),
]
SMOKE_CHECKS = [("2-16x2-1", 2, (16, 16), 20, (torch.float32, torch.float64), ("silu",), ALL_OPS),
                ("2-16x1-1", 2, (16,), 20, (torch.float64,), ("tanh",), ALL_OPS)]
# ||out - ref|| / ||ref|| against float64: float32 lands far under these (METHOD: ~1e-6..1e-5);
# the penalty's parameter gradients are batch sums with cancellation, hence the looser bound
# (the chain's float32 state is rounded every step: its displacement carries ~1e-5 of that alone)
TOL = {torch.float32: {"energy_grad": 1e-4, "chain": 1e-3, "penalty": 1e-3},
       torch.float64: {"energy_grad": 1e-10, "chain": 1e-10, "penalty": 1e-9}}

FIELDS = ["mode", "workload", "kind", "impl", "kernel", "dtype", "batch", "steps", "ms_median", "ms_q25", "ms_q75",
          "baseline", "speedup_vs_baseline", "speedup_vs_torchebm", "target", "meets_target",
          "particle_steps_per_s", "tflops", "pct_peak", "pct_peak_tf32", "peak_mem_growth_mb", "max_rel_err",
          "tolerance", "status", "note", "peak_fp32_tflops", "peak_tf32_tflops", "allow_tf32", "cuda", "gpu_sms"]


def macs(dims) -> int:
    return sum(dims[i] * dims[i + 1] for i in range(len(dims) - 1))


# --------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def backend_env(backend):
    """Sets EBMFAST_BACKEND for the block (None: leaves it alone); restores it afterwards."""
    if backend is None:
        yield
        return
    old = os.environ.get(_dispatch.ENV_VAR)
    os.environ[_dispatch.ENV_VAR] = backend
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(_dispatch.ENV_VAR, None)
        else:
            os.environ[_dispatch.ENV_VAR] = old


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peaks(device) -> dict:
    """Measured matmul rates (TFLOP/s): float32 with TF32 off ("fp32") and on ("tf32").

    CPU (smoke only): torch.mm [1024, 256] x [256, 256], as bench_mlp.py; the TF32 figure is nan."""
    if device.type != "cuda":
        a, b = torch.randn(1024, 256), torch.randn(256, 256)
        t = _common.time_group({"mm": lambda: a @ b}, repeats=3, min_block_s=0.01, warmup_s=0.0)["mm"]
        return {"fp32": 2 * 1024 * 256 * 256 / t.median / 1e12, "tf32": float("nan")}
    n = 4096
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)  # random data, not zeros
    out = {}
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        for name, tf32 in (("fp32", False), ("tf32", True)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            out[name] = 2 * n**3 / _common.time_cuda(lambda: a @ b).median / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return out


def time_all(fns: dict, device, envs: dict) -> dict:
    """name -> _common.Timing; envs: name -> EBMFAST_BACKEND value to set while that candidate runs."""
    if device.type == "cuda":
        out = {}
        for name, fn in fns.items():
            with backend_env(envs.get(name)):
                out[name] = _common.time_cuda(fn, warmup_ms=50, rep_ms=300)  # >= a few calls of slow ones
        return out

    def wrap(name, fn):
        def call():
            with backend_env(envs.get(name)):
                return fn()
        return call

    # CPU smoke: proves the code path, the numbers mean nothing (interpreter)
    return _common.time_group({k: wrap(k, f) for k, f in fns.items()}, repeats=3, min_block_s=0.0, warmup_s=0.0)


def probe(fns: dict, envs: dict, kernel_of) -> tuple[dict, dict, dict]:
    """Runs each candidate once: (ok fns, skipped name -> why, name -> kernel that ran)."""
    ok, skipped, kernels = {}, {}, {}
    for name, fn in fns.items():
        _dispatch.LAST_CHOICE.clear()  # what it records now is this candidate's, never a stale entry
        try:
            with backend_env(envs.get(name)):
                out = fn()
            x = out[0] if isinstance(out, tuple) else out
            if isinstance(x, torch.Tensor) and not torch.isfinite(x).all():
                raise RuntimeError("non-finite output")
            ok[name] = fn
            kernels[name] = kernel_of(name)
        except Exception as exc:  # a backend or peer that cannot run here: the row says why
            skipped[name] = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
    return ok, skipped, kernels


def last_choice(op: str, device) -> str:
    return _dispatch.LAST_CHOICE.get((op, device.type), "?")


def backward_kernel(device) -> str:
    """The VJP kernel of the last fused backward: GPUs record it in LAST_CHOICE; on the CPU
    mlp_energy._backward_impl calls the C++ kernel directly (recorded nowhere)."""
    if device.type == "cpu":
        return "cpu" if _ext.available() else "ref"
    return last_choice("mlp_energy_grad_backward", device)


def make_energy(w: Workload, device, act: str = "silu", dtype=torch.float32) -> MLPEnergy:
    torch.manual_seed(0)
    return MLPEnergy(w.d, w.hidden, activation=act).to(device=device, dtype=dtype)


# --------------------------------------------------------------------------- chains
def eager_chain(energy, x0, k):
    x = x0.clone()
    for _ in range(k):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(energy(x).sum(), x)
        x = x.detach() - STEP * g + NOISE * torch.randn_like(x)
    return x


def _sig(v: float, digits: int = 4) -> float:
    """v to `digits` significant digits (a CPU smoke's 1e-5 TFLOP/s must not print as 0)."""
    return float(f"{v:.{digits}g}")


def _targets(w: Workload, impl: str, speedups: dict) -> tuple[str, str]:
    """(target text, "yes" / "no" / "n/a (...)") for a fused row."""
    if not w.targets or not impl.startswith("fused"):
        return "", ""
    text = ", ".join(f"{x:g}x {b}" for b, x in w.targets)
    missing = [b for b, _ in w.targets if b not in speedups]
    if missing:
        return text, f"n/a ({', '.join(missing)} not measured)"
    return text, "yes" if all(speedups[b] >= x for b, x in w.targets) else "no"


def timing_rows(w: Workload, kind: str, res: dict, kernels: dict, skipped: dict, base: str, flops_per: float,
                peaks: dict, extra: dict) -> list[dict]:
    """Rows of one workload: times, speedups vs `base` (and torchebm), targets, TFLOP/s, % peak."""
    rows = []
    base_t = res[base].median if base in res else float("nan")
    for impl, t in res.items():
        sp = {b: res[b].median / t.median for b in (base, "torchebm") if b in res}
        target, meets = _targets(w, impl, sp)
        tflops = flops_per * w.steps / t.median / 1e12
        q = sorted(t.samples)
        rows.append(dict(extra, workload=w.name, kind=kind, impl=impl, kernel=kernels.get(impl, ""),
                         dtype="float32", batch=w.batch, steps=w.steps, ms_median=round(t.median * 1e3, 4),
                         ms_q25=round(q[0] * 1e3, 4), ms_q75=round(q[-1] * 1e3, 4), baseline=base,
                         speedup_vs_baseline=round(base_t / t.median, 2),
                         speedup_vs_torchebm=round(sp["torchebm"], 2) if "torchebm" in sp and kind == "chain" else "",
                         target=target, meets_target=meets, particle_steps_per_s=round(w.batch * w.steps / t.median),
                         tflops=_sig(tflops), pct_peak=_sig(100 * tflops / peaks["fp32"]),
                         pct_peak_tf32=_sig(100 * tflops / peaks["tf32"]) if peaks["tf32"] == peaks["tf32"] else ""))
    for impl, why in skipped.items():
        target, _ = _targets(w, impl, {})
        rows.append(dict(extra, workload=w.name, kind=kind, impl=impl, dtype="float32", batch=w.batch, steps=w.steps,
                         baseline=base, target=target, meets_target="not measured" if target else "",
                         note=f"not measured: {why}"))
    return rows


def chain_rows(workloads, device, backends, peaks, extra, log) -> list[dict]:
    rows = []
    for w in workloads:
        energy = make_energy(w, device)
        x0 = torch.randn(w.batch, w.d, device=device)
        plain = lambda x: energy(x)  # noqa: E731 - no ebmfast_chain hook: the step-by-step loop
        k = w.steps
        fns = {"eager": lambda: eager_chain(energy, x0, k),
               "ebm_loop": lambda: ebmfast.sample(plain, x0, k, STEP, NOISE, seed=0)}
        for be in backends:
            fns[f"fused[{be}]"] = (lambda be=be: ebmfast.sample(energy, x0, k, STEP, NOISE, seed=0, backend=be))
        peers, missing = _common.peer_samplers(energy, STEP, NOISE, device=device)
        for name, f in peers.items():
            fns[name] = (lambda f=f: f(x0, k))

        def kernel_of(impl):
            if impl.startswith("fused"):
                return last_choice("mlp_langevin_chain", device)
            if impl == "ebm_loop":
                return "autograd + langevin_step[" + last_choice("langevin_step", device) + "]"
            return "autograd"

        ok, skipped, kernels = probe(fns, {}, kernel_of)
        skipped.update(missing)
        for impl in [i for i in ok if i.startswith("fused")]:
            want = impl[len("fused["):-1]
            if kernels[impl] != want:  # never time the step-by-step fallback under a fused name
                skipped[impl] = f"the chain ran on {kernels[impl]!r}, not {want!r}"
                del ok[impl]
        res = time_all(ok, device, {})
        rows += timing_rows(w, "chain", res, kernels, skipped, "eager", 4.0 * macs(w.dims) * w.batch, peaks, extra)
        log(f"{w.name:28s} chain   " + "  ".join(f"{i} {t.median * 1e3:.3f} ms" for i, t in res.items())
            + "".join(f"\n{'':37s}[{i} not measured: {why[:150]}]" for i, why in skipped.items()))
    return rows


def energy_grad_rows(workloads, device, backends, peaks, extra, log) -> list[dict]:
    rows = []
    for w in workloads:
        energy = make_energy(w, device)
        x = torch.randn(w.batch, w.d, device=device)
        weights, biases = ([t.detach() for t in ts] for ts in energy.fused_params())

        def autograd_eg():
            xr = x.detach().requires_grad_(True)
            e = energy(xr)
            (g,) = torch.autograd.grad(e.sum(), xr)
            return e, g

        fns = {"autograd": autograd_eg}
        for be in backends:
            fns[f"fused[{be}]"] = (lambda be=be: mlp_energy_grad(x, weights, biases, "silu", backend=be))
        ok, skipped, kernels = probe(fns, {}, lambda i: last_choice("mlp_energy_grad", device)
                                     if i.startswith("fused") else "autograd")
        res = time_all(ok, device, {})
        w1 = Workload(w.name, w.d, w.hidden, w.batch, 1)
        rows += timing_rows(w1, "energy_grad", res, kernels, skipped, "autograd", 4.0 * macs(w.dims) * w.batch,
                            peaks, extra)
        log(f"{w.name:28s} E+grad  " + "  ".join(f"{i} {t.median * 1e3:.4f} ms" for i, t in res.items()))
    return rows


def penalty_rows(workloads, device, backends, peaks, extra, log) -> list[dict]:
    rows = []
    for w in workloads:
        energy = make_energy(w, device)
        x = torch.randn(w.batch, w.d, device=device)

        def autograd_step():
            xr = x.detach().requires_grad_(True)
            e = energy(xr)
            (g,) = torch.autograd.grad(e.sum(), xr, create_graph=True)
            pen = (torch.sqrt(g.pow(2).sum(1) + 1e-12) - LIPSCHITZ).pow(2).mean()
            energy.zero_grad(set_to_none=True)
            (e.mean() + PEN_WEIGHT * pen).backward()
            return e

        def fused_step(be):
            pen, e = grad_norm_penalty(energy, x, lipschitz=LIPSCHITZ, return_energy=True, backend=be)
            energy.zero_grad(set_to_none=True)
            (e.mean() + PEN_WEIGHT * pen).backward()
            return e

        fns, envs = {"autograd": autograd_step}, {}
        for be in backends:
            fns[f"fused[{be}]"] = (lambda be=be: fused_step(be))
            envs[f"fused[{be}]"] = be  # forces the backward kernel too (see the module docstring)

        def kernel_of(impl):
            if not impl.startswith("fused"):
                return "autograd"
            return f"fwd={last_choice('mlp_energy_grad', device)} bwd={backward_kernel(device)}"

        ok, skipped, kernels = probe(fns, envs, kernel_of)
        res = time_all(ok, device, envs)
        rows += timing_rows(w, "penalty", res, kernels, skipped, "autograd", 12.0 * macs(w.dims) * w.batch, peaks,
                            extra)
        log(f"{w.name:28s} penalty " + "  ".join(f"{i} [{kernels[i]}] {t.median * 1e3:.4f} ms"
                                                 for i, t in res.items())
            + "".join(f"\n{'':37s}[{i} not measured: {why[:150]}]" for i, why in skipped.items()))
    return rows


# --------------------------------------------------------------------------- memory vs K
def peak_growth_mb(fn, device) -> float:
    """Peak CUDA memory allocated during fn() above what was allocated before it (MiB); nan on the CPU."""
    if device.type != "cuda":
        fn()  # the code path runs; the CPU has no resettable peak counter
        return float("nan")
    sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del out
    return peak / 2**20


def memory_rows(w: Workload, ks, device, backends, extra, log) -> list[dict]:
    energy = make_energy(w, device)
    x0 = torch.randn(w.batch, w.d, device=device)
    fns = {"eager": lambda k: eager_chain(energy, x0, k)}
    for be in backends:
        fns[f"fused[{be}]"] = (lambda k, be=be: ebmfast.sample(energy, x0, k, STEP, NOISE, seed=0, backend=be))
    rows = []
    for impl, fn in fns.items():
        try:
            fn(2)  # warm-up: allocator pools, cuBLAS workspace, kernel compiles
            kernel = last_choice("mlp_langevin_chain", device) if impl.startswith("fused") else "autograd"
            growth = {k: peak_growth_mb(lambda: fn(k), device) for k in ks}
        except Exception as exc:
            rows.append(dict(extra, workload=w.name, kind="memory", impl=impl, dtype="float32", batch=w.batch,
                             note=f"not measured: {type(exc).__name__}: {exc}"[:300]))
            log(f"{w.name:28s} memory  {impl}: not measured ({type(exc).__name__})")
            continue
        note = "" if device.type == "cuda" else "CPU smoke: torch.cuda memory counters need a GPU"
        for k, mb in growth.items():
            rows.append(dict(extra, workload=w.name, kind="memory", impl=impl, kernel=kernel, dtype="float32",
                             batch=w.batch, steps=k, peak_mem_growth_mb=round(mb, 3), note=note))
        log(f"{w.name:28s} memory  {impl}: " + ", ".join(f"K={k}: {mb:.3f} MiB" for k, mb in growth.items()))
    return rows


def memory_verdict(rows) -> list[str]:
    """One line per impl: does the peak grow from the smallest to the largest K?"""
    out = []
    by_impl = {}
    for r in rows:
        if r["kind"] == "memory" and r.get("peak_mem_growth_mb", "") != "":
            by_impl.setdefault(r["impl"], []).append((r["steps"], r["peak_mem_growth_mb"]))
    for impl, pts in by_impl.items():
        pts.sort()
        lo, hi = pts[0][1], pts[-1][1]
        if lo != lo or hi != hi:
            out.append(f"- {impl}: not measured (no CUDA memory counters)")
            continue
        grows = hi > 1.1 * lo + 0.5  # half a MiB of slack: allocator rounding
        out.append(f"- {impl}: peak growth {lo:.3f} MiB at K={pts[0][0]} -> {hi:.3f} MiB at K={pts[-1][0]}: "
                   + ("GROWS with K" if grows else "does not grow with K"))
    return out


# --------------------------------------------------------------------------- correctness
def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def check_rows(specs, device, backends, extra, log, jobs: int = 1) -> list[dict]:
    """Every fused path on `device` against float64 CPU references; one row per (net, dtype, act,
    backend, op) with status ok / FAIL / declined (a documented refusal of the network). Units run
    in `jobs` worker processes (spawned: each has its own CUDA context), rows in spec order."""
    units = [(name, d, hidden, b, dtype, act, ops) for name, d, hidden, b, dtypes, acts, ops in specs
             for dtype in dtypes for act in acts]
    args = [(u, str(device), tuple(backends), extra) for u in units]
    if jobs <= 1:
        results = [check_unit(*a) for a in args]
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(check_unit, *zip(*args)))
    rows = []
    for unit_rows, lines in results:
        rows += unit_rows
        for line in lines:
            log(line)
    return rows


def check_unit(unit, device: str, backends, extra) -> tuple[list, list]:
    """(rows, log lines) of one (net, dtype, activation) unit; runs in a worker process."""
    name, d, hidden, b, dtype, act, ops = unit
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    lines = []
    torch.manual_seed(1)
    mod = MLPEnergy(d, hidden, activation=act).double()
    with torch.no_grad():  # larger than the default init: every activation regime
        for p in mod.parameters():
            p.mul_(1.5)
    mod = mod.to(device=device, dtype=dtype)
    x = torch.randn(b, d, dtype=torch.float64).to(device=device, dtype=dtype)
    # the references compute the same function (the rounded weights and inputs) in float64 on the CPU:
    # E and grad, the chain (same Philox seed), the penalty's parameter gradients
    ref_mod = copy.deepcopy(mod).to(device="cpu", dtype=torch.float64)
    x64 = x.to(device="cpu", dtype=torch.float64)
    xr = x64.clone().requires_grad_(True)
    e_ref = ref_mod(xr)
    (g_ref,) = torch.autograd.grad(e_ref.sum(), xr, create_graph=True)
    pen_ref = (torch.sqrt(g_ref.pow(2).sum(1) + 1e-12) - LIPSCHITZ).pow(2).mean()
    pgrads_ref = torch.autograd.grad(e_ref.mean() + PEN_WEIGHT * pen_ref, list(ref_mod.parameters()))
    chains_ref = {nz: ebmfast.sample(ref_mod, x64, 5, STEP, nz, seed=7, backend="ref") for nz in (0.0, NOISE)} \
        if "chain" in ops else {}
    rows = []
    for be in backends:
        rows += _check_backend(name, mod, x, x64, dtype, act, be, e_ref, g_ref, pgrads_ref, chains_ref, device,
                               extra, lines.append, ops)
    return rows, lines


def _check_backend(name, mod, x, x64, dtype, act, be, e_ref, g_ref, pgrads_ref, chains_ref, device, extra, log,
                   ops=ALL_OPS):
    rows = []
    tol = TOL[dtype]

    def add(op, kernel, err, status, note=""):
        rows.append(dict(extra, workload=f"check: {name}", kind="check", impl=f"{op}[{be}]", kernel=kernel,
                         dtype=str(dtype).replace("torch.", ""), batch=x.shape[0], steps=5 if op == "chain" else 1,
                         max_rel_err=err if err == "" else float(f"{err:.3g}"), tolerance=tol[op], status=status,
                         note=f"{act}; {note}".strip("; ")))
        log(f"check {name:26s} {str(dtype)[6:]:8s} {act:10s} {op:11s} [{be}] kernel={kernel:18s} "
            f"err={err if err == '' else f'{err:.2e}'} tol={tol[op]:.0e} {status} {note[:150]}")

    def run(op, fn, expect_kernel):
        try:
            with backend_env(be if op == "penalty" else None):
                err, kernel = fn()
        except RuntimeError as exc:
            msg = str(exc).replace("\n", " ")
            # an explicit backend that refuses this network says why; on a GPU only the documented
            # refusal (Triton: D >= 16 with widths > 64) is expected, any other one is a failure
            expected = device.type == "cpu" and be == "cuda" or (be == "triton" and "D >= 16 only" in msg)
            if "cannot run" in msg and expected:
                add(op, "", "", "declined", msg[:300])
                return
            add(op, "", "", "FAIL", f"{type(exc).__name__}: {msg}"[:300])
            return
        except Exception as exc:
            add(op, "", "", "FAIL", f"{type(exc).__name__}: {exc}"[:300])
            return
        bad_kernel = expect_kernel and not all(k == be for k in expect_kernel(kernel))
        status = "ok" if err <= tol[op] and not bad_kernel else "FAIL"
        add(op, kernel, err, status, f"ran {kernel}, not {be}" if bad_kernel else "")

    def energy_grad():
        with torch.no_grad():
            e, g = mod.energy_and_grad(x, backend=be)
        return max(_rel(e, e_ref), _rel(g, g_ref)), last_choice("mlp_energy_grad", device)

    def chain():
        errs = []
        for nz, ref in chains_ref.items():
            out = ebmfast.sample(mod, x, 5, STEP, nz, seed=7, backend=be)
            errs.append(_rel(out.double().cpu() - x64, ref - x64))  # the displacement: what the steps did
        return max(errs), last_choice("mlp_langevin_chain", device)

    def penalty():
        _dispatch.LAST_CHOICE.pop(("mlp_energy_grad_backward", device.type), None)
        pen, e = grad_norm_penalty(mod, x, lipschitz=LIPSCHITZ, return_energy=True, backend=be)
        grads = torch.autograd.grad(e.mean() + PEN_WEIGHT * pen, list(mod.parameters()))
        err = max(_rel(a, r) for a, r in zip(grads, pgrads_ref))
        return err, f"fwd={last_choice('mlp_energy_grad', device)} bwd={backward_kernel(device)}"

    if "energy_grad" in ops:
        run("energy_grad", energy_grad, lambda k: [k])
    if "chain" in ops:
        run("chain", chain, lambda k: [k])
    if "penalty" in ops:
        # on the CPU (smoke) the backward is the C++ kernel whatever the forward: only the forward is checked
        run("penalty", penalty, lambda k: [p.split("=")[1] for p in k.split()][: (2 if device.type == "cuda" else 1)])
    return rows


# --------------------------------------------------------------------------- output
def summary_lines(rows) -> list[str]:
    """The issue's targets, one line each."""
    out = []
    for r in rows:
        if r["kind"] in ("chain", "penalty") and r.get("target"):
            if r.get("ms_median", "") == "":
                out.append(f"- {r['workload']} {r['impl']}: target {r['target']}: {r.get('note', '')}")
                continue
            vs = f"{r['speedup_vs_baseline']}x {r['baseline']}"
            if r.get("speedup_vs_torchebm", "") != "":
                vs += f", {r['speedup_vs_torchebm']}x torchebm"
            out.append(f"- {r['workload']} {r['impl']} ({r['kernel']}): {vs}; target {r['target']}: "
                       f"**{'meets' if r['meets_target'] == 'yes' else 'MISSES' if r['meets_target'] == 'no' else r['meets_target']}**"
                       f"; {r['tflops']} TFLOP/s = {r['pct_peak']}% of the FP32 peak")
    return out


def _peak_text(peaks, extra) -> str:
    if peaks["fp32"] != peaks["fp32"]:
        return "matmul peak not measured (--check: correctness only)."
    if not extra["gpu_sms"]:
        return f"measured matmul peak {peaks['fp32']:.3f} TFLOP/s (CPU smoke: torch.mm 1024x256x256)."
    return (f"measured matmul peak {peaks['fp32']:.2f} TFLOP/s float32 with TF32 off, {peaks['tf32']:.2f} TFLOP/s "
            "with TF32 (torch.mm 4096x4096, random data).")


def write_results(rows, out_dir, stem, env, extra, peaks, args_line, check_failed: int):
    if not rows:
        return
    os.makedirs(out_dir, exist_ok=True)
    csv_path, md_path = os.path.join(out_dir, stem + ".csv"), os.path.join(out_dir, stem + ".md")
    _common.append_csv(csv_path, rows, env, FIELDS)
    t_cols = ["workload", "impl", "kernel", "ms_median", "ms_q25", "ms_q75", "speedup_vs_baseline",
              "speedup_vs_torchebm", "target", "meets_target", "particle_steps_per_s", "tflops", "pct_peak",
              "pct_peak_tf32", "note"]
    t_heads = ["workload", "impl", "kernel", "ms (median)", "q25", "q75", "speedup vs baseline", "vs torchebm",
               "target", "meets", "particle-steps/s", "TFLOP/s", "% FP32 peak", "% TF32 peak", "note"]
    md = [f"# Fused MLP energy, GPU ({env['date']})", "",
          f"Device: {env['device']} ({extra['gpu_sms'] or '?'} SMs); torch {env['torch']} (CUDA "
          f"{extra['cuda'] or '-'}), triton {env['triton']}, ebmfast {env['ebmfast']} (commit {env['commit']}); "
          + _peak_text(peaks, extra), "",
          "Speedups are against the eager autograd loop (chains) or autograd (E + grad, penalty steps), "
          "measured in the same run. Times: median of triton.testing.do_bench (q25, q75 beside it). "
          "TFLOP/s count a multiply-add as 2 (chain step, E + grad: 4 sum(d_i d_i+1) per particle; penalty "
          "step: 12 sum(d_i d_i+1)); `kernel` is what ebmfast's dispatcher recorded as having run.", "",
          f"Command: `{args_line}`", "", "## Issue #3 targets", ""]
    md += summary_lines(rows) or ["- (no target rows in this run)"]
    md += memory_verdict(rows)
    if check_failed:
        md += ["", f"**{check_failed} correctness check(s) FAILED: the timings of those kernels are not "
                   "meaningful (see the last table).**"]
    for kind, title in (("chain", "Whole chains (K steps)"), ("penalty", "Penalty step (E + penalty + backward)"),
                        ("energy_grad", "One E + grad_x E")):
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            md += ["", f"## {title}", "", _common.markdown_table(sel, t_cols, t_heads)]
    mem = [r for r in rows if r["kind"] == "memory"]
    if mem:
        md += ["", "## Peak memory of a chain vs K (torch.cuda.max_memory_allocated growth; no trajectory)", "",
               _common.markdown_table(mem, ["workload", "impl", "kernel", "steps", "peak_mem_growth_mb", "note"],
                                      ["workload", "impl", "kernel", "K", "peak growth (MiB)", "note"])]
    chk = [r for r in rows if r["kind"] == "check"]
    if chk:
        md += ["", "## Correctness on this device (relative error vs float64 CPU references)", "",
               _common.markdown_table(chk, ["workload", "dtype", "impl", "kernel", "max_rel_err", "tolerance",
                                            "status", "note"],
                                      ["network", "dtype", "op[backend]", "kernel that ran", "rel. error",
                                       "tolerance", "status", "note"])]
    md += ["", "## Environment", "", _common.env_markdown(env, {"allow_tf32 (baselines)":
                                                                 torch.backends.cuda.matmul.allow_tf32}), ""]
    with open(md_path, "w") as f:
        f.write("\n".join(md))
    print(f"wrote {md_path} and appended {csv_path}")


def write_not_measured(out_dir, reason: str):
    """mlp_gpu.md before any GPU run: the planned rows and targets, each 'not measured yet'."""
    os.makedirs(out_dir, exist_ok=True)
    date = datetime.datetime.now().isoformat(timespec="seconds")
    md = [f"# Fused MLP energy, GPU (not measured yet; {date})", "",
          f"**Not measured yet: {reason}.** `bash scripts/gpu_session.sh OUT_DIR` runs the build, the GPU tests "
          "and `bench/bench_mlp_gpu.py` on a CUDA machine and writes this file with numbers.", "",
          "Planned rows (MLPEnergy, float32, SiLU, step 0.01, noise 0.1):", "",
          "| workload | kind | impls | target |", "|---|---|---|---|"]
    for w in CHAINS:
        md.append(f"| {w.name} (D={w.d}, B={w.batch}, K={w.steps}) | chain | eager, ebm_loop, fused[cuda], "
                  f"fused[triton], torchebm, ebmkit | {', '.join(f'{x:g}x {b}' for b, x in w.targets) or '-'} "
                  "(not measured yet) |")
    for w in PENALTIES:
        md.append(f"| {w.name} (B={w.batch}) | penalty | autograd, fused[cuda], fused[triton] | "
                  f"{', '.join(f'{x:g}x {b}' for b, x in w.targets) or '-'} (not measured yet) |")
    md.append(f"| {MEMORY.name} | memory | eager, fused[cuda], fused[triton] at K = "
              f"{', '.join(map(str, MEMORY_KS))} | fused peak does not grow with K (not measured yet) |")
    md += ["", "TFLOP/s and % of a measured peak (torch.mm float32, TF32 off) are reported for every row.", ""]
    path = os.path.join(out_dir, "mlp_gpu.md")
    with open(path, "w") as f:
        f.write("\n".join(md))
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the issue's rows only; writes mlp_gpu_quick.*")
    ap.add_argument("--check", action="store_true", help="correctness checks only; exit status 1 on a failure")
    ap.add_argument("--smoke", action="store_true", help="CPU + TRITON_INTERPRET=1, tiny sizes (files only with --out)")
    ap.add_argument("--out", default=None, help=f"results folder (default {RESULTS}; smoke: none)")
    ap.add_argument("--no-check", action="store_true", help="skip the correctness checks before timing")
    ap.add_argument("--jobs", type=int, default=None,
                    help="worker processes for the checks (default: 6 on a GPU, where Triton compiles dominate; "
                         "1 in --smoke)")
    ap.add_argument("--not-measured", metavar="REASON", default=None,
                    help="write mlp_gpu.md with the planned rows marked 'not measured yet: REASON' and exit")
    args = ap.parse_args(argv)
    args_line = "python bench/bench_mlp_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.not_measured is not None:
        write_not_measured(args.out or RESULTS, args.not_measured)
        return []
    t_start = time.perf_counter()
    if args.smoke:
        if not _dispatch.triton_interpret():
            sys.exit("--smoke needs TRITON_INTERPRET=1 (set before triton is imported)")
        device = torch.device("cpu")
        chains, pens, mem, mem_ks, checks = SMOKE_CHAINS, SMOKE_PENALTIES, SMOKE_MEMORY, SMOKE_MEMORY_KS, SMOKE_CHECKS
        eg = SMOKE_CHAINS
        backends = ["cuda", "triton"]  # cuda cannot run on the CPU: exercises the 'not measured: why' rows
        mode, stem, out_dir = "smoke", "mlp_gpu_smoke", args.out
    else:
        if not torch.cuda.is_available():
            sys.exit("bench_mlp_gpu.py needs a CUDA GPU (use --smoke to check the script on the CPU)")
        if _dispatch.triton_interpret():
            sys.exit("TRITON_INTERPRET=1 is set: unset it to run the Triton kernels on the GPU")
        device = torch.device("cuda")
        chains, pens = (QUICK_CHAINS, QUICK_PENALTIES) if args.quick else (CHAINS, PENALTIES)
        eg = chains
        mem, mem_ks, checks = MEMORY, MEMORY_KS, CHECKS
        backends = ["cuda", "triton"]
        mode = "check" if args.check else ("quick" if args.quick else "full")
        stem = {"quick": "mlp_gpu_quick", "check": "mlp_gpu_check", "full": "mlp_gpu"}[mode]
        out_dir = args.out or RESULTS
        torch.backends.cuda.matmul.allow_tf32 = False  # the baselines' matmuls in plain float32
    log = lambda s: print(s, flush=True)  # noqa: E731
    extra = {"mode": mode, "allow_tf32": torch.backends.cuda.matmul.allow_tf32, "cuda": torch.version.cuda or "",
             "gpu_sms": torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda"
             else ""}
    env = _common.env_info(device)
    log(f"== {env['device']}: torch {env['torch']} (CUDA {extra['cuda'] or '-'}), triton {env['triton']}, "
        f"ebmfast {env['ebmfast']}, extension build {_ext.build_info()}, mode {mode}")
    rows = []
    if not args.no_check:
        jobs = args.jobs if args.jobs is not None else (1 if args.smoke else min(6, os.cpu_count() or 1))
        rows += check_rows(checks, device, backends, extra, log, jobs)
    failed = sum(r["status"] == "FAIL" for r in rows)
    log(f"correctness: {sum(r['status'] == 'ok' for r in rows)} ok, {failed} FAIL, "
        f"{sum(r['status'] == 'declined' for r in rows)} declined")
    peaks = {"fp32": float("nan"), "tf32": float("nan")}
    if not args.check:
        peaks = measure_peaks(device)
        extra.update(peak_fp32_tflops=round(peaks["fp32"], 3), peak_tf32_tflops=round(peaks["tf32"], 3))
        log(f"matmul peak: {peaks['fp32']:.2f} TFLOP/s float32 (TF32 off), {peaks['tf32']:.2f} TFLOP/s TF32")
        for r in rows:
            r.update(peak_fp32_tflops=extra["peak_fp32_tflops"], peak_tf32_tflops=extra["peak_tf32_tflops"])
        rows += chain_rows(chains, device, backends, peaks, extra, log)
        rows += penalty_rows(pens, device, backends, peaks, extra, log)
        rows += memory_rows(mem, mem_ks, device, backends, extra, log)
        rows += energy_grad_rows(eg, device, backends, peaks, extra, log)
        log("\n".join(summary_lines(rows) + memory_verdict(rows)))
    if out_dir:
        write_results(rows, out_dir, stem, env, extra, peaks, args_line, failed)
    log(f"done in {time.perf_counter() - t_start:.1f} s")
    if failed:
        log(f"{failed} correctness check(s) FAILED")
        if args.check:
            sys.exit(1)
    return rows


if __name__ == "__main__":
    main()

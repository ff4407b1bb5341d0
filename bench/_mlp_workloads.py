"""Workloads and candidates of the fused MLP energy benchmark (bench/bench_mlp.py), for the CPU and CUDA.

Every row is MLPEnergy, float32, SiLU, x0 ~ N(0, I), step 0.01, noise 0.1 (TF32 off for PyTorch's own
matmuls on CUDA: the baselines run in plain float32).

chain (K Langevin steps; baseline: eager):
  eager          autograd.grad loop: x - step * g + noise * randn
  ebm_loop       ebmfast.sample on a plain callable: autograd gradients + the fused step op
  fused[<b>]     ebmfast.sample(MLPEnergy, backend=b): the whole chain in one kernel (cpu; cuda, triton)
  torchebm / ebmkit   the peers' Langevin samplers on the same module (optional packages)
penalty (E + gradient-norm penalty (L=1) + backward to every parameter; baseline: autograd
  create_graph double backward) vs ebmfast.ops.grad_norm_penalty with EBMFAST_BACKEND=b set around the
  call (it picks the forward and the backward kernel), and node_floor: the same autograd glue around a
  node that computes nothing, which no kernel behind a Python autograd node can remove.
energy_grad (CUDA only; one E + grad_x E; baseline: autograd) vs ebmfast.ops.mlp_energy_grad.
memory: peak growth of a K-step chain over a K=2 warm-up (CPU: RSS of a fresh process; CUDA:
  torch.cuda.max_memory_allocated above the memory allocated before the call).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass

import _common
import torch

import ebmfast
from ebmfast.energies import MLPEnergy
from ebmfast.ops import _dispatch, grad_norm_penalty
from ebmfast.ops.mlp_energy import mlp_energy_grad

STEP, NOISE = 0.01, 0.1
PEN_WEIGHT, LIPSCHITZ = 0.1, 1.0


@dataclass(frozen=True)
class Workload:
    """One group of rows. targets: ((baseline impl, minimum speedup of the fused rows), ...)."""

    name: str
    d: int
    hidden: tuple
    batch: int
    steps: int = 1
    targets: tuple = ()

    @property
    def dims(self) -> tuple:
        return (self.d,) + tuple(self.hidden) + (1,)

    def with_steps(self, steps: int) -> "Workload":
        return Workload(self.name, self.d, self.hidden, self.batch, steps, self.targets)


def _eager(x):
    return (("eager", x),)


CPU_CHAINS = [
    Workload("i: 2-128x3-1 silu", 2, (128,) * 3, 1000, 60, _eager(1.6)),
    Workload("ii: 2-256x4-1 silu", 2, (256,) * 4, 800, 60),
    Workload("iii: 2-32x3-1 silu", 2, (32,) * 3, 1000, 60, _eager(6.0)),
    Workload("iii: 2-64x3-1 silu", 2, (64,) * 3, 1000, 60, _eager(2.5)),
    Workload("iv: 32-128x3-1 silu", 32, (128,) * 3, 1000, 60),
    Workload("iv: 128-128x3-1 silu", 128, (128,) * 3, 1000, 60),
]
CPU_PENALTIES = [Workload("pen: 2-32x3-1 silu", 2, (32,) * 3, 1000, 1, (("autograd", 6.0),)),
                 Workload("pen: 2-128x3-1 silu", 2, (128,) * 3, 1000, 1, (("autograd", 2.5),))]
GPU_CHAINS = [
    Workload("i: 2-128x3-1 silu", 2, (128,) * 3, 1000, 60, (("eager", 20.0), ("torchebm", 10.0))),
    Workload("2-32x3-1 silu", 2, (32,) * 3, 4096, 100),
    Workload("2-128x3-1 silu B=65536", 2, (128,) * 3, 65536, 100),
    Workload("2-128x5-1 silu", 2, (128,) * 5, 10000, 60),
    Workload("32-128x3-1 silu", 32, (128,) * 3, 10000, 60),
]
GPU_PENALTIES = [
    Workload("pen: 2-32x3-1 silu", 2, (32,) * 3, 1000, 1, (("autograd", 3.0),)),
    Workload("pen: 2-128x3-1 silu", 2, (128,) * 3, 1000, 1, (("autograd", 3.0),)),
    Workload("pen: 2-128x3-1 silu B=65536", 2, (128,) * 3, 65536),  # fills the GPU: launch cost vs work
]
MEMORY = Workload("mem: 2-128x3-1 silu B=1000", 2, (128,) * 3, 1000)
MEMORY_KS = (10, 100, 1000)
QUICK_STEPS = 10  # CPU --quick: every chain, 10 steps


def backends(device: torch.device) -> list[str]:
    return ["cuda", "triton"] if device.type == "cuda" else ["cpu"]


def chains(device: torch.device, quick: bool) -> list[Workload]:
    if device.type == "cuda":
        return GPU_CHAINS[:2] if quick else GPU_CHAINS
    return [w.with_steps(QUICK_STEPS) for w in CPU_CHAINS] if quick else CPU_CHAINS


def penalties(device: torch.device, quick: bool) -> list[Workload]:
    if device.type == "cuda":
        return GPU_PENALTIES[:2] if quick else GPU_PENALTIES
    return CPU_PENALTIES


def chain_impls(device: torch.device) -> list[str]:
    return ["eager", "ebm_loop"] + [f"fused[{b}]" for b in backends(device)] + ["torchebm", "ebmkit"]


def penalty_impls(device: torch.device) -> list[str]:
    return ["autograd"] + [f"fused[{b}]" for b in backends(device)] + ["node_floor"]


def memory_impls(device: torch.device) -> list[str]:
    return ["eager"] + [f"fused[{b}]" for b in backends(device)]


class NotAvailable(Exception):
    """A candidate that cannot run on this machine (the message says why)."""


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


def last_choice(op: str, device: torch.device) -> str:
    return _dispatch.LAST_CHOICE.get((op, device.type), "?")


def make_energy(w: Workload, device: torch.device) -> MLPEnergy:
    torch.manual_seed(0)
    return MLPEnergy(w.d, w.hidden, activation="silu").to(device)


def _fused_backend(impl: str) -> str | None:
    return impl[len("fused["):-1] if impl.startswith("fused[") else None


# --------------------------------------------------------------------------- chains
def eager_chain(energy, x0, k):
    x = x0.clone()
    for _ in range(k):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(energy(x).sum(), x)
        x = x.detach() - STEP * g + NOISE * torch.randn_like(x)
    return x


def chain_candidate(w: Workload, impl: str, device: torch.device):
    """(fn, kernel) for one chain row: fn() runs the K-step chain; kernel names what ran (after a call)."""
    energy = make_energy(w, device)
    x0 = torch.randn(w.batch, w.d, device=device)
    k = w.steps
    be = _fused_backend(impl)
    if impl == "eager":
        return (lambda: eager_chain(energy, x0, k)), (lambda: "autograd")
    if impl == "ebm_loop":
        plain = lambda x: energy(x)  # noqa: E731 - no ebmfast_chain hook: the step-by-step loop
        return ((lambda: ebmfast.sample(plain, x0, k, STEP, NOISE, seed=0)),
                lambda: "autograd + langevin_step[" + last_choice("langevin_step", device) + "]")
    if be is not None:
        reasons = _dispatch.not_supported_reasons(be, device, torch.float32)
        if reasons:
            raise NotAvailable(f"backend {be}: {'; '.join(reasons)}")
        return ((lambda: ebmfast.sample(energy, x0, k, STEP, NOISE, seed=0, backend=be)),
                lambda: last_choice("mlp_langevin_chain", device))
    peers, missing = _common.peer_samplers(energy, STEP, NOISE, device=device)
    if impl not in peers:
        raise NotAvailable(missing.get(impl, f"unknown impl {impl!r}"))
    f = peers[impl]
    return (lambda: f(x0, k)), (lambda: _common.package_version(impl))


# --------------------------------------------------------------------------- penalty step and E + grad
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


def penalty_candidate(w: Workload, impl: str, device: torch.device):
    """(fn, kernel) for one penalty-step row (see the module docstring)."""
    energy = make_energy(w, device)
    x = torch.randn(w.batch, w.d, device=device)
    params = list(energy.parameters())
    be = _fused_backend(impl)

    def outer(pen, e):
        energy.zero_grad(set_to_none=True)
        (e.mean() + PEN_WEIGHT * pen).backward()

    if impl == "autograd":
        def step():
            xr = x.detach().requires_grad_(True)
            e = energy(xr)
            (g,) = torch.autograd.grad(e.sum(), xr, create_graph=True)
            outer((torch.sqrt(g.pow(2).sum(1) + 1e-12) - LIPSCHITZ).pow(2).mean(), e)
        return step, (lambda: "autograd")
    if impl == "node_floor":
        return (lambda: outer(*_NoComputePenalty.apply(x, *params))), (lambda: "none")
    if be is None:
        raise NotAvailable(f"unknown impl {impl!r}")
    reasons = _dispatch.not_supported_reasons(be, device, torch.float32)
    if reasons:
        raise NotAvailable(f"backend {be}: {'; '.join(reasons)}")

    def fused_step():
        with backend_env(be):  # picks the backward kernel too (the backend= argument reaches the forward)
            outer(*grad_norm_penalty(energy, x, lipschitz=LIPSCHITZ, return_energy=True, backend=be))

    def kernel():
        if last_choice("mlp_grad_norm_penalty", device) == "cpu":
            return "cpu"  # the one-node CPU penalty: its forward and backward kernels
        bwd = last_choice("mlp_energy_grad_backward", device)
        return f"fwd={last_choice('mlp_energy_grad', device)} bwd={bwd}"
    return fused_step, kernel


def energy_grad_candidate(w: Workload, impl: str, device: torch.device):
    """(fn, kernel) for one E + grad_x E row."""
    energy = make_energy(w, device)
    x = torch.randn(w.batch, w.d, device=device)
    if impl == "autograd":
        def eg():
            xr = x.detach().requires_grad_(True)
            e = energy(xr)
            return e, torch.autograd.grad(e.sum(), xr)[0]
        return eg, (lambda: "autograd")
    be = _fused_backend(impl)
    reasons = _dispatch.not_supported_reasons(be, device, torch.float32) if be else [f"unknown impl {impl!r}"]
    if reasons:
        raise NotAvailable(f"backend {be}: {'; '.join(reasons)}")
    weights, biases = ([t.detach() for t in ts] for ts in energy.fused_params())
    return (lambda: mlp_energy_grad(x, weights, biases, "silu", backend=be)), \
        (lambda: last_choice("mlp_energy_grad", device))


# --------------------------------------------------------------------------- matmul peak
def matmul_candidate(device: torch.device, tf32: bool = False):
    """(fn, FLOPs): torch.mm [1024, 256] x [256, 256] on the CPU; [4096]^2 on CUDA (random data)."""
    m, k, n = (4096, 4096, 4096) if device.type == "cuda" else (1024, 256, 256)
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)

    def mm():
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            return a @ b
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
    return mm, 2.0 * m * k * n


# --------------------------------------------------------------------------- memory vs K
_RSS_CHILD = r"""
import resource, sys
sys.path.insert(0, sys.argv[1])
import torch, ebmfast
from ebmfast.energies import MLPEnergy
from _mlp_workloads import eager_chain, STEP, NOISE
impl, ks = sys.argv[2], [int(k) for k in sys.argv[3].split(",")]
torch.manual_seed(0)
e = MLPEnergy(2, (128, 128, 128)); x0 = torch.randn(1000, 2)
run = (lambda k: eager_chain(e, x0, k)) if impl == "eager" else \
    (lambda k: ebmfast.sample(e, x0, k, STEP, NOISE, seed=0, backend="cpu"))
run(2)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = []
for k in ks:
    run(k)
    out.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
print(",".join(map(str, out)))
"""
_RSS_CACHE: dict = {}


def cpu_rss_growth_mb(impl: str, k: int) -> float:
    """Peak RSS growth (MB) of a K-step chain over a K=2 warm-up, in a fresh process (ru_maxrss only
    grows, so every K of MEMORY_KS runs in one child, in increasing order)."""
    if impl not in _RSS_CACHE:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([_common.ROOT, os.environ.get("PYTHONPATH", "")])}
        res = subprocess.run([sys.executable, "-c", _RSS_CHILD, _common.BENCH_DIR, impl,
                              ",".join(map(str, MEMORY_KS))], capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise RuntimeError(f"memory child for {impl} failed: {res.stderr[-2000:]}")
        kbs = [int(v) for v in res.stdout.strip().splitlines()[-1].split(",")]
        _RSS_CACHE[impl] = dict(zip(MEMORY_KS, kbs))
    return _RSS_CACHE[impl][k] / 1024


def cuda_peak_growth_mb(fn, device: torch.device) -> float:
    """Peak CUDA memory allocated during fn() above what was allocated before it (MiB)."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del out
    return peak / 2**20

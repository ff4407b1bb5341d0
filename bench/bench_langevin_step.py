"""Benchmark of the fused Langevin step (ebmfast.ops.langevin_step) and of ebmfast.sample.

    python bench/bench_langevin_step.py --device cpu|cuda [--quick] [--out DIR] [--threads 1,2]
                                        [--chain-threads 1] [--no-compile] [-k EXPR]
    pytest bench/bench_langevin_step.py --benchmark-only [--bench-device cuda] [--bench-quick]

Part (a), the op, float32, numel in {1e4, 1e5, 1e6, 1e7} (quick: 1e4, 1e6):
    eager        (x - a*g + b*torch.randn_like(x)).clamp(lo, hi)          baseline, out-of-place
    eager_       x.add_(g, alpha=-a).add_(torch.randn_like(x), alpha=b).clamp_(lo, hi)   in-place baseline
    compile      torch.compile(eager expression)                          (not in --quick / --no-compile)
    fused / fused_  ebmfast.ops.langevin_step(..., backend=<cpu|cuda>), inplace False / True
    fused[triton] / fused_[triton]   the same with backend="triton" (CUDA)
    ref          the pure-PyTorch reference backend (same Philox stream, int64 ops)
  diagnostics (where the fused kernel's time goes):
    copy         y.copy_(x): the machine's copy bandwidth (2 arrays) at this size
    randn_like   torch.randn_like(x) alone: the eager RNG's share
    fused_nonoise  noise_scale=0: update only, no Philox (3 arrays)
    fused_noisegiven  noise=z given: update only, reads z from memory (4 arrays)
  GB/s counts the useful bytes, 3 arrays (read x, read g, write out), for every variant of the update,
  eager included; diagnostics count the arrays they move.

Part (b), a whole 60-step chain on a user's plain nn.Module energy:
    MLP  2-128-128-1 SiLU, 1000 particles, step 0.01, noise 0.01
    conv 3x32x32 images, two stride-2 3x3 convs (32, 64 ch) + linear head, batch 64, clamp (-1, 1)
  variants: eager loop (autograd.grad + eager expression; baseline), ebmfast.sample, torchebm, ebmkit
  (optional packages) and grad_only (60 x forward + autograd.grad, no update: the floor any sampler pays).

The command line writes <out>/langevin_step_<cpu|gpu>[_quick].md (rewritten) and appends the .csv;
the report is built by bench/_langevin_report.py.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (also puts the repository root on sys.path)
import _langevin_report  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import ebmfast  # noqa: E402
from ebmfast.ops import _dispatch  # noqa: E402
from ebmfast.ops.langevin_step import langevin_step  # noqa: E402

STEP, NOISE, LO, HI = 0.01, 0.01, -3.0, 3.0  # op benchmark: clamp bounds rarely hit by x ~ N(0, 1)
SEED = 1234
N_STEPS = 60
DIAGNOSTICS = ("copy", "randn_like", "fused_nonoise", "fused_noisegiven")


# =========================================================================== cases
def op_sizes(quick: bool) -> list[int]:
    return [10**4, 10**6] if quick else [10**4, 10**5, 10**6, 10**7]


def op_variants(device: torch.device, use_compile: bool) -> list[tuple[str, str | None, int]]:
    """(variant, baseline, bytes per element counted), in table order."""
    out = [("copy", None, 8), ("randn_like", None, 4), ("eager", None, 12), ("eager_", None, 12)]
    if use_compile:
        out.append(("compile", "eager", 12))
    for b in ("cuda", "triton") if device.type == "cuda" else ("cpu",):
        sfx = "" if b in ("cpu", "cuda") else f"[{b}]"
        out += [(f"fused{sfx}", "eager", 12), (f"fused_{sfx}", "eager_", 12)]
    return out + [("fused_nonoise", None, 12), ("fused_noisegiven", None, 16), ("ref", "eager", 12)]


def planned_cases(device: torch.device, quick: bool, threads: list[int], chain_threads: list[int],
                  use_compile: bool) -> list[dict]:
    cases = []
    for t in threads:
        for n in op_sizes(quick):
            if quick and n > 10**4:
                variants = [v for v in op_variants(device, use_compile) if v[0] != "ref"]
            else:
                variants = op_variants(device, use_compile)
            cases += [{"bench": "op", "threads": t, "case": f"float32[{n}]", "numel": n, "variant": v,
                       "baseline": b or "", "bytes_per_elem": nb} for v, b, nb in variants]
        if t in chain_threads:
            for case in ["mlp 2-128-128-1, B=1000"] + ([] if quick else ["conv 3x32x32, B=64"]):
                cases += [{"bench": "chain", "threads": t, "case": case, "variant": v,
                           "baseline": "" if v == "eager loop" else "eager loop"}
                          for v in ("grad_only", "eager loop", "ebmfast.sample", "torchebm", "ebmkit")]
    return cases


def _options(config) -> dict:
    device = torch.device(config.getoption("bench_device"))
    threads = _common.thread_counts(config)
    text = config.getoption("bench_chain_threads")
    chain_threads = [int(t) for t in text.split(",") if t.strip()] if text and device.type == "cpu" else threads
    quick = config.getoption("bench_quick")
    return dict(device=device, quick=quick, threads=threads, chain_threads=chain_threads,
                use_compile=not (quick or config.getoption("bench_no_compile")))


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    bench = {"bench_speed_langevin_step": "op", "bench_speed_chain": "chain"}[metafunc.function.__name__]
    cases = [c for c in planned_cases(**_options(metafunc.config)) if c["bench"] == bench]
    ids = [f"t{c['threads']}-{c.get('numel', c['case'].split()[0])}-{c['variant'].replace(' ', '_')}" for c in cases]
    metafunc.parametrize("case", cases, ids=ids)


# =========================================================================== (a) the op
_COMPILED = {}


def _compiled_eager():
    """torch.compile of the eager expression, compiled once per process."""
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(lambda x, g: (x - STEP * g + NOISE * torch.randn_like(x)).clamp(LO, HI),
                                        dynamic=True)
    return _COMPILED["fn"]


def op_candidate(variant: str, n: int, device: torch.device):
    gen = torch.Generator(device="cpu").manual_seed(n)
    x, g, z = (torch.randn(n, generator=gen).to(device) for _ in range(3))
    y = torch.full_like(x, float("nan"))  # poisoned: copy_ must write it
    xb = x.clone()  # private buffer of an in-place variant
    clamp = (LO, HI)
    backend = variant[variant.index("[") + 1:-1] if "[" in variant else ("cuda" if device.type == "cuda" else "cpu")
    if variant.startswith("fused"):
        reasons = _dispatch.not_supported_reasons(backend, device, torch.float32)
        if reasons:
            pytest.skip(f"backend {backend}: {'; '.join(reasons)}")
    fns = {
        "copy": lambda: y.copy_(x),
        "randn_like": lambda: torch.randn_like(x),
        "eager": lambda: (x - STEP * g + NOISE * torch.randn_like(x)).clamp(LO, HI),
        "eager_": lambda: xb.add_(g, alpha=-STEP).add_(torch.randn_like(xb), alpha=NOISE).clamp_(LO, HI),
        "compile": lambda: _compiled_eager()(x, g),
        "fused_nonoise": lambda: langevin_step(x, g, STEP, 0.0, clamp=clamp, seed=SEED, backend=backend),
        "fused_noisegiven": lambda: langevin_step(x, g, STEP, NOISE, clamp=clamp, noise=z, seed=SEED,
                                                  backend=backend),
        "ref": lambda: langevin_step(x, g, STEP, NOISE, clamp=clamp, seed=SEED, backend="ref"),
    }
    if variant.startswith("fused_") and variant not in fns:
        return lambda: langevin_step(xb, g, STEP, NOISE, clamp=clamp, seed=SEED, inplace=True, backend=backend)
    if variant.startswith("fused") and variant not in fns:
        return lambda: langevin_step(x, g, STEP, NOISE, clamp=clamp, seed=SEED, backend=backend)
    return fns[variant]


def bench_speed_langevin_step(benchmark, record_property, device, case):
    record_property("case", case)
    torch.set_num_threads(case["threads"])
    fn = op_candidate(case["variant"], case["numel"], device)
    fn()
    if case["variant"] == "ref" and case["numel"] >= 10**6:  # int64 Philox in PyTorch: seconds per call
        benchmark.extra_info.update(case, load_before=round(_common.load_avg()[0], 2))
        benchmark.pedantic(fn, rounds=3, iterations=1)
        if device.type == "cpu":
            benchmark.extra_info["cpu_ms"] = _common.cpu_ms_per_call(fn, 0.0)
        benchmark.extra_info["load_after"] = round(_common.load_avg()[0], 2)
        return
    _common.run_benchmark(benchmark, fn, case, device)


# =========================================================================== (b) whole chains
class MLPNet(nn.Module):
    """A user's plain MLP energy: [B, 2] -> [B]."""

    def __init__(self, dim=2, hidden=128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


class ConvNet(nn.Module):
    """A user's small conv energy: [B, 3, 32, 32] -> [B]."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.SiLU(),   # 32 x 16 x 16
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),  # 64 x 8 x 8
            nn.Flatten(), nn.Linear(64 * 8 * 8, 1),
        )

    def forward(self, x):
        return self.net(x).squeeze(-1)


def _eager_loop(energy, x0, n_steps, clamp):
    x = x0.detach().clone()
    for _ in range(n_steps):
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(energy(xr).sum(), xr)
        x = xr.detach() - STEP * g + NOISE * torch.randn_like(x)
        if clamp is not None:
            x = x.clamp(*clamp)
    return x


def _grad_only(energy, x0, n_steps):
    x = x0.detach().requires_grad_(True)
    for _ in range(n_steps):
        (g,) = torch.autograd.grad(energy(x).sum(), x)
    return g


def chain_candidate(case: str, variant: str, device: torch.device):
    torch.manual_seed(0)
    if case.startswith("mlp"):
        energy, x0, clamp = MLPNet().to(device), torch.randn(1000, 2, device=device), None
    else:
        energy, x0, clamp = ConvNet().to(device), torch.rand(64, 3, 32, 32, device=device) * 2 - 1, (-1.0, 1.0)
    fns = {"grad_only": lambda: _grad_only(energy, x0, N_STEPS),
           "eager loop": lambda: _eager_loop(energy, x0, N_STEPS, clamp),
           "ebmfast.sample": lambda: ebmfast.sample(energy, x0, N_STEPS, STEP, NOISE, clamp=clamp, seed=SEED)}
    if variant in fns:
        return fns[variant], x0
    peers, missing = _common.peer_samplers(energy, STEP, NOISE, clamp=clamp, device=device)
    if variant not in peers:
        pytest.skip(missing.get(variant, f"unknown variant {variant!r}"))
    f = peers[variant]
    return (lambda: f(x0, N_STEPS)), x0


def bench_speed_chain(benchmark, record_property, device, case):
    record_property("case", case)
    torch.set_num_threads(case["threads"])
    fn, x0 = chain_candidate(case["case"], case["variant"], device)
    out = fn()
    info = {**case, "numel": x0.numel(), "batch": x0.shape[0], "n_steps": N_STEPS}
    if case["variant"] != "grad_only":  # every sampler must move the particles alike (same update and noise)
        if out.shape != x0.shape or not torch.isfinite(out).all():
            raise AssertionError(f"{case['case']}: {case['variant']} returned shape {tuple(out.shape)} or non-finite")
        info["rms_displacement"] = (out - x0).pow(2).mean().sqrt().item()
    if case["variant"] in ("torchebm", "ebmkit"):
        info["variant"] = f"{case['variant']} {_common.package_version(case['variant'])}"
    _common.run_benchmark(benchmark, fn, info, device)


# =========================================================================== command line
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quick", action="store_true", help="small subset for CI; writes *_quick.* files")
    p.add_argument("--out", default=_common.RESULTS, help="results folder (default bench/results)")
    p.add_argument("--threads", default="1,2", help="CPU: comma-separated torch thread counts (default 1,2)")
    p.add_argument("--chain-threads", default="1",
                   help="CPU: thread counts at which to run part (b) (default 1)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    p.add_argument("-k", dest="select", default=None, help="pytest -k expression: run only matching cases")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    load_before, t_start, env = _common.start_run(device)
    extra = ["--bench-threads", args.threads, "--bench-chain-threads", args.chain_threads]
    extra += (["--bench-no-compile"] if args.no_compile else []) + (["-k", args.select] if args.select else [])
    cases = _common.run_pytest(os.path.abspath(__file__), args.device, args.quick, extra)
    stem = "langevin_step_" + {"cpu": "cpu", "cuda": "gpu"}[args.device] + ("_quick" if args.quick else "")
    command = "python bench/bench_langevin_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    _langevin_report.write(cases, device, args.out, stem, env, "quick" if args.quick else "full",
                           load_before, t_start, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())

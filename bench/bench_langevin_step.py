"""Benchmark of the fused Langevin step (ebmfast.ops.langevin_step) and of ebmfast.sample.

    python bench/bench_langevin_step.py [--quick] [--out bench/results] [--threads 1,2] [--chain-threads 1]
                                        [--no-compile] [--repeats N] [--skip-op] [--skip-chain]

Part (a), the op, float32, numel in {1e4, 1e5, 1e6, 1e7}:
    eager        (x - a*g + b*torch.randn_like(x)).clamp(lo, hi)          baseline, out-of-place
    eager_       x.add_(g, alpha=-a).add_(torch.randn_like(x), alpha=b).clamp_(lo, hi)   in-place baseline
    compile      torch.compile(eager expression)                          (skipped by --quick/--no-compile)
    fused / fused_  ebmfast.ops.langevin_step(..., backend=<cpu|cuda|triton>), inplace False / True
    ref          the pure-PyTorch reference backend (same Philox stream, computed with int64 ops)
  diagnostics (to see where the fused kernel's time goes):
    copy         y.copy_(x): the machine's copy bandwidth (2 arrays) at this size
    randn_like   torch.randn_like(x) alone: the eager RNG's share
    fused_nonoise  noise_scale=0: update only, no Philox (3 arrays)
    fused_noisegiven  noise=z given: update only, reads z from memory (4 arrays)
  fused - fused_nonoise is the in-kernel Philox + Box-Muller cost (reported in the summary).
  GB/s counts the useful bytes, 3 arrays (read x, read g, write out), for every variant of
  the update, eager included; diagnostics count the arrays they actually move.

Part (b), a whole 60-step chain on a user's plain nn.Module energy:
    MLP  2-128-128-1 SiLU, 1000 particles, step 0.01, noise 0.01
    conv 3x32x32 images, two stride-2 3x3 convs (32, 64 ch) + linear head, batch 64,
         step 0.01, noise 0.01, clamp (-1, 1)
  variants: eager loop (autograd.grad + eager expression; baseline), ebmfast.sample,
  torchebm.samplers.LangevinDynamics, ebm.LangevinDynamics (the `ebmkit` package), and
  grad_only (60 x forward + autograd.grad, no update: the floor any sampler pays).

All ratios are against the baseline measured in the same run, timed round-robin
(bench/_common.py). Results: <out>/langevin_step_cpu.csv (appended) and .md (rewritten);
--quick writes *_quick.* files instead so CI does not overwrite the reference results.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (also puts the repository root on sys.path)

import torch  # noqa: E402
from torch import nn  # noqa: E402

import ebmfast  # noqa: E402
from ebmfast.ops import _dispatch  # noqa: E402
from ebmfast.ops.langevin_step import langevin_step  # noqa: E402

STEP, NOISE, LO, HI = 0.01, 0.01, -3.0, 3.0  # op benchmark: clamp bounds rarely hit by x ~ N(0, 1)
SEED = 1234
# every key an op or chain row can carry, so one CSV holds both kinds
ROW_COLUMNS = ["mode", "bench", "case", "numel", "variant", "baseline", "speedup", "median_ms", "min_ms", "iqr_ms",
               "cpu_ms", "blocks", "calls_per_block", "bytes_per_elem", "gbps", "pct_copy_bw",
               "particle_steps_per_s", "overhead_over_grad_ms"]


# =========================================================================== (a) the op
def _op_variants(n: int, device: torch.device, backends: list[str], compiled) -> tuple[dict, dict, dict]:
    """name -> callable, name -> bytes per element counted, name -> baseline name."""
    gen = torch.Generator(device="cpu").manual_seed(n)
    x = torch.randn(n, generator=gen).to(device)
    g = torch.randn(n, generator=gen).to(device)
    z = torch.randn(n, generator=gen).to(device)
    y = torch.full_like(x, float("nan"))  # poisoned: copy_ must write it
    # one private buffer per in-place variant, so variants do not feed each other
    bufs = {}

    def buf(name):
        if name not in bufs:
            bufs[name] = x.clone()
        return bufs[name]

    es = torch.finfo(torch.float32).bits // 8  # 4 bytes
    fns, nbytes, base = {}, {}, {}

    def add(name, fn, arrays, baseline):
        fns[name], nbytes[name], base[name] = fn, arrays * es, baseline

    add("copy", lambda: y.copy_(x), 2, None)
    add("randn_like", lambda: torch.randn_like(x), 1, None)
    add("eager", lambda: (x - STEP * g + NOISE * torch.randn_like(x)).clamp(LO, HI), 3, None)
    xe = buf("eager_")
    add("eager_", lambda: xe.add_(g, alpha=-STEP).add_(torch.randn_like(xe), alpha=NOISE).clamp_(LO, HI), 3, None)
    if compiled is not None:
        add("compile", lambda: compiled(x, g), 3, "eager")
    for b in backends:
        sfx = "" if b in ("cpu", "cuda") else f"[{b}]"
        add(f"fused{sfx}", lambda b=b: langevin_step(x, g, STEP, NOISE, clamp=(LO, HI), seed=SEED, backend=b),
            3, "eager")
        xb = buf(f"fused_{sfx}")
        add(f"fused_{sfx}", lambda b=b, xb=xb: langevin_step(xb, g, STEP, NOISE, clamp=(LO, HI), seed=SEED,
                                                            inplace=True, backend=b), 3, "eager_")
    if backends:
        b0 = backends[0]
        add("fused_nonoise", lambda: langevin_step(x, g, STEP, 0.0, clamp=(LO, HI), seed=SEED, backend=b0), 3, None)
        add("fused_noisegiven", lambda: langevin_step(x, g, STEP, NOISE, clamp=(LO, HI), noise=z, seed=SEED,
                                                      backend=b0), 4, None)
    add("ref", lambda: langevin_step(x, g, STEP, NOISE, clamp=(LO, HI), seed=SEED, backend="ref"), 3, "eager")
    return fns, nbytes, base


def _check_op(device: torch.device, backends: list[str]) -> None:
    """Fail loudly if a timed backend disagrees with the reference (a fast wrong kernel is no result)."""
    x = torch.randn(10_001, device=device)
    g = torch.randn_like(x)
    ref = langevin_step(x, g, STEP, NOISE, clamp=(LO, HI), seed=SEED, offset=3, backend="ref")
    for b in backends:
        out = langevin_step(x, g, STEP, NOISE, clamp=(LO, HI), seed=SEED, offset=3, backend=b)
        err = (out - ref).abs().max().item()
        if not err < 1e-5:
            raise RuntimeError(f"backend {b!r} differs from the reference by {err:.3g} (> 1e-5); not timing it")


def bench_op(device: torch.device, sizes: list[int], backends: list[str], repeats: int, use_compile: bool,
             log, ref_max_numel: int = 10**7) -> list[dict]:
    _check_op(device, backends)
    compiled = None
    if use_compile:
        t0 = time.perf_counter()
        try:
            compiled = torch.compile(lambda x, g: (x - STEP * g + NOISE * torch.randn_like(x)).clamp(LO, HI),
                                     dynamic=True)
            compiled(torch.randn(4096, device=device), torch.randn(4096, device=device))
            log(f"  torch.compile of the eager expression: {time.perf_counter() - t0:.1f} s")
        except Exception as exc:  # no compiler etc.: record and go on without the row
            log(f"  torch.compile unavailable ({type(exc).__name__}: {exc}); no 'compile' row")
            compiled = None
    rows = []
    for n in sizes:
        fns, nbytes, base = _op_variants(n, device, backends, compiled)
        if n > ref_max_numel:
            del fns["ref"]
        if device.type == "cuda":
            timings = {k: _common.time_cuda(f) for k, f in fns.items()}
        else:
            # the ref backend (int64 Philox in PyTorch) takes seconds per call at >= 1e6: 3 blocks
            timings = _common.time_group(fns, repeats=repeats, min_block_s=0.02,
                                         repeats_for={"ref": 3} if n >= 10**6 else None)
        copy_gbps = nbytes["copy"] * n / timings["copy"].median / 1e9
        for name, t in timings.items():
            gbps = nbytes[name] * n / t.median / 1e9
            b = base[name]
            rows.append({
                "bench": "op", "case": f"float32[{n}]", "numel": n, "variant": name,
                "median_ms": t.median * 1e3, "min_ms": t.min * 1e3, "iqr_ms": t.iqr * 1e3,
                "cpu_ms": t.cpu_median * 1e3, "blocks": len(t.samples), "calls_per_block": t.number,
                "bytes_per_elem": nbytes[name], "gbps": gbps, "pct_copy_bw": 100 * gbps / copy_gbps,
                "baseline": b or "", "speedup": (timings[b].median / t.median) if b else None,
            })
        log(f"  {n:>9,}: " + ", ".join(f"{k} {timings[k].median * 1e3:.3g} ms" for k in fns))
    return rows


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


def _eager_loop(energy, x0, n_steps, step, noise, clamp):
    x = x0.detach().clone()
    for _ in range(n_steps):
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(energy(xr).sum(), xr)
        x = xr.detach() - step * g + noise * torch.randn_like(x)
        if clamp is not None:
            x = x.clamp(*clamp)
    return x


def _grad_only(energy, x0, n_steps):
    x = x0.detach().requires_grad_(True)
    for _ in range(n_steps):
        (g,) = torch.autograd.grad(energy(x).sum(), x)
    return g


def _peer_samplers(energy, x0, n_steps, step, noise, clamp, device, log) -> dict:
    """{"<peer> <version>": () -> x} running torchebm's and ebmkit's Langevin samplers (those that import)."""
    from importlib.metadata import version

    peers, missing = _common.peer_samplers(energy, step, noise, clamp=clamp, device=device)
    for why in missing.values():
        log(f"  {why}")
    return {f"{name} {version(name)}": (lambda f=f: f(x0, n_steps)) for name, f in peers.items()}


def bench_chain(device: torch.device, repeats: int, n_steps: int, log, which=("mlp", "conv")) -> list[dict]:
    torch.manual_seed(0)
    cases = []
    if "mlp" in which:
        cases.append(("mlp 2-128-128-1, B=1000", MLPNet().to(device), torch.randn(1000, 2, device=device), None))
    if "conv" in which:
        cases.append(("conv 3x32x32, B=64", ConvNet().to(device),
                      torch.rand(64, 3, 32, 32, device=device) * 2 - 1, (-1.0, 1.0)))
    rows = []
    for case, energy, x0, clamp in cases:
        fns = {
            "grad_only": lambda: _grad_only(energy, x0, n_steps),
            "eager loop": lambda: _eager_loop(energy, x0, n_steps, STEP, NOISE, clamp),
            "ebmfast.sample": lambda: ebmfast.sample(energy, x0, n_steps, STEP, NOISE, clamp=clamp, seed=SEED),
        }
        fns.update(_peer_samplers(energy, x0, n_steps, STEP, NOISE, clamp, device, log))
        # every sampler must run and move the particles the same amount (same update, same noise level)
        for k, f in fns.items():
            if k == "grad_only":
                continue
            xk = f()
            if xk.shape != x0.shape or not torch.isfinite(xk).all():
                raise RuntimeError(f"{case}: {k} returned shape {tuple(xk.shape)} or non-finite values")
            d = (xk - x0).pow(2).mean().sqrt().item()
            log(f"  {case}: {k}: rms displacement {d:.4f}")
        timings = _common.time_group(fns, repeats=repeats, min_block_s=0.0, warmup_s=0.0,
                                     device=device if device.type == "cuda" else None)
        base = timings["eager loop"].median
        floor = timings["grad_only"].median
        for name, t in timings.items():
            rows.append({
                "bench": "chain", "case": case, "numel": x0.numel(), "variant": name,
                "median_ms": t.median * 1e3, "min_ms": t.min * 1e3, "iqr_ms": t.iqr * 1e3,
                "cpu_ms": t.cpu_median * 1e3, "blocks": len(t.samples), "calls_per_block": t.number,
                "particle_steps_per_s": x0.shape[0] * n_steps / t.median,
                "overhead_over_grad_ms": (t.median - floor) * 1e3,
                "baseline": "" if name == "eager loop" else "eager loop", "speedup": base / t.median,
            })
        log(f"  {case}: " + ", ".join(f"{k} {timings[k].median * 1e3:.1f} ms" for k in fns))
    return rows


# =========================================================================== report
def op_markdown(rows: list[dict]) -> str:
    cols = ["case", "variant", "median_ms", "iqr_ms", "gbps", "pct_copy_bw", "speedup", "baseline", "cpu_ms"]
    heads = ["size", "variant", "median ms", "IQR ms", "GB/s", "% of copy BW", "speedup", "vs", "CPU ms"]
    return _common.markdown_table([r for r in rows if r["bench"] == "op"], cols, heads)


def chain_markdown(rows: list[dict], n_steps: int) -> str:
    cols = ["case", "variant", "median_ms", "iqr_ms", "particle_steps_per_s", "overhead_over_grad_ms", "speedup",
            "cpu_ms"]
    heads = ["energy", "sampler", f"ms / {n_steps}-step chain", "IQR ms", "particle-steps/s",
             "ms over grad_only", "speedup vs eager loop", "CPU ms"]
    return _common.markdown_table([r for r in rows if r["bench"] == "chain"], cols, heads)


def summary_lines(rows: list[dict]) -> list[str]:
    """The 2x target at >= 1e6 elements per size and form, and where the fused kernel's time goes."""
    out = []
    med = {(r["case"], r["variant"]): r for r in rows if r["bench"] == "op"}
    for r in rows:
        if r["bench"] != "op" or r["variant"] not in ("fused", "fused_") or r["numel"] < 10**6:
            continue
        ok = "meets" if r["speedup"] >= 2 else "MISSES"
        line = f"- {r['case']} {r['variant']}: {r['speedup']:.2f}x vs {r['baseline']} ({ok} the 2x target)"
        if r["variant"] == "fused_" and (r["case"], "eager") in med:
            line += f"; {med[(r['case'], 'eager')]['median_ms'] / r['median_ms']:.2f}x vs eager (out-of-place)"
        out.append(line)
    out.append("")
    out.append("Where the fused kernel's time goes (Philox + Box-Muller = fused - fused_nonoise; ns per element):")
    out.append("")
    for r in rows:
        if r["bench"] == "op" and r["variant"] == "fused" and (r["case"], "fused_nonoise") in med:
            nz = med[(r["case"], "fused_nonoise")]
            rn = med.get((r["case"], "randn_like"))
            n = r["numel"]
            line = (f"- {r['case']}: fused {r['median_ms'] * 1e6 / n:.2f} ns/elem wall "
                    f"({r['cpu_ms'] * 1e6 / n:.2f} CPU); "
                    f"update only {nz['median_ms'] * 1e6 / n:.2f} ({nz['cpu_ms'] * 1e6 / n:.2f} CPU); "
                    f"so Philox + Box-Muller {(r['median_ms'] - nz['median_ms']) * 1e6 / n:.2f} "
                    f"({(r['cpu_ms'] - nz['cpu_ms']) * 1e6 / n:.2f} CPU)")
            if rn:
                line += f"; torch.randn_like {rn['median_ms'] * 1e6 / n:.2f} ({rn['cpu_ms'] * 1e6 / n:.2f} CPU)"
            out.append(line)
    return out


def contention_lines(rows: list[dict], threads: int) -> list[str]:
    """How much other load inflated the wall clock: wall * threads / CPU of the copy rows (~1 when idle)."""
    f = [r["median_ms"] * threads / r["cpu_ms"] for r in rows
         if r["bench"] == "op" and r["variant"] == "copy" and r["cpu_ms"] > 0]
    if not f:
        return []
    worst = max(f)
    out = [f"- contention: wall x threads / CPU time of the `copy` rows = {', '.join(f'{v:.1f}' for v in f)} "
           "(about 1 on an idle machine)"]
    if worst > 1.5:
        out.append("- **the wall times in this section are inflated by other processes competing for the cores;** "
                   "the speedups (same-run, round-robin) and the CPU ms column are the steadier figures"
                   + (", and with several threads an OpenMP region waits for every thread to get a core, so "
                      "multi-thread wall times under load measure the scheduler more than the kernels"
                      if threads > 1 else ""))
    return out + [""]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small subset (< 1 min) for CI; writes *_quick.* files")
    p.add_argument("--out", default=os.path.join(_common.ROOT, "bench", "results"))
    p.add_argument("--threads", default="", help="comma list of torch thread counts to run (default: current)")
    p.add_argument("--chain-threads", default="",
                   help="comma list of the thread counts at which to run part (b) (default: every --threads)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    p.add_argument("--repeats", type=int, default=0, help="timed blocks per variant (default 15; quick 5)")
    p.add_argument("--skip-chain", action="store_true")
    p.add_argument("--skip-op", action="store_true")
    args = p.parse_args(argv)

    threads = [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]
    chain_threads = [int(t) for t in args.chain_threads.split(",") if t] or threads
    sizes = [10**4, 10**6] if args.quick else [10**4, 10**5, 10**6, 10**7]
    repeats = args.repeats or (5 if args.quick else 15)
    chain_repeats = 3 if args.quick else 9
    n_steps = 60
    use_compile = not (args.quick or args.no_compile)
    sfx = "_quick" if args.quick else ""
    csv_path = os.path.join(args.out, f"langevin_step_cpu{sfx}.csv")
    md_path = os.path.join(args.out, f"langevin_step_cpu{sfx}.md")
    os.makedirs(args.out, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    cpu = torch.device("cpu")
    cpu_backends = [b for b in ("cpu",) if not _dispatch.not_supported_reasons(b, cpu, torch.float32)]
    skipped = {b: _dispatch.not_supported_reasons(b, cpu, torch.float32) for b in ("cpu",) if b not in cpu_backends}
    load_before = _common.load_avg()
    t_start = time.perf_counter()
    md = [f"# ebmfast.ops.langevin_step and ebmfast.sample on the CPU{' (quick)' if args.quick else ''}", ""]
    all_rows = []
    for nt in threads:
        torch.set_num_threads(nt)
        env = _common.env_info(cpu)
        log(f"== CPU, {nt} thread(s), load {_common.load_avg()}")
        rows = []
        if not args.skip_op:
            rows += bench_op(cpu, sizes, cpu_backends, repeats, use_compile, log,
                             ref_max_numel=10**4 if args.quick else 10**7)
        run_chain = not args.skip_chain and nt in chain_threads
        if run_chain:
            rows += bench_chain(cpu, chain_repeats, n_steps, log, which=("mlp",) if args.quick else ("mlp", "conv"))
        _common.append_csv(csv_path, [{"mode": "quick" if args.quick else "full", **r} for r in rows], env,
                              ROW_COLUMNS)
        all_rows += rows
        md += [f"## {env['device']}, {nt} thread(s)", "", _common.env_markdown(env), ""]
        md += contention_lines(rows, nt)
        if not args.skip_op:
            md += ["### (a) one step, float32, `clamp=(-3, 3)`, step 0.01, noise 0.01", "",
                   op_markdown(rows), "", "Target: fused >= 2x the eager expression at >= 1e6 elements:", ""]
            md += summary_lines(rows) + [""]
            for b, why in skipped.items():
                md.append(f"- backend {b} not measured: {'; '.join(why)}")
        if run_chain:
            md += [f"### (b) whole {n_steps}-step chains on a plain nn.Module energy (step 0.01, noise 0.01)", "",
                   chain_markdown(rows, n_steps), ""]
        elif not args.skip_chain:
            md += [f"(b) whole chains not run at {nt} thread(s) (--chain-threads {args.chain_threads})", ""]
        log(op_markdown(rows) if not args.skip_op else "")
        log(chain_markdown(rows, n_steps) if run_chain else "")

    # ---------------------------------------------------------------- GPU
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        gpu_backends = [b for b in ("cuda", "triton") if not _dispatch.not_supported_reasons(b, gpu, torch.float32)]
        env = _common.env_info(gpu)
        log(f"== GPU {env['device']}: backends {gpu_backends}")
        try:
            rows = []
            if not args.skip_op:
                rows += bench_op(gpu, sizes, gpu_backends, repeats, use_compile, log)
            if not args.skip_chain:
                rows += bench_chain(gpu, chain_repeats, n_steps, log)
            _common.append_csv(csv_path, [{"mode": "quick" if args.quick else "full", **r} for r in rows], env,
                              ROW_COLUMNS)
            md += [f"## GPU: {env['device']}", "", _common.env_markdown(env), "",
                   f"backends: {', '.join(gpu_backends) or 'none (see ebmfast.info)'}", "",
                   op_markdown(rows), ""] + summary_lines(rows) + ["", chain_markdown(rows, n_steps), ""]
        except Exception:
            md += ["## GPU", "", "GPU benchmark failed:", "```", traceback.format_exc(), "```", ""]
    else:
        md += ["## GPU", "", "GPU: not measured in this session (no GPU)", ""]

    load_after = _common.load_avg()
    md += ["## Conditions", "",
           f"- load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; "
           f"after: {', '.join(f'{v:.2f}' for v in load_after)} (on {os.cpu_count()} logical CPUs, "
           "shared with other workers)",
           f"- wall time of this run: {time.perf_counter() - t_start:.0f} s",
           "- timing: median wall time over round-robin blocks (bench/_common.py `time_group`), IQR across "
           "blocks; 'CPU ms' is the process CPU time per call (all threads, OpenMP spin-waits included): it does "
           "not grow while the process waits for a core, so it shows the work done when the wall clock is "
           "inflated by other load",
           f"- command: `python bench/bench_langevin_step.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
           ""]
    with open(md_path, "w") as f:
        f.write("\n".join(md))
    log(f"wrote {md_path} and appended {csv_path}")
    return all_rows


if __name__ == "__main__":
    main()

"""Same-machine comparison of two checkouts of ebmfast: median times of the public ops.

    python bench/compare_commits.py OLD_CHECKOUT NEW_CHECKOUT [--runs 3] [--out FILE.md]

Each checkout must have its extension built in place. The two are run alternately (`--runs` times
each, in fresh processes), and each case reports the best of the runs' medians, so a change of
machine load between runs does not read as a change of code. Used to check that a refactoring of
the Python layer leaves the speed of the fused paths unchanged.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

CASES = r'''
import json, statistics, time, torch, ebmfast
from ebmfast.energies import MLPEnergy
from ebmfast.ops import grad_norm_penalty, langevin_step

def med(fn, reps, warm=5):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3

out = {}
for threads in (1, 2):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    for w in (32, 128):
        m = MLPEnergy(2, (w, w, w)); x0 = torch.randn(1000, 2)
        out[f"60-step fused chain, width {w}, {threads} thread(s)"] = med(
            lambda: ebmfast.sample(m, x0, 60, 0.01, 0.005, seed=1), 15)
        def pen():
            m.zero_grad(set_to_none=True)
            p, e = grad_norm_penalty(m, x0, lipschitz=1.0, return_energy=True)
            (p + e.mean()).backward()
        out[f"penalty step, width {w}, {threads} thread(s)"] = med(pen, 40)
    for n in (10_000, 1_000_000):
        x, g = torch.randn(n), torch.randn(n)
        out[f"langevin_step, {n} elements, {threads} thread(s)"] = med(
            lambda: langevin_step(x, g, 0.01, 0.01, clamp=(-3, 3), seed=1), 40)
    m = MLPEnergy(2, (32, 32, 32)); x0 = torch.randn(1000, 2)
    out[f"10-step differentiable chain + backward, width 32, {threads} thread(s)"] = med(
        lambda: ebmfast.sample(m, x0, 10, 0.01, 0.005, seed=1, create_graph=True).sum().backward(), 15)
print(json.dumps(out))
'''


def run(checkout: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", CASES], cwd=checkout, env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def commit_of(checkout: str) -> str:
    return subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "?"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default=None, help="write the table as markdown here")
    args = p.parse_args(argv)
    old, new = [], []
    for _ in range(args.runs):
        old.append(run(args.old))
        new.append(run(args.new))
    c_old, c_new = commit_of(args.old), commit_of(args.new)
    import torch

    lines = [f"# Public ops, commit {c_old} vs {c_new}, same machine ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; torch "
             f"{torch.__version__}; Python {platform.python_version()}; load average before "
             f"{os.getloadavg()[0]:.1f}. Best of {args.runs} alternating runs' medians, ms.", "",
             f"| case | {c_old} | {c_new} | {c_new} / {c_old} |", "|---|---|---|---|"]
    for k in old[0]:
        a, b = min(r[k] for r in old), min(r[k] for r in new)
        lines.append(f"| {k} | {a:.3f} | {b:.3f} | {b / a:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Mean ± sd over seeds of run_toys.py results (MMD / noise floor, averaged over the last 40% of training).

    PYTHONPATH=. python examples/self_adversarial/aggregate_seeds.py examples/self_adversarial/results/seeds3

Reads every ``results_seed*.json`` in the folder, writes ``summary.md`` and ``summary.json`` there and
prints the table. Per data set it also counts, seed by seed, how often the paper's order holds
(noise-free < noisy; each generator-loss variant < noise-free).
"""
from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

from ebmfast.core.io import atomic_write_text
from ebmfast.runs.io import read_json
from ebmfast.runs.study import markdown_table, write_json


def mean_sd(v: list[float]) -> str:
    v = [x for x in v if math.isfinite(x)]
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
    return f"{statistics.mean(v):.1f} ± {sd:.1f}"


def blew_up(r: dict, limit: float = 1e4) -> bool:
    """Non-finite training (DivergenceError) or the energies ran away (|final mean data energy| > limit:
    the samples then sit still at a constant MMD, as in the noisy runs)."""
    return "diverged" in r or abs(r["final_metrics"].get("e_data", 0.0)) > limit


def main(folder: str) -> None:
    folder = Path(folder)
    files = sorted(folder.glob("results_seed*.json"))
    if not files:
        raise SystemExit(f"no results_seed*.json in {folder}")
    runs = {}  # (dataset, variant) -> {seed: result}
    for f in files:
        blob = read_json(f)
        seed = blob["args"]["seed"]
        for r in blob["results"]:
            runs.setdefault((r["dataset"], r["variant"]), {})[seed] = r
    datasets = list(dict.fromkeys(d for d, _ in runs))
    variants = list(dict.fromkeys(v for _, v in runs))
    rows, summary = [], []
    for d in datasets:
        for v in variants:
            rs = runs.get((d, v), {})
            if not rs:
                continue
            seeds = sorted(rs)
            last = [rs[s]["mmd_ratio_mean_last"] for s in seeds]
            fin = [rs[s]["mmd_chain"]["ratio"] for s in seeds]
            div = sum(blew_up(rs[s]) for s in seeds)
            ts = statistics.mean(rs[s]["train_s"] for s in seeds)
            per = ", ".join(f"{x:.1f}" for x in last)
            rows.append([d, v, mean_sd(last), per, mean_sd(fin), f"{div}/{len(seeds)}", f"{ts:.0f}"])
            summary.append({"dataset": d, "variant": v, "seeds": seeds, "mmd_last40": last, "mmd_final": fin,
                            "diverged": div, "train_s_mean": ts})
    lines = markdown_table(["data", "variant", "MMD/floor, mean over last 40% (mean ± sd over seeds)", "per seed",
                            "final MMD/floor (mean ± sd)", "diverged (|E| > 1e4 or non-finite)", "train s (mean)"], rows)
    # paper's order, seed by seed
    lines += ["", "Seeds (of those run) in the paper's direction (lower MMD/floor, last-40% mean):", ""]
    for d in datasets:
        def cmp(a, b):
            ra, rb = runs.get((d, a), {}), runs.get((d, b), {})
            common = sorted(set(ra) & set(rb))
            wins = sum(ra[s]["mmd_ratio_mean_last"] < rb[s]["mmd_ratio_mean_last"] for s in common)
            return f"{a} < {b}: {wins}/{len(common)}"
        pairs = [("noise-free", "noisy")] + [(v, "noise-free") for v in variants if v.startswith("self-adv")]
        lines.append(f"- {d}: " + "; ".join(cmp(a, b) for a, b in pairs if (d, a) in runs and (d, b) in runs))
    text = "\n".join(lines) + "\n"
    atomic_write_text(folder / "summary.md", text)
    write_json(folder / "summary.json", summary, indent=1)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/self_adversarial/results/seeds3")

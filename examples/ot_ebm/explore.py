"""Short controlled runs for choosing the settings the paper leaves open (see README.md).

Each call trains one (method, dataset, seed) with run_toys.run_one and appends one line
of key numbers to results/explore/log.jsonl (full record in results/explore/<name>.json).

    PYTHONPATH=. python examples/ot_ebm/explore.py NAME --methods ot-ebm mle -- --scale 10 --particle-lr 0.1 --iters 1000
    PYTHONPATH=. python examples/ot_ebm/explore.py --table      # results/explore/summary.md from log.jsonl

Runs logged before run_toys.py's defaults changed used its old defaults (width 64, batch 200,
MLE noise 0.01, eval every 100) unless their args say otherwise; their noise floor is
200 vs 200 points (run_toys now uses 200 vs 2000, about 0.75x that).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_toys import build_parser, run_one  # noqa: E402

from ebmfast.core.io import atomic_write_text  # noqa: E402
from ebmfast.runs.study import markdown_table, write_json  # noqa: E402
from ebmfast.trainers.jsonl import read_jsonl  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "explore"


def table() -> str:
    """Markdown table of every short run in log.jsonl (9-grid: final and last-500-iteration means)."""
    rows = []
    for d in read_jsonl(OUT / "log.jsonl"):
        last = d["traj"][-1][0]
        tr = [t for t in d["traj"] if t[0] > last - 500]
        mm = sum(t[1] for t in tr) / len(tr)
        g = d["dataset"] == "grid9"
        hq = sum(t[2] for t in tr) / len(tr) if g else None
        args, skip = [], False
        for tok in d["argv"]:   # drop the flags shown in their own columns, keep the rest
            if tok.startswith("--"):
                skip = tok in ("--datasets", "--seeds", "--iters", "--weights-every")
            if not skip:
                args.append(tok)
        args = " ".join(args)
        grid = ([f"{100 * d['final']['high_quality']:.1f}%", f"{100 * hq:.1f}%", f"{d['final']['modes_covered']}/9"]
                if g else ["-"] * 3)
        rows.append([d["name"], d["method"], d["dataset"], d["seed"], last, f"`{args}`",
                     f"{d['final']['mmd2'] / d['floor']:.1f}", f"{mm:.1f}", *grid, f"{d['wall_s']:.0f}"])
    return "\n".join(markdown_table(["name", "method", "data", "seed", "iters", "args", "MMD^2/floor final",
                                     "MMD^2/floor last 500", "hq final", "hq last 500", "modes final", "s"], rows)) + "\n"


def main(argv):
    if argv == ["--table"]:
        txt = table()
        atomic_write_text(OUT / "summary.md", "# Short exploration runs (explore.py; noise floor here: 200 vs 200 "
                                              "points)\n\n" + txt)
        print(txt)
        return
    name = argv[0]
    rest = argv[1:]
    if "--" in rest:
        i = rest.index("--")
        own, rest = rest[:i], rest[i + 1:]
    else:
        own = []
    methods = own[own.index("--methods") + 1:] if "--methods" in own else ["ot-ebm", "mle"]
    a = build_parser().parse_args(rest)
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    for ds in a.datasets:
        for seed in a.seeds:
            for m in methods:
                r = run_one(m, ds, seed, a)
                ev = r["evals"]
                line = {"name": name, "method": m, "dataset": ds, "seed": seed, "argv": rest,
                        "wall_s": round(r["wall_s"], 1), "floor": r["mmd_floor"],
                        "final": r["final"], "best": r["best_mmd"],
                        "traj": [(e["it"], round(e["mmd2"] / r["mmd_floor"], 1),
                                  round(e.get("high_quality", float("nan")), 3), e.get("modes_covered"))
                                 for e in ev]}
                with open(OUT / "log.jsonl", "a") as f:
                    f.write(json.dumps(line) + "\n")
                write_json(OUT / f"{name}_{m}_{ds}_s{seed}.json", r)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Rows, CSV and markdown of bench/bench_mlp.py: ratios against the same run's baselines, GFLOP/s against
the measured matmul peak, what each target needs, memory vs K."""
from __future__ import annotations

import os

import _common

CSV_COLUMNS = ["date", "device", "threads", "torch", "triton", "ebmfast", "commit", "python", "load_1m", "mode",
               "malloc", "workload", "kind", "impl", "kernel", "batch", "steps", "ms_median", "ms_min", "ms_q1",
               "ms_q3", "rounds", "cpu_ms_median", "baseline", "speedup_vs_eager", "cpu_speedup_vs_eager",
               "speedup_vs_torchebm", "target", "meets_target", "particle_steps_per_s", "gflops",
               "gflops_per_cpu_s", "pct_peak", "peak_rss_growth_mb", "peak_mem_growth_mb", "load_avg",
               "matmul_peak_gflops", "note"]
BASELINE = {"chain": "eager", "penalty": "autograd", "energy_grad": "autograd"}
NAN = float("nan")


def _r(v: float, digits: int = 4) -> float:
    """v to `digits` significant digits (NaN stays NaN)."""
    return v if v != v else float(f"{v:.{digits}g}")


def _target_text(targets) -> str:
    return ", ".join(f"{x:g}x {b}" for b, x in targets)


def table_rows(cases: list[dict], env: dict, run: dict) -> list[dict]:
    """One CSV row per case (timed, or not measured with a note), in order; matmul peaks go into every row."""
    timed = [c for c in cases if "median_s" in c]
    peaks = {(r["threads"], r["impl"]): r["flops"] / r["min_s"] / 1e9 for r in timed if r["kind"] == "matmul"}
    groups: dict = {}
    for r in timed:
        groups.setdefault((r["threads"], r["kind"], r["workload"], r["steps"]), {})[r["impl"]] = r
    rows = []
    for r in cases:
        if r["kind"] == "matmul":
            continue
        g = groups.get((r["threads"], r["kind"], r["workload"], r["steps"]), {})
        peak = peaks.get((r["threads"], "fp32"), NAN)
        base_name = BASELINE.get(r["kind"], "")
        is_fused = r["impl"].startswith("fused")
        row = {**env, "threads": r["threads"], **run, "workload": r["workload"], "kind": r["kind"],
               "impl": r["impl"], "kernel": r.get("kernel", ""), "batch": r["batch"], "steps": r["steps"],
               "baseline": base_name if r["kind"] != "memory" else "", "matmul_peak_gflops": _r(peak),
               "target": _target_text(r["targets"]) if is_fused else "", "note": r.get("note", "")}
        if "median_s" not in r:  # not measured: the row says why
            row["meets_target"] = "not measured" if row["target"] else ""
            rows.append(row)
            continue
        med, cpu_ms = r["median_s"], r.get("cpu_ms", NAN)
        row.update(ms_median=_r(med * 1e3), ms_min=_r(r["min_s"] * 1e3), ms_q1=_r(r["q1_s"] * 1e3),
                   ms_q3=_r(r["q3_s"] * 1e3), rounds=r["rounds"], cpu_ms_median=_r(cpu_ms),
                   particle_steps_per_s=round(r["batch"] * r["steps"] / med),
                   load_avg=f"{r['load_before']:.1f}-{r['load_after']:.1f}")
        if r["kind"] == "memory":
            row["peak_rss_growth_mb" if r["device_type"] == "cpu" else "peak_mem_growth_mb"] = \
                round(r["peak_mem_growth_mb"], 3)
            rows.append(row)
            continue
        base = g.get(base_name)
        speedups = {b: g[b]["median_s"] / med for b in g}
        row.update(speedup_vs_eager=round(speedups[base_name], 2) if base else NAN,
                   cpu_speedup_vs_eager=round(base["cpu_ms"] / cpu_ms, 2) if base and "cpu_ms" in base else NAN,
                   speedup_vs_torchebm=round(speedups["torchebm"], 2) if r["kind"] == "chain" and "torchebm" in g
                   else "",
                   gflops=_r(r["flops"] / med / 1e9), gflops_per_cpu_s=_r(r["flops"] / cpu_ms / 1e6),
                   pct_peak=_r(100 * r["flops"] / med / 1e9 / peak, 3))
        if r["impl"] == "node_floor":  # it computes nothing: no FLOP rate
            row.update(gflops=NAN, gflops_per_cpu_s=NAN, pct_peak=NAN)
        if row["target"]:
            missing = [b for b, _ in r["targets"] if b not in speedups]
            row["meets_target"] = (f"n/a ({', '.join(missing)} not measured)" if missing else
                                   "yes" if all(speedups[b] >= x for b, x in r["targets"]) else "no")
            row["target_needs"] = target_needs(r, g, peak)
        rows.append(row)
    return rows


def target_needs(r: dict, group: dict, peak: float) -> str:
    """'G GFLOP/s (P% peak)' the fused row would need for its first target, from the baseline's time in
    the same run; for penalty steps after subtracting node_floor (the autograd glue no kernel removes)."""
    base_name, x = r["targets"][0]
    if base_name not in group:
        return ""
    floor = group["node_floor"]["median_s"] if "node_floor" in group else 0.0
    budget = group[base_name]["median_s"] / x - floor
    if budget <= 0:
        return "no time left after the node floor"
    need = r["flops"] / budget / 1e9
    return f"{need:.0f} GFLOP/s ({100 * need / peak:.0f}%)"


def _cells(rows, cuda: bool) -> tuple[list, list]:
    cols = ["threads", "workload", "impl", "kernel", "ms_median", "ms_q1", "ms_q3", "cpu_ms_median",
            "speedup_vs_eager", "cpu_speedup_vs_eager", "speedup_vs_torchebm", "target", "meets_target",
            "target_needs", "gflops", "gflops_per_cpu_s", "pct_peak", "load_avg", "note"]
    heads = ["threads", "workload", "impl", "kernel", "wall ms (median)", "q1", "q3", "CPU ms", "speedup wall",
             "speedup CPU", "vs torchebm", "target", "meets", "target needs", "GFLOP/s", "GFLOP per CPU-s",
             "% peak", "load", "note"]
    drop = {"cpu_ms_median", "cpu_speedup_vs_eager", "gflops_per_cpu_s", "threads"} if cuda else \
        {"speedup_vs_torchebm", "kernel"}
    keep = [i for i, c in enumerate(cols) if c not in drop]
    return [cols[i] for i in keep], [heads[i] for i in keep]


def _markdown(rows, device, env: dict, run: dict, peaks_line: str) -> list[str]:
    cuda = device.type == "cuda"
    cols, heads = _cells(rows, cuda)
    md = [f"# Fused MLP energy, {'GPU' if cuda else 'CPU'} ({run['mode']} run, {env['date']})", "",
          f"Device: {env['device']}; torch {env['torch']}, triton {env['triton']}, ebmfast {env['ebmfast']} "
          f"(commit {env['commit']}); {peaks_line}" + ("" if cuda else f" Memory allocator: {run['malloc']}."), "",
          "Speedups are against the baseline of the same run and thread count: the eager autograd loop (chains) "
          "or autograd (E + grad; penalty steps: create_graph double backward). Times: pytest-benchmark median "
          "over rounds (q1, q3 beside it)" + (", on torch.utils.benchmark's synchronising CUDA clock. "
                                              if cuda else
                                              "; `CPU ms` = process CPU time per call over a back-to-back block "
                                              "(all threads; other jobs on the cores do not inflate it). ")
          + "`target needs` = the GFLOP/s (and % of the measured matmul peak) the fused row would have to reach "
          "for its target, from the baseline's time in this run; for penalty steps after subtracting "
          "`node_floor` (the same autograd glue around a node that computes nothing). `load` = 1-minute load "
          "average before-after the row. `-` = not measured (the note says why).", ""]
    for kind, title in (("chain", "Whole chains (K steps)"), ("penalty", "Penalty step (E + penalty + backward)"),
                        ("energy_grad", "One E + grad_x E")):
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            md += [f"## {title}", "", _common.markdown_table(sel, cols, heads), ""]
    mem = [r for r in rows if r["kind"] == "memory"]
    if mem:
        col = "peak_mem_growth_mb" if cuda else "peak_rss_growth_mb"
        what = "torch.cuda.max_memory_allocated growth, MiB" if cuda else "RSS growth over a K=2 warm-up, MB"
        md += [f"## Peak memory of a chain vs K ({what}; no trajectory recorded)", "",
               _common.markdown_table(mem, ["impl", "kernel", "steps", col, "ms_median", "note"],
                                      ["impl", "kernel", "K", "peak growth", "ms (one chain)", "note"]), ""]
    env = {k: v for k, v in env.items() if k != "threads"}  # each row has its thread count
    return md + ["## Environment", "", _common.env_markdown(env, {"mode": run["mode"]}), ""]


def _peaks_line(timed_rows: list[dict], cuda: bool) -> str:
    by_t = {}
    for r in timed_rows:
        if r.get("matmul_peak_gflops") == r.get("matmul_peak_gflops") and r.get("matmul_peak_gflops") is not None:
            by_t[r["threads"]] = r["matmul_peak_gflops"]
    if not by_t:
        return "matmul peak not measured."
    what = "torch.mm 4096^3 float32, TF32 off" if cuda else "torch.mm 1024x256x256 float32"
    return ("measured matmul peak " + " and ".join(f"{p:g} GFLOP/s at {t} thread(s)" for t, p in by_t.items())
            + f" ({what}, fastest round).")


def write(rows, device, out_dir: str, stem: str, env: dict, run: dict, load_before, t_start, command: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    csv_path, md_path = os.path.join(out_dir, stem + ".csv"), os.path.join(out_dir, stem + ".md")
    _common.append_csv(csv_path, [{k: v for k, v in r.items() if k != "target_needs"} for r in rows], CSV_COLUMNS)
    md = _markdown(rows, device, env, run, _peaks_line(rows, device.type == "cuda"))
    md += _common.conditions_markdown(load_before, t_start, command)
    with open(md_path, "w") as f:
        f.write("\n".join(md))
    print(f"wrote {md_path} and appended {csv_path}")


def write_not_measured(planned: list[dict], device, out_dir: str, stem: str) -> None:
    """The planned table with every row 'not measured' (no CSV rows: nothing was measured)."""
    rows = table_rows([{**c, "note": "not measured"} for c in planned], {}, {})
    env = {"date": "-", "device": "not measured", "torch": "-", "triton": "-", "ebmfast": "-", "commit": "-"}
    md = _markdown(rows, device, env, {"mode": "planned", "malloc": "-"}, "matmul peak not measured.")
    where = "GPU" if device.type == "cuda" else "CPU"
    md[0] = f"# Fused MLP energy, {where} (not measured)"
    md[2] = (f"Not measured: no run of `python bench/bench_mlp.py --device {device.type}` is recorded here yet. "
             "The tables list the planned rows and their targets.")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, stem + ".md")
    with open(path, "w") as f:
        f.write("\n".join(md[:-4] if md[-4] == "## Environment" else md))
    print(f"wrote {path}")

"""Rows, CSV and markdown of bench/bench_langevin_step.py: GB/s, % of the copy bandwidth, speedups against
the same run's eager baselines, where the fused kernel's time goes, chain throughput."""
from __future__ import annotations

import os

import _common

CSV_COLUMNS = ["date", "device", "cpu_model", "threads", "torch", "triton", "ebmfast", "commit", "python", "load_1m",
               "mode", "bench", "case", "numel", "variant", "baseline", "speedup", "median_ms", "min_ms", "iqr_ms",
               "cpu_ms", "blocks", "calls_per_block", "bytes_per_elem", "gbps", "pct_copy_bw",
               "particle_steps_per_s", "overhead_over_grad_ms", "q1_ms", "q3_ms", "load_avg", "rms_displacement",
               "note"]
NAN = float("nan")


def table_rows(cases: list[dict], env: dict, mode: str) -> list[dict]:
    """One row per case, timed or not, in run order (blocks = rounds, calls_per_block = calls per round)."""
    timed = [c for c in cases if "median_s" in c]
    med = {(r["threads"], r["case"], r["variant"]): r["median_s"] for r in timed}
    base = {"cpu_model": _common.cpu_model(), "mode": mode}
    rows = []
    for r in cases:
        if "median_s" not in r:
            rows.append({**env, **base, "threads": r["threads"], "bench": r["bench"], "case": r["case"],
                         "numel": r.get("numel", ""), "variant": r["variant"], "baseline": r["baseline"],
                         "note": r["note"]})
            continue
        m = r["median_s"]
        row = {**env, **base, "threads": r["threads"], "bench": r["bench"], "case": r["case"], "numel": r["numel"],
               "variant": r["variant"], "baseline": r["baseline"], "median_ms": m * 1e3, "min_ms": r["min_s"] * 1e3,
               "iqr_ms": r["iqr_s"] * 1e3, "q1_ms": r["q1_s"] * 1e3, "q3_ms": r["q3_s"] * 1e3,
               "cpu_ms": r.get("cpu_ms", NAN), "blocks": r["rounds"], "calls_per_block": r["iterations"],
               "load_avg": f"{r['load_before']:.1f}-{r['load_after']:.1f}",
               "rms_displacement": r.get("rms_displacement", "")}
        b = med.get((r["threads"], r["case"], r["baseline"])) if r["baseline"] else None
        row["speedup"] = b / m if b else (1.0 if r["variant"] == "eager loop" else None)
        if r["bench"] == "op":
            copy = med.get((r["threads"], r["case"], "copy"), NAN)
            gbps = r["bytes_per_elem"] * r["numel"] / m / 1e9
            row.update(bytes_per_elem=r["bytes_per_elem"], gbps=gbps,
                       pct_copy_bw=100 * gbps / (8 * r["numel"] / copy / 1e9))
        else:
            floor = med.get((r["threads"], r["case"], "grad_only"), NAN)
            row.update(particle_steps_per_s=r["batch"] * r["n_steps"] / m, overhead_over_grad_ms=(m - floor) * 1e3)
        rows.append(row)
    return rows


def op_markdown(rows: list[dict]) -> str:
    cols = ["case", "variant", "median_ms", "iqr_ms", "gbps", "pct_copy_bw", "speedup", "baseline", "cpu_ms", "note"]
    heads = ["size", "variant", "median ms", "IQR ms", "GB/s", "% of copy BW", "speedup", "vs", "CPU ms", "note"]
    return _common.markdown_table([r for r in rows if r["bench"] == "op"], cols, heads)


def chain_markdown(rows: list[dict]) -> str:
    cols = ["case", "variant", "median_ms", "iqr_ms", "particle_steps_per_s", "overhead_over_grad_ms", "speedup",
            "cpu_ms", "rms_displacement", "note"]
    heads = ["energy", "sampler", "ms / 60-step chain", "IQR ms", "particle-steps/s", "ms over grad_only",
             "speedup vs eager loop", "CPU ms", "rms displacement", "note"]
    return _common.markdown_table([r for r in rows if r["bench"] == "chain"], cols, heads)


def summary_lines(rows: list[dict]) -> list[str]:
    """The 2x target at >= 1e6 elements, and where the fused kernel's time goes."""
    out = []
    by = {(r["case"], r["variant"]): r for r in rows if r["bench"] == "op" and "median_ms" in r}
    for r in by.values():
        if not r["variant"].startswith("fused") or r["variant"] in ("fused_nonoise", "fused_noisegiven") \
                or r["numel"] < 10**6 or r["speedup"] is None:
            continue
        line = (f"- {r['case']} {r['variant']}: {r['speedup']:.2f}x vs {r['baseline']} "
                f"({'meets' if r['speedup'] >= 2 else 'MISSES'} the 2x target)")
        if r["variant"].startswith("fused_") and (r["case"], "eager") in by:
            line += f"; {by[(r['case'], 'eager')]['median_ms'] / r['median_ms']:.2f}x vs eager (out-of-place)"
        out.append(line)
    out += ["", "Where the fused kernel's time goes (Philox + Box-Muller = fused - fused_nonoise; ns per element, "
                "CPU ns in brackets):", ""]
    for (case, variant), r in by.items():
        nz, rn = by.get((case, "fused_nonoise")), by.get((case, "randn_like"))
        if variant != "fused" or nz is None:
            continue
        n = r["numel"]

        def ns(row, key="median_ms"):
            return row[key] * 1e6 / n
        line = (f"- {case}: fused {ns(r):.2f} ns/elem ({ns(r, 'cpu_ms'):.2f}); update only {ns(nz):.2f} "
                f"({ns(nz, 'cpu_ms'):.2f}); so Philox + Box-Muller {ns(r) - ns(nz):.2f} "
                f"({ns(r, 'cpu_ms') - ns(nz, 'cpu_ms'):.2f})")
        if rn:
            line += f"; torch.randn_like {ns(rn):.2f} ({ns(rn, 'cpu_ms'):.2f})"
        out.append(line)
    return out


def contention_lines(rows: list[dict], threads: int) -> list[str]:
    """How much other load inflated the wall clock: wall x threads / CPU of the copy rows (about 1 when idle)."""
    f = [r["median_ms"] * threads / r["cpu_ms"] for r in rows
         if r["bench"] == "op" and r["variant"] == "copy" and r.get("cpu_ms", NAN) > 0]
    if not f:
        return []
    out = [f"- contention: wall x threads / CPU time of the `copy` rows = {', '.join(f'{v:.1f}' for v in f)} "
           "(about 1 on an idle machine)"]
    if max(f) > 1.5:
        out.append("- **other processes competed for the cores during this section: its wall times are inflated;** "
                   "the CPU ms column shows the work done")
    return out + [""]


def write(cases, device, out_dir: str, stem: str, env: dict, mode: str, load_before, t_start,
          command: str) -> None:
    rows = table_rows(cases, env, mode)
    os.makedirs(out_dir, exist_ok=True)
    csv_path, md_path = os.path.join(out_dir, stem + ".csv"), os.path.join(out_dir, stem + ".md")
    _common.append_csv(csv_path, rows, CSV_COLUMNS)
    where = "the GPU" if device.type == "cuda" else "the CPU"
    md = [f"# ebmfast.ops.langevin_step and ebmfast.sample on {where} ({mode} run, {env['date']})", "",
          f"Device: {env['device']}; torch {env['torch']}, triton {env['triton']}, ebmfast {env['ebmfast']} "
          f"(commit {env['commit']}), python {env['python']}.", "",
          "Times: pytest-benchmark median over rounds (IQR beside it)"
          + (" on torch.utils.benchmark's synchronising CUDA clock" if device.type == "cuda" else
             "; `CPU ms` = process CPU time per call over a back-to-back block (all threads)")
          + ". Speedups are against the baseline of the same run and thread count. `-` = not measured "
          "(the note says why).", ""]
    for t in sorted({r["threads"] for r in rows}):
        sel = [r for r in rows if r["threads"] == t]
        md += [f"## {t} thread(s)" if device.type == "cpu" else "## Results", ""]
        md += contention_lines([r for r in sel if "median_ms" in r], t) if device.type == "cpu" else []
        if any(r["bench"] == "op" for r in sel):
            md += [f"### (a) one step, float32, `clamp=({LO_HI})`, step 0.01, noise 0.01", "", op_markdown(sel), "",
                   "Target: fused >= 2x the eager expression at >= 1e6 elements:", ""]
            md += summary_lines(sel) + [""]
        if any(r["bench"] == "chain" for r in sel):
            md += ["### (b) whole 60-step chains on a plain nn.Module energy (step 0.01, noise 0.01)", "",
                   chain_markdown(sel), ""]
    md += ["## Environment", "", _common.env_markdown({k: v for k, v in env.items() if k != "threads"},
                                                      {"mode": mode}), ""]
    md += _common.conditions_markdown(load_before, t_start, command)
    with open(md_path, "w") as f:
        f.write("\n".join(md))
    print(f"wrote {md_path} and appended {csv_path}")


LO_HI = "-3, 3"

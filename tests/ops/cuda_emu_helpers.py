"""Shared by the CUDA-emulator tests (test_mlp_cuda_emulated.py, test_mlp_cuda_backward_emulated.py):
building a harness from a real .cu file against tests/ops/cuda_emu/cuda_runtime.h, the shared-memory
layouts of include/ebmfast/mlp_cuda_plan.h as the harness reports them, and the packed parameter
layout of the CUDA launchers (csrc/cuda/mlp_pack.h). Random MLPs: ebmfast_testing.random_net."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
EMU = ROOT / "tests" / "ops" / "cuda_emu"
GXX = shutil.which("g++")


def build_harness(tmp_dir: Path, source: str) -> Path:
    """g++-compiles tests/ops/cuda_emu/<source>.cpp (which #includes a csrc/cuda .cu) into tmp_dir."""
    exe = Path(tmp_dir) / source
    cmd = [GXX, "-std=c++20", "-O1", "-pthread", "-I", str(EMU), "-I", str(ROOT / "csrc" / "include"),
           "-I", str(ROOT / "csrc" / "cuda"), str(EMU / f"{source}.cpp"), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"building the emulation harness failed:\n{res.stderr[-4000:]}"
    return exe


def layout_bytes(harness: Path, tmp_dir: Path, d: int, nh: int, hp: int, elem: int):
    """Shared-memory bytes of every layout of include/ebmfast/mlp_cuda_plan.h, from the harness
    (mode "layouts"): ({(kind, rb, resident, state_smem): bytes}, static budget in bytes), kind
    "fwd" (state_smem always True) or "bwd"."""
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    cfg = dict(mode="layouts", D=d, NH=nh, HP=hp, elem=elem, smem_optin=0, sm_count=1)
    (tmp_dir / "config.txt").write_text("".join(f"{k} {v}\n" for k, v in cfg.items()))
    res = subprocess.run([str(harness), str(tmp_dir)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    sizes, budget = {}, None
    for line in (tmp_dir / "layouts.txt").read_text().splitlines():
        f = line.split()
        if f[0] == "static_budget":
            budget = int(f[1])
        else:
            sizes[(f[0], int(f[1]), f[2] == "1", f[3] == "1")] = int(f[4])
    assert budget is not None and sizes, "the harness wrote no layouts"
    return sizes, budget


def pack_params(ws, bs, slope, hp):
    """The layout of csrc/cuda/mlp_pack.h: [W_1 HPxD][W_l HPxHP][b NHxHP][w_out HP][b_out, slope, 0.. HP]."""
    nh, d = len(ws) - 1, ws[0].shape[1]
    parts = [torch.zeros(hp, d, dtype=torch.float64)]
    parts[0][: ws[0].shape[0]] = ws[0]
    for w in ws[1:-1]:
        t = torch.zeros(hp, hp, dtype=torch.float64)
        t[: w.shape[0], : w.shape[1]] = w
        parts.append(t)
    b = torch.zeros(nh, hp, dtype=torch.float64)
    for i in range(nh):
        if bs:
            b[i, : bs[i].shape[0]] = bs[i]
    parts.append(b)
    tail = torch.zeros(2, hp, dtype=torch.float64)
    tail[0, : ws[-1].shape[1]] = ws[-1][0]
    tail[1, 0] = bs[-1][0] if bs else 0.0
    tail[1, 1] = slope
    parts.append(tail)
    return torch.cat([p.reshape(-1) for p in parts])

"""Shared by the CUDA-emulator tests (test_mlp_cuda_emulated.py, test_mlp_cuda_backward_emulated.py):
building a harness from a real .cu file against tests/ops/cuda_emu/cuda_runtime.h, and the packed
parameter layout of the CUDA launchers (csrc/cuda/mlp_pack.h). Random MLPs: ebmfast_testing.random_net."""
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

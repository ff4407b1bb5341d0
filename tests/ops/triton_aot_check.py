"""Compiles the Triton kernels ahead of time for an NVIDIA GPU architecture, without a GPU.

    python tests/ops/triton_aot_check.py CC KERNEL DTYPE D WIDTH NH [CC KERNEL DTYPE D WIDTH NH ...]

KERNEL: energy_grad | chain | backward (the MLP kernels; D, WIDTH, NH: input dim, hidden width,
hidden layers) or langevin (D, WIDTH, NH ignored); DTYPE: fp32 | fp64. Each spec is compiled
with the launch configuration the launchers use on a GPU (ebmfast/ops/_triton/mlp_config.py,
langevin_launch.py: block size, num_warps, num_stages=1, dot precision) and every feature of the
kernel switched on, through Triton's real frontend, optimiser and ptxas. Prints one JSON line
per kernel: registers, spill stores / loads and stack frame per thread (ptxas -v), shared memory
per block. Run by tests/ops/test_mlp_triton_aot.py in a process WITHOUT TRITON_INTERPRET (the
interpreter never compiles, so it cannot catch a kernel that does not fit a GPU), with a fresh
TRITON_CACHE_DIR so that ptxas runs and reports.
"""
import contextlib
import io
import json
import os
import re
import sys

os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import torch  # noqa: E402

from ebmfast.ops._triton import mlp_config as cfg  # noqa: E402
from ebmfast.ops._triton.langevin_launch import langevin_launch_config  # noqa: E402
from ebmfast.ops._triton.langevin_step import _langevin_step_fwd_kernel  # noqa: E402
from ebmfast.ops._triton.mlp_backward import _mlp_energy_grad_bwd_kernel  # noqa: E402
from ebmfast.ops._triton.mlp_energy import _mlp_chain_fwd_kernel, _mlp_energy_grad_fwd_kernel  # noqa: E402

INTS = {"B": "i32", "blk0": "i32", "zero": "i32", "n_steps": "i32", "seed": "i64", "offset": "i64", "every": "i32",
        "n_elements": "i32", "row_size": "i32"}


def _signature(kernel, ptr, consts):
    sig = {}
    for n in kernel.arg_names:
        if n in consts:
            sig[n] = "constexpr"
        elif n.endswith("_ptr"):
            sig[n] = "*i32" if n == "bad_ptr" else "*" + ptr
        elif n.endswith("_bits"):
            sig[n] = "i64"
        else:
            sig[n] = INTS[n]
    return sig


def _mlp_kernel(kernel: str, dtype: str, d: int, width: int, nh: int):
    acc = torch.float64 if dtype == "fp64" else torch.float32
    hp = max(16, cfg.pow2(width))
    dp = cfg.pow2(d)
    bb, warps = cfg.mlp_launch_config(kernel, hp, 1 << 20, dtype == "fp64", interpret=False)
    common = dict(D=d, DP=dp, HP=hp, NH=nh, ACT=6, BLOCK_B=bb, **cfg.kernel_meta(acc))  # gelu: the longest
    w = [width] * nh + [0] * (6 - nh)
    if kernel == "energy_grad":
        fn, consts = _mlp_energy_grad_fwd_kernel, dict(common, WANT_GRAD=True, SAVE=True,
                                                       **{f"W{i + 1}": w[i] for i in range(6)})
    elif kernel == "chain":
        fn, consts = _mlp_chain_fwd_kernel, dict(common, HAS_NOISE=True, HAS_REF=True, HAS_LO=True, HAS_HI=True,
                                                 CLIP_MODE=2, REC_TRAJ=True, REC_E=True, CHECK=True)
    else:
        fn, consts = _mlp_energy_grad_bwd_kernel, dict(common, DQ=cfg.bwd_dq(dp), SCR=cfg.bwd_use_scratch(hp))
    info = dict(BLOCK_B=bb, num_warps=warps, precision=common["PREC"])
    if kernel == "backward":
        info["scratch"] = consts["SCR"]
    return fn, consts, warps, info


def _langevin_kernel(dtype: str):
    f64 = dtype == "fp64"
    bg, warps = langevin_launch_config(f64, interpret=False)
    consts = dict(HAS_NOISE=False, HAS_LO=True, HAS_HI=True, CLIP_MODE=2, ACC=tl.float64 if f64 else tl.float32,
                  BLOCK_G=bg)  # in-kernel Philox noise, norm clip, both clamps: the longest path
    return _langevin_step_fwd_kernel, consts, warps, dict(BLOCK_G=bg, num_warps=warps)


def _parse_ptxas(log: str) -> dict:
    regs = re.findall(r"Used (\d+) registers", log)
    stack = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if not regs or not stack:
        raise RuntimeError(f"no ptxas -v report in the compile output (cached kernel?):\n{log[-2000:]}")
    frame, stores, loads = map(int, stack[-1])
    return {"regs": int(regs[-1]), "stack": frame, "spill_stores": stores, "spill_loads": loads}


def compile_spec(cc: int, kernel: str, dtype: str, d: int, width: int, nh: int) -> dict:
    if kernel == "langevin":
        fn, consts, warps, info = _langevin_kernel(dtype)
        shape = {}
    else:
        fn, consts, warps, info = _mlp_kernel(kernel, dtype, d, width, nh)
        shape = dict(D=d, width=width, NH=nh)
    src = ASTSource(fn, _signature(fn, dtype, consts), consts)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        k = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=dict(num_warps=warps, num_stages=1))
    return dict(kernel=kernel, cc=cc, dtype=dtype, **shape, **info, shared=k.metadata.shared,
                triton=triton.__version__, **_parse_ptxas(log.getvalue()))


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) % 6:
        sys.exit(f"usage: {sys.argv[0]} CC KERNEL DTYPE D WIDTH NH [...] (6 fields per spec), got {args}")
    for i in range(0, len(args), 6):
        cc, kernel, dtype, d, width, nh = args[i:i + 6]
        print(json.dumps(compile_spec(int(cc), kernel, dtype, int(d), int(width), int(nh))), flush=True)

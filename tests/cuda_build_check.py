"""Checks a CUDA build of the extension; runs without a GPU (a plain script, not a pytest module).

    python tests/cuda_build_check.py [--archs "8.0;9.0"]

Run from the checkout that holds the built ebmfast/_C*.so (`python setup.py build_ext --inplace`
with FORCE_CUDA=1), with the CUDA build of torch it was built against. Checks: the extension
loads and says it has CUDA kernels; every op with a CUDA kernel is registered for the CUDA
dispatch key (and its CPU kernel for CPU); the launch-plan ops answer; with --archs, the shared
object holds device code for exactly those architectures (cuobjdump, or the fat binary headers
read directly when the toolkit has no cuobjdump). Prints
one line per check and exits 1 if any fails.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_OPS = ["langevin_step", "langevin_step_", "philox_normal", "mlp_energy_grad", "mlp_langevin_chain",
            "mlp_energy_grad_backward"]
CPU_OPS = CUDA_OPS + ["mlp_grad_norm_penalty", "mlp_grad_norm_penalty_backward"]
H100 = dict(smem_optin=232448, smem_per_sm=233472, sm_count=132)


FATBIN_MAGIC = 0xBA55ED50  # the CUDA fat binary container nvcc embeds in host objects


def _fatbin_archs(data: bytes) -> set[str]:
    """sm_XX of the device code (ELF) entries of every fat binary in `data`. Layout: a 16-byte header
    (magic u32, version u16, header size u16, entries size u64), then entries, each a header (kind
    u16: 1 PTX, 2 ELF; u16; header size u32; payload size u64; ...; arch u32 at byte 28) and payload."""
    archs, start = set(), data.find(FATBIN_MAGIC.to_bytes(4, "little"))
    while start >= 0:
        hsize = int.from_bytes(data[start + 6:start + 8], "little")
        total = int.from_bytes(data[start + 8:start + 16], "little")
        pos, end = start + hsize, min(start + hsize + total, len(data))
        while hsize == 16 and pos + 32 <= end:
            kind = int.from_bytes(data[pos:pos + 2], "little")
            ehsize = int.from_bytes(data[pos + 4:pos + 8], "little")
            size = int.from_bytes(data[pos + 8:pos + 16], "little")
            arch = int.from_bytes(data[pos + 28:pos + 32], "little")
            if ehsize < 32 or kind not in (1, 2):
                break
            if kind == 2:
                archs.add(f"sm_{arch}")
            pos += ehsize + size
        start = data.find(FATBIN_MAGIC.to_bytes(4, "little"), start + 4)
    return archs


def _cubin_archs(so: str) -> set[str]:
    """sm_XX of every device ELF in the shared object: cuobjdump when the toolkit has it, else the
    fat binary headers read directly."""
    tool = shutil.which("cuobjdump")
    if tool is None and os.environ.get("CUDA_HOME"):
        cand = os.path.join(os.environ["CUDA_HOME"], "bin", "cuobjdump")
        tool = cand if os.path.exists(cand) else None
    if tool is not None:
        out = subprocess.run([tool, "--list-elf", so], capture_output=True, text=True, timeout=300)
        return set(re.findall(r"\.(sm_\d+a?)\.", out.stdout))
    with open(so, "rb") as f:
        return _fatbin_archs(f.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", help='TORCH_CUDA_ARCH_LIST the build used, e.g. "8.0;9.0": check the device code')
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    results = []

    def check(name, ok, detail=""):
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")

    import torch

    import ebmfast
    from ebmfast import _ext

    check("ebmfast imported from this checkout", os.path.dirname(ebmfast.__file__) == os.path.join(ROOT, "ebmfast"),
          ebmfast.__file__)
    check(f"torch {torch.__version__} is a CUDA build", torch.version.cuda is not None, f"CUDA {torch.version.cuda}")
    loaded = _ext.available()
    check("extension loads", loaded, "" if loaded else str(_ext.load_error()))
    if not loaded:
        return 1
    info = _ext.build_info()
    check("extension built with CUDA", info.get("cuda", False), str(info))
    for key, ops in (("CUDA", CUDA_OPS), ("CPU", CPU_OPS)):
        for op in ops:
            ok = hasattr(torch.ops.ebmfast, op) and \
                torch._C._dispatch_has_kernel_for_dispatch_key(f"ebmfast::{op}", key)
            check(f"ebmfast::{op} has a {key} kernel", bool(ok))
    try:
        plan = list(torch.ops.ebmfast.mlp_cuda_plan(3, [32, 17], 5000, 4, "chain", H100["smem_optin"],
                                                    H100["smem_per_sm"], H100["sm_count"]))
        check("ebmfast::mlp_cuda_plan answers", plan[0] == 0 and plan[2] == 4, str(plan))
        check("ebmfast::mlp_cuda_limits answers", list(torch.ops.ebmfast.mlp_cuda_limits())[:3] == [6, 128, 128])
    except (RuntimeError, AttributeError) as exc:
        check("ebmfast::mlp_cuda_plan answers", False, f"{type(exc).__name__}: {exc}")
    if args.archs:
        sos = glob.glob(os.path.join(ROOT, "ebmfast", "_C*.so"))
        want = {"sm_" + a.strip().replace(".", "") for a in re.split(r"[;\s]+", args.archs) if a.strip()}
        got = _cubin_archs(sos[0]) if sos else None
        if got is None:
            check("device code architectures", False, "no built _C*.so")
        else:
            check("device code architectures", got == want, f"want {sorted(want)}, found {sorted(got)}")
    print(f"{sum(results)} of {len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

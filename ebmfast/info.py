"""`python -m ebmfast.info`: versions, which backends were built and load, and the choice per op and device."""
from __future__ import annotations

import os
import platform
import sys

import torch

from . import _ext
from .ops import _dispatch

OPS = ("langevin_step", "philox_normal", "mlp_energy_grad", "mlp_energy_grad_backward", "mlp_langevin_chain",
       "mlp_grad_norm_penalty")


def collect() -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "extension_loaded": _ext.available(),
        "extension_error": _ext.load_error(),
        "extension_kernels": _ext.build_info(),
        "triton": None,
        "triton_interpret": _dispatch.triton_interpret(),
        "EBMFAST_BACKEND": os.environ.get(_dispatch.ENV_VAR),
        "backends": {},
        "choice": {},
    }
    ok, why = _dispatch.triton_status()
    if ok:
        import triton

        info["triton"] = triton.__version__
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        for b in _dispatch.BACKENDS:
            reasons = _dispatch.not_supported_reasons(b, dev, torch.float32)
            info["backends"][f"{b}@{dev.type}"] = "ok" if not reasons else "; ".join(reasons)
        for op in OPS:
            try:
                info["choice"][f"{op}@{dev.type}"] = _dispatch.choose(op, dev, torch.float32, "auto")
            except (RuntimeError, ValueError) as exc:  # report, do not crash
                info["choice"][f"{op}@{dev.type}"] = f"error: {exc}"
    return info


def main() -> None:
    info = collect()
    from . import __version__

    print(f"ebmfast {__version__}")
    for key in ("python", "platform", "torch", "torch_cuda", "cuda_available", "device", "threads", "triton",
                "triton_interpret", "EBMFAST_BACKEND"):
        print(f"  {key:18s} {info[key]}")
    print(f"  {'extension':18s} {'loaded' if info['extension_loaded'] else 'NOT loaded: ' + str(info['extension_error'])}")
    print(f"  {'kernels built':18s} {', '.join(k for k, v in info['extension_kernels'].items() if v) or 'none'}")
    print("backends for langevin_step (float32):")
    for k, v in info["backends"].items():
        print(f"  {k:18s} {v}")
    print("auto choice per op and device (float32; the MLP ops also check each network's size at call time):")
    for k, v in info["choice"].items():
        print(f"  {k:28s} {v}")


if __name__ == "__main__":
    main()

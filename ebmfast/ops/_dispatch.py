"""Backend choice for every ebmfast op: one priority walk over backend objects.

Each backend (`ref`, `cpu`, `cuda`, `triton`) is an object whose `not_supported_reasons(op, inputs)`
says why it cannot run `op` on these inputs (an empty list: it can). Op modules add what only they
know (the MLP kernels' depth, width and shared-memory limits) with `register_check(op, backend, fn)`.

Priority per device: CUDA tensors -> cuda, triton, ref; CPU tensors -> cpu, ref. (The Triton
interpreter runs CPU tensors only when asked for explicitly: it is a test tool, thousands of times
slower than the C++ kernel.) `backend="auto"` (with EBMFAST_BACKEND unset) falls back quietly and
records which backend ran (`LAST_CHOICE`, shown by `python -m ebmfast.info`); an explicit request
(`backend=` or EBMFAST_BACKEND) that cannot be met raises one error listing every reason.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .. import _ext

BACKENDS = ("cuda", "triton", "cpu", "ref")
ENV_VAR = "EBMFAST_BACKEND"
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# (op, device type) -> backend that ran last; for ebmfast.info, run summaries and the benchmarks
LAST_CHOICE: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Inputs:
    """What a backend needs to see to decide: device and dtype, and for the MLP ops the batch
    tensor x [B, D], the weight list and the activation code."""

    device: torch.device
    dtype: torch.dtype
    x: Optional[torch.Tensor] = None
    weights: Sequence[torch.Tensor] = ()
    act: int = 0


# (op, backend name) -> fn(inputs) -> reasons; registered by the op modules
_CHECKS: dict[tuple[str, str], Callable[[Inputs], list[str]]] = {}


def register_check(op: str, backend: str, fn: Callable[[Inputs], list[str]]) -> None:
    """Adds an op-specific support check to a backend (e.g. the CUDA MLP kernels' shared memory)."""
    _CHECKS[(op, backend)] = fn


@functools.lru_cache(maxsize=1)
def triton_status() -> tuple[bool, str]:
    """(importable, reason if not)."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:  # includes a triton whose own imports fail
        return False, f"triton is not importable ({type(exc).__name__}: {exc})"
    return True, ""


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)  # registrations do not change once the extension is loaded
def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether the loaded extension registers a kernel of ebmfast::`op` for `dispatch_key`."""
    if not _ext.available() or not hasattr(torch.ops.ebmfast, op):
        return False
    return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"ebmfast::{op}", dispatch_key))


class Backend:
    """A backend: a name and the reasons it cannot take an op's inputs."""

    name = ""

    def own_reasons(self, op: str, inputs: Inputs) -> list[str]:
        return []

    def not_supported_reasons(self, op: str, inputs: Inputs) -> list[str]:
        reasons = []
        if inputs.dtype not in FLOAT_DTYPES:
            reasons.append(f"dtype {inputs.dtype} is not one of float32, float64, float16, bfloat16")
        reasons += self.own_reasons(op, inputs)
        check = _CHECKS.get((op, self.name))
        if not reasons and check is not None:
            reasons += check(inputs)
        return reasons


class RefBackend(Backend):
    """The PyTorch reference: every op, every device."""

    name = "ref"


class CompiledBackend(Backend):
    """Kernels of the compiled extension registered for one dispatch key."""

    def __init__(self, name: str, device_type: str, dispatch_key: str, missing_hint: str):
        self.name, self.device_type, self.dispatch_key, self.missing_hint = name, device_type, dispatch_key, missing_hint

    def own_reasons(self, op: str, inputs: Inputs) -> list[str]:
        reasons = []
        if not _ext.available():
            reasons.append(f"the compiled extension is not loaded ({_ext.load_error()})")
        elif not has_kernel(op, self.dispatch_key):
            reasons.append(f"the loaded extension has no {self.dispatch_key} kernel for {op} ({self.missing_hint})")
        if inputs.device.type != self.device_type:
            reasons.append(f"{self.name} kernels need {self.device_type.upper()} tensors, got device {inputs.device}")
        return reasons


class TritonBackend(Backend):
    """Triton kernels: CUDA tensors, or CPU tensors under TRITON_INTERPRET=1 (tests)."""

    name = "triton"
    OPS = ("langevin_step", "philox_normal", "mlp_energy_grad", "mlp_energy_grad_backward", "mlp_langevin_chain")

    def own_reasons(self, op: str, inputs: Inputs) -> list[str]:
        reasons = []
        if op not in self.OPS:
            reasons.append(f"there is no triton kernel for {op}")
        ok, why = triton_status()
        if not ok:
            reasons.append(why)
        if inputs.device.type == "cpu" and not triton_interpret():
            reasons.append("triton on CPU tensors needs TRITON_INTERPRET=1 set before triton is imported")
        elif inputs.device.type not in ("cpu", "cuda"):
            reasons.append(f"triton kernels need CUDA tensors, got device {inputs.device}")
        return reasons


REGISTRY: dict[str, Backend] = {
    "cuda": CompiledBackend("cuda", "cuda", "CUDA", "build with a CUDA torch, or FORCE_CUDA=1"),
    "triton": TritonBackend(),
    "cpu": CompiledBackend("cpu", "cpu", "CPU", "rebuild: python setup.py build_ext --inplace"),
    "ref": RefBackend(),
}


def auto_order(device: torch.device) -> tuple[str, ...]:
    return ("cuda", "triton", "ref") if device.type == "cuda" else ("cpu", "ref")


def not_supported_reasons(backend: str, device: torch.device, dtype: torch.dtype, op: str = "langevin_step",
                          **mlp) -> list[str]:
    """Why `backend` cannot run `op` on tensors of this device and dtype (empty list: it can)."""
    if backend not in REGISTRY:
        return [f"unknown backend {backend!r}; expected one of {('auto',) + BACKENDS}"]
    return REGISTRY[backend].not_supported_reasons(op, Inputs(device, dtype, **mlp))


def requested_backend(backend: Optional[str]) -> tuple[str, str]:
    """(backend, where it came from): `backend=` unless it is "auto"/None, then EBMFAST_BACKEND, else "auto"."""
    if backend not in (None, "auto"):
        return backend, "backend="
    env = os.environ.get(ENV_VAR, "").strip().lower()
    return (env, f"{ENV_VAR}=") if env else ("auto", "")


def choose(op: str, device: torch.device, dtype: torch.dtype, backend: Optional[str] = "auto", *,
           fallback_to_ref: bool = False, **mlp) -> str:
    """Pick the backend for `op` by one priority walk; records it in LAST_CHOICE.

    `mlp` (x=, weights=, act=) lets the MLP ops' registered checks see the network. An explicit
    request that cannot run raises RuntimeError naming every reason, unless `fallback_to_ref`
    (used by backward passes, whose forward already ran and which have no backend= argument of
    their own). An unknown backend name raises ValueError.
    """
    want, source = requested_backend(backend)
    if want != "auto" and want not in BACKENDS:
        raise ValueError(f"{source}{want!r} is not a backend; expected one of {('auto',) + BACKENDS}")
    inputs = Inputs(device, dtype, **mlp)
    order = auto_order(device) if want == "auto" else (want,)
    tried = {}
    for cand in order:
        reasons = REGISTRY[cand].not_supported_reasons(op, inputs)
        if not reasons:
            LAST_CHOICE[(op, device.type)] = cand
            return cand
        tried[cand] = reasons
    if fallback_to_ref:
        LAST_CHOICE[(op, device.type)] = "ref"
        return "ref"
    what = f"{source}{want!r} cannot run here" if want != "auto" else "no backend can run here"
    raise RuntimeError(f"ebmfast.{op}: {what} (device={device}, dtype={dtype}): "
                       + "; ".join(f"{b}: {', '.join(r)}" for b, r in tried.items()))

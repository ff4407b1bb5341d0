"""Which networks the CUDA MLP kernels take, from the kernels' own launch plan.

csrc/include/ebmfast/mlp_cuda_plan.h decides how a CUDA MLP kernel launches for a network on a
device: particle rows per block, hidden weights resident in shared memory or staged one matrix at
a time, the backward's tile state in shared or global memory, and the bytes of shared memory that
takes (dynamic, plus a static budget in the limit check). The compiled extension reports that
plan through the op ebmfast::mlp_cuda_plan (registered in CPU-only builds too) and its limits
through ebmfast::mlp_cuda_limits, so nothing here repeats the layout arithmetic:

    not_supported_reasons(x, weights, act, kernel)  ->  list[str]   (empty: the kernel takes it)
    plan(x, weights, kernel)                        ->  CudaPlan    (x on a CUDA device)

kernel: "forward" (mlp_energy_grad), "chain" (mlp_langevin_chain), "backward"
(mlp_energy_grad_backward). weights: [W_1 [w_1, D], ..., W_NH, W_out [1, w_NH]] (nn.Linear layout).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch

from .. import _ext

KERNEL_OPS = {"forward": "mlp_energy_grad", "chain": "mlp_langevin_chain", "backward": "mlp_energy_grad_backward"}
N_ACTIVATIONS = 7  # activation codes 0..6 (ebmfast/ops/mlp_activations.py, include/ebmfast/mlp_activation.h)
# return codes of the plan (MLPCudaError in include/ebmfast/mlp_cuda_plan.h)
RC_SHAPE, RC_SMEM, RC_DTYPE = -2, -3, -4


class CudaPlan(NamedTuple):
    """ebmfast::mlp_cuda_plan's answer. rc: 0, or RC_SHAPE / RC_SMEM / RC_DTYPE (the other fields then
    describe no launch, except min_smem_bytes with RC_SMEM)."""

    rc: int
    rows_per_block: int     # particles per block (8 warps x rows_per_warp)
    rows_per_warp: int
    resident: bool          # every hidden matrix in shared memory (else one staged at a time)
    state_in_smem: bool     # backward: the tile's a_l, g_l in shared memory (else in global scratch)
    dynamic_smem_bytes: int
    static_smem_bytes: int  # budgeted per block; the launch needs dynamic + static <= the device's limit
    min_smem_bytes: int     # the smallest layout's dynamic + static bytes
    n_blocks: int


class CudaLimits(NamedTuple):
    max_hidden: int
    max_d: int
    max_width: int
    threads_per_block: int
    static_smem_bytes: int


def _check_kernel(kernel: str) -> str:
    if kernel not in KERNEL_OPS:
        raise ValueError(f"kernel must be one of {tuple(KERNEL_OPS)}, got {kernel!r}")
    return KERNEL_OPS[kernel]


def _extension_reason() -> Optional[str]:
    """Why the plan ops cannot be asked, or None."""
    if not _ext.available():
        return f"the compiled extension is not loaded ({_ext.load_error()})"
    if not hasattr(torch.ops.ebmfast, "mlp_cuda_plan"):
        return "the loaded extension predates ebmfast::mlp_cuda_plan (rebuild it)"
    return None


def limits() -> CudaLimits:
    """The CUDA MLP kernels' limits as the extension states them (needs the extension)."""
    why = _extension_reason()
    if why is not None:
        raise RuntimeError(f"ebmfast: cannot read the CUDA MLP limits: {why}")
    return CudaLimits(*(int(v) for v in torch.ops.ebmfast.mlp_cuda_limits()))


def plan(x: torch.Tensor, weights: Sequence[torch.Tensor], kernel: str,
         device: Optional[torch.device] = None) -> CudaPlan:
    """The launch plan of `kernel` for x [B, D] and these weights on `device` (default: x's, which
    must then be a CUDA device). Needs the extension."""
    _check_kernel(kernel)
    why = _extension_reason()
    if why is not None:
        raise RuntimeError(f"ebmfast: cannot plan the CUDA MLP kernels: {why}")
    device = torch.device(device if device is not None else x.device)
    if device.type != "cuda":
        raise ValueError(f"plan needs a CUDA device, got {device}")
    props = torch.cuda.get_device_properties(device)
    out = torch.ops.ebmfast.mlp_cuda_plan(int(x.shape[1]), [int(w.shape[0]) for w in weights[:-1]],
                                          int(x.shape[0]), x.element_size(), kernel,
                                          int(props.shared_memory_per_block_optin),
                                          int(props.shared_memory_per_multiprocessor),
                                          int(props.multi_processor_count))
    rc, rpb, rpw, res, state, dyn, static, min_smem, n_blocks = (int(v) for v in out)
    return CudaPlan(rc, rpb, rpw, bool(res), bool(state), dyn, static, min_smem, n_blocks)


def not_supported_reasons(x: torch.Tensor, weights: Sequence[torch.Tensor], act: int, kernel: str) -> list[str]:
    """Why the CUDA MLP `kernel` cannot take these inputs (empty list: it can).

    Checked: the extension is loaded and registers the kernel's CUDA op; 1..max_hidden hidden
    layers, 1 <= D <= max_d, widths <= max_width, float32/float64, a known activation code; and,
    for x on a CUDA device, that the plan's smallest layout (one row per warp, weights staged,
    backward state in global memory) fits the device's shared memory per block, static budget
    included. A network that passes launches.
    """
    op = _check_kernel(kernel)
    what = "cuda MLP backward" if kernel == "backward" else "cuda MLP kernels"
    if x.dim() != 2:
        return [f"{what} needs x of shape [B, D], got {tuple(x.shape)}"]
    why = _extension_reason()
    if why is not None:
        return [f"{what}: {why}"]
    reasons = []
    if not torch._C._dispatch_has_kernel_for_dispatch_key(f"ebmfast::{op}", "CUDA"):
        reasons.append(f"the loaded extension has no CUDA kernel for {op} (build with a CUDA torch)")
    lim = limits()
    nh, d = len(weights) - 1, int(x.shape[1])
    if not 1 <= nh <= lim.max_hidden:
        reasons.append(f"{what} supports 1..{lim.max_hidden} hidden layers, got {nh}")
    if not 1 <= d <= lim.max_d:
        reasons.append(f"{what} supports input dim 1 <= D <= {lim.max_d}, got {d}")
    wmax = max([int(w.shape[0]) for w in weights[:-1]] or [0])
    if wmax > lim.max_width:
        reasons.append(f"{what} supports hidden widths <= {lim.max_width}, got {wmax}")
    if x.dtype not in (torch.float32, torch.float64):
        reasons.append(f"{what} computes in float32/float64, got {x.dtype}")
    if not 0 <= int(act) < N_ACTIVATIONS:
        reasons.append(f"activation code must be in [0, {N_ACTIVATIONS}), got {act}")
    if not reasons and x.is_cuda:
        p = plan(x, weights, kernel)
        if p.rc == RC_SMEM:
            limit = torch.cuda.get_device_properties(x.device).shared_memory_per_block_optin
            reasons.append(f"the network needs {p.min_smem_bytes} bytes of shared memory per block for the {what} "
                           f"(static budget of {p.static_smem_bytes} included), more than the device's {limit}")
        elif p.rc != 0:
            reasons.append(f"{what}: the launch plan refuses this network (code {p.rc})")
    return reasons


__all__ = ["CudaLimits", "CudaPlan", "KERNEL_OPS", "limits", "not_supported_reasons", "plan"]

"""What only the MLP kernels know about their limits, added to the dispatcher's backends.

CUDA: depth, widths and the shared-memory plan that the extension itself reports
(ebmfast/ops/_cuda_plan.py). Triton: depth, widths, dtypes (ebmfast/ops/_triton/mlp_config.py), and
networks whose backward kernel did not fit the GPU at launch. Imported by the MLP op modules;
Triton itself is imported only when a Triton kernel runs.
"""
from __future__ import annotations

from . import _cuda_plan, _dispatch
from ._triton import mlp_config  # limits and configs only; triton itself is imported by the launchers

# (device, dtype, D, widths, act) of networks whose Triton backward kernel did not fit the GPU
_TRITON_BWD_TOO_BIG: set = set()


def _key(x, weights, act) -> tuple:
    return (str(x.device), x.dtype, int(x.shape[1]), tuple(int(w.shape[0]) for w in weights), int(act))


def _cuda(kernel: str):
    def check(inputs: _dispatch.Inputs) -> list[str]:
        if inputs.x is None:
            return []
        return _cuda_plan.not_supported_reasons(inputs.x, inputs.weights, inputs.act, kernel)
    return check


def _triton(kernel: str):
    def check(inputs: _dispatch.Inputs) -> list[str]:
        if inputs.x is None:
            return []
        if kernel == "backward":
            reasons = mlp_config.backward_not_supported_reasons(inputs.x, inputs.weights, inputs.act)
        else:
            reasons = mlp_config.not_supported_reasons(inputs.x, inputs.weights, inputs.act)
        if kernel == "backward" and _key(inputs.x, inputs.weights, inputs.act) in _TRITON_BWD_TOO_BIG:
            reasons.append("the triton backward kernel for this network did not fit this GPU's shared memory")
        return reasons
    return check


for _op, _kernel in (("mlp_energy_grad", "forward"), ("mlp_langevin_chain", "chain"),
                     ("mlp_energy_grad_backward", "backward")):
    _dispatch.register_check(_op, "cuda", _cuda(_kernel))
    _dispatch.register_check(_op, "triton", _triton(_kernel))


def triton_ops():
    """The Triton MLP ops (raw kernels with fakes, registered on first use)."""
    from ._triton.mlp_launch import triton_ops as ops

    return ops()


def triton_backward_or_none(x, weights, biases, act, slope, saved, grad_e, grad_g):
    """The Triton VJP, or None when its kernel needs more shared memory than this GPU has.

    AOT-compiled for sm_90 the float64 kernel at width 128 needs ~152 KB of shared memory per
    block: it fits an A100 (163 KB) or H100 (227 KB) but not consumer GPUs (~99 KB), and only the
    launch can tell. Such networks are remembered and go to the reference from then on."""
    from triton.runtime.errors import OutOfResources

    try:
        return triton_ops().energy_grad_backward(x, list(weights), list(biases), act, slope, saved, grad_e, grad_g)
    except OutOfResources:
        _TRITON_BWD_TOO_BIG.add(_key(x, weights, act))
        _dispatch.LAST_CHOICE[("mlp_energy_grad_backward", x.device.type)] = "ref"
        return None

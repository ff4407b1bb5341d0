"""Gradient-norm penalty with an analytic double backward for MLP energies.

    grad_norm_penalty(E, x, lipschitz=L)    = mean_i (|grad_x E(x_i)|_2 - L)^2
    grad_norm_penalty(E, x, lipschitz=None) = mean_i  |grad_x E(x_i)|_2^2

For an energy that opts into the fused paths (a `fused_mlp()` method returning an MLPSpec, as
ebmfast.energies.MLPEnergy does) on the CPU backend the whole thing is one autograd node
(`_MLPGradNormPenalty`) over two C++ ops: the forward, ebmfast::mlp_grad_norm_penalty, is one
fused pass (E, grad_x E and the per-layer tensors the backward needs) plus the penalty; the
backward, ebmfast::mlp_grad_norm_penalty_backward, turns the penalty's cotangent into
v = dP/d(grad_x E) and runs the fused analytic VJP (second-order terms computed directly, no
autograd graph of the network). References: mlp_grad_norm_penalty_ref and
mlp_grad_norm_penalty_backward_ref below. Other MLP backends compose ebmfast.ops.mlp_energy_grad with
the penalty in PyTorch; any other energy uses autograd with create_graph=True. All give the
same value and gradients (w.r.t. the parameters and x) and compose with any outer loss.
The norm is sqrt(|g|^2 + 1e-12), so the derivative stays finite at g = 0. This is the one
gradient-penalty API of the library; the trainers call it.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _ext
from ..core import as_batch_energy
from . import _dispatch
from .mlp_energy import below_autograd, mlp_energy_grad, mlp_energy_grad_ref
from .mlp_spec import fused_mlp_of, saved_width

_EPS = 1e-12


def _reduce(per: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per.mean()
    if reduction == "sum":
        return per.sum()
    return per


def penalty_from_grad(g: torch.Tensor, lipschitz: Optional[float], reduction: str = "mean") -> torch.Tensor:
    """The penalty of input gradients g [B, ...] (differentiable in g)."""
    sq = g.reshape(g.shape[0], -1).pow(2).sum(1)
    per = sq if lipschitz is None else (torch.sqrt(sq + _EPS) - lipschitz).pow(2)
    return _reduce(per, reduction)


_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
_REDUCTION_NAMES = {v: k for k, v in _REDUCTIONS.items()}


def _lip_code(lipschitz: Optional[float]) -> float:
    return -1.0 if lipschitz is None else float(lipschitz)


def mlp_grad_norm_penalty_ref(x, weights, biases, act: int, slope: float, lipschitz: float, reduction: int):
    """Reference of ebmfast::mlp_grad_norm_penalty: (penalty, E, grad_x E, saved = empty); lipschitz
    <= 0 means the |g|^2 form, reduction 0/1/2 = none/mean/sum."""
    e, g = mlp_energy_grad_ref(x, weights, biases, act, slope)
    pen = penalty_from_grad(g, lipschitz if lipschitz > 0 else None, _REDUCTION_NAMES[int(reduction)])
    return pen, e, g, x.new_empty(0)


def mlp_grad_norm_penalty_backward_ref(x, weights, biases, act: int, slope: float, grad_penalty, grad_energy,
                                       lipschitz: float, reduction: int, create_graph: bool = False):
    """Reference of ebmfast::mlp_grad_norm_penalty_backward: autograd through the reference, with
    either cotangent None (= 0). create_graph=True keeps the result differentiable w.r.t. the
    inputs that require grad (the penalty node's double backward uses this)."""
    leaf = [t if (create_graph and t.requires_grad) else t.detach().requires_grad_(True)
            for t in [x, *weights, *biases]]
    xs, ws, bs = leaf[0], leaf[1:1 + len(weights)], leaf[1 + len(weights):]
    with torch.enable_grad():
        pen, e, _, _ = mlp_grad_norm_penalty_ref(xs, ws, bs, act, slope, lipschitz, reduction)
        pairs = [(o, c) for o, c in ((pen, grad_penalty), (e, grad_energy)) if c is not None]
        if not pairs:
            return torch.zeros_like(x), [torch.zeros_like(w) for w in weights], [torch.zeros_like(b) for b in biases]
        outs, cots = zip(*pairs)
        grads = torch.autograd.grad(outs, leaf, cots, allow_unused=True, materialize_grads=True,
                                    create_graph=create_graph)
    return grads[0], list(grads[1:1 + len(weights)]), list(grads[1 + len(weights):])


def _fake_penalty(x, weights, biases, act, slope, lipschitz, reduction):
    pen = x.new_empty(x.shape[0]) if reduction == 0 else x.new_empty(())
    return pen, x.new_empty(x.shape[0]), torch.empty_like(x), x.new_empty(x.shape[0], saved_width(weights))


def _fake_penalty_backward(x, weights, biases, act, slope, saved, grad, grad_penalty, grad_energy, lipschitz,
                           reduction):
    return torch.empty_like(x), [torch.empty_like(w) for w in weights], [torch.empty_like(b) for b in biases]


if _ext.available():
    torch.library.register_fake("ebmfast::mlp_grad_norm_penalty")(_fake_penalty)
    torch.library.register_fake("ebmfast::mlp_grad_norm_penalty_backward")(_fake_penalty_backward)


class _MLPGradNormPenalty(torch.autograd.Function):
    """(penalty, E) of an MLP at x [B, D] as one node (CPU); see the module docstring.

    Forward: ebmfast::mlp_grad_norm_penalty (one fused energy/gradient pass + the penalty).
    Backward: ebmfast::mlp_grad_norm_penalty_backward, which forms the penalty's cotangent on
    grad_x E, v_b = 2 w_b (|g_b| - L) / |g_b| * g_b (or 2 w_b g_b without L; w_b = 1/B for "mean",
    1 for "sum", the cotangent for "none"), and runs the fused analytic VJP.
    """

    @staticmethod
    def forward(ctx, x, lipschitz, reduction, act, slope, n_w, *params):
        weights, biases = list(params[:n_w]), list(params[n_w:])
        with below_autograd():
            pen, e, g, saved = torch.ops.ebmfast.mlp_grad_norm_penalty.default(
                x, weights, biases, act, slope, _lip_code(lipschitz), _REDUCTIONS[reduction])
        ctx.lipschitz, ctx.reduction, ctx.act, ctx.slope, ctx.n_w = lipschitz, reduction, act, slope, n_w
        ctx.save_for_backward(x, saved, g, *params)
        ctx.set_materialize_grads(False)
        return pen, e

    @staticmethod
    def backward(ctx, grad_pen, grad_e):
        x, saved, g, *params = ctx.saved_tensors
        weights, biases = list(params[:ctx.n_w]), list(params[ctx.n_w:])
        args = (x, weights, biases, ctx.act, ctx.slope)
        lip, red = _lip_code(ctx.lipschitz), _REDUCTIONS[ctx.reduction]
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference instead
            gx, gw, gb = mlp_grad_norm_penalty_backward_ref(*args, grad_pen, grad_e, lip, red, create_graph=True)
        else:
            gx, gw, gb = torch.ops.ebmfast.mlp_grad_norm_penalty_backward.default(*args, saved, g, grad_pen, grad_e,
                                                                               lip, red)
        return (gx if ctx.needs_input_grad[0] else None, None, None, None, None, None, *gw, *gb)


def grad_norm_penalty(energy, x: torch.Tensor, lipschitz: Optional[float] = None, reduction: str = "mean",
                      backend: str = "auto", return_energy: bool = False):
    """Gradient-norm penalty of `energy` at x.

    Args:
        energy: any callable [B, ...] -> [B] (or [B, 1]); an energy with a `fused_mlp()` method
            (ebmfast.energies.MLPEnergy) takes the fused analytic path.
        x: [B, ...] points. If x requires grad, the penalty is differentiable w.r.t. x too.
        lipschitz: L > 0 for mean (|g| - L)^2, or None for mean |g|^2.
        reduction: "mean" | "sum" | "none" ([B]).
        backend: backend of the fused ops ("auto" | "cpu" | "cuda" | "triton" | "ref"); ignored
            for energies without a fused path.
        return_energy: also return E(x) [B] (computed by the same call; differentiable).

    Returns:
        The penalty (scalar, or [B] for reduction="none"), or (penalty, E) with return_energy.

    Equivalent to::

        x = x.detach().requires_grad_()  # (x itself if it requires grad)
        g, = torch.autograd.grad(energy(x).sum(), x, create_graph=True)
        ((g.flatten(1).norm(dim=1) - L) ** 2).mean()
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor [B, ...] with at least 2 dims, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if lipschitz is not None and (isinstance(lipschitz, bool) or not isinstance(lipschitz, (int, float))
                                  or not lipschitz > 0):
        raise ValueError(f"lipschitz must be a number > 0 or None, got {lipschitz!r}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    spec = fused_mlp_of(energy)
    if spec is not None:
        xf = spec.flat(x)
        spec.check_matches(xf)
        weights, biases = list(spec.weights), list(spec.biases)
        if _use_penalty_node(xf, weights, spec.act, backend):
            lip = None if lipschitz is None else float(lipschitz)
            p, e = _MLPGradNormPenalty.apply(xf.contiguous(), lip, reduction, spec.act, spec.slope, len(weights),
                                             *[w.contiguous() for w in weights], *biases)
            return (p, e) if return_energy else p
        e, g = mlp_energy_grad(xf.contiguous(), [w.contiguous() for w in weights], biases, spec.act, spec.slope,
                               backend=backend, _checked=True)
    else:
        xin = x if x.requires_grad else x.detach().requires_grad_(True)
        with torch.enable_grad():
            e = as_batch_energy(energy(xin), x.shape[0])
            (g,) = torch.autograd.grad(e.sum(), xin, create_graph=True)
    p = penalty_from_grad(g, lipschitz, reduction)
    return (p, e) if return_energy else p


def _use_penalty_node(x: torch.Tensor, weights, act: int, backend: str) -> bool:
    """Whether the one-node penalty (a CPU kernel pair) runs: float32/float64 CPU tensors and a backend
    request that the CPU kernels meet. Otherwise the penalty composes mlp_energy_grad (any backend)."""
    if x.dtype not in (torch.float32, torch.float64) or x.device.type != "cpu":
        return False
    if _dispatch.requested_backend(backend)[0] not in ("auto", "cpu"):
        return False
    return _dispatch.choose("mlp_grad_norm_penalty", x.device, x.dtype, backend, fallback_to_ref=True) == "cpu"


__all__ = ["grad_norm_penalty", "mlp_grad_norm_penalty_backward_ref", "mlp_grad_norm_penalty_ref",
           "penalty_from_grad"]

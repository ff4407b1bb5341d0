"""Fused MLP energy: E and grad_x E in one call, with an analytic double backward.

Network layout: ebmfast/ops/mlp_spec.py. Ops (schemas in csrc/mlp_schemas.cpp, CPU kernels in
csrc/cpu/mlp_energy.cpp, CUDA kernels in csrc/cuda/, Triton kernels in ebmfast/ops/_triton/; the
Python references below define them):

  ebmfast::mlp_energy_grad(x, weights, biases, act, slope, save) -> (E [B], grad_x E [B, D], saved)
      `saved` [B, 2 * sum(w_l)] (a_l then g_l = dE/dh_l per hidden layer, per particle) when
      save is True, else an empty tensor.
  ebmfast::mlp_energy_grad_backward(x, weights, biases, act, slope, saved, grad_E, grad_g)
      -> (grad_x, grad_weights[], grad_biases[])
      the vector-Jacobian product of (E, grad_x E) w.r.t. x and every parameter, second-order
      terms computed directly (no autograd graph); saved empty -> the forward is recomputed.

The backend ops are plain kernels; the one autograd registration is `MLPEnergyGradFn`, which runs
the chosen backend's forward and the chosen backend's VJP, whatever the backend.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from .. import _ext
from . import _dispatch, _mlp_checks
from .mlp_activations import act_derivs
from .mlp_spec import check_mlp_args, compute_dtype, fake_energy_grad, fake_energy_grad_backward


# --------------------------------------------------------------------------- references
def mlp_energy_grad_ref(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                        act: int, slope: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(E [B], grad_x E [B, D]) written out layer by layer with plain torch ops.

    Differentiable by autograd to any order (it is the reference of the fused double backward).

    Equivalent to::

        x = x.requires_grad_(); e = mlp(x)
        g, = torch.autograd.grad(e.sum(), x, create_graph=True)
    """
    n = len(weights)
    h, d1s = x, []
    for i in range(n - 1):
        a = h @ weights[i].t()
        if biases:
            a = a + biases[i]
        h, d1, _ = act_derivs(a, act, slope)
        d1s.append(d1)
    e = (h @ weights[-1].t()).squeeze(1)
    if biases:
        e = e + biases[-1]
    g = weights[-1].expand(x.shape[0], -1)  # dE/dh_H, the same row for every particle
    for i in range(n - 2, -1, -1):
        g = (g * d1s[i]) @ weights[i]
    if n == 1:
        g = g.clone()
    return e, g


def mlp_energy_grad_saved_ref(x, weights, biases, act, slope=0.01) -> torch.Tensor:
    """The `saved` output of the op: [B, 2 * sum(w_l)], per hidden layer a_l then g_l = dE/dh_l."""
    n = len(weights)
    h, a_s, d1s = x, [], []
    for i in range(n - 1):
        a = h @ weights[i].t()
        if biases:
            a = a + biases[i]
        h, d1, _ = act_derivs(a, act, slope)
        a_s.append(a)
        d1s.append(d1)
    g = weights[-1].expand(x.shape[0], -1)
    gs = [None] * (n - 1)
    for i in range(n - 2, -1, -1):
        gs[i] = g
        g = (g * d1s[i]) @ weights[i]
    parts = []
    for i in range(n - 1):
        parts += [a_s[i], gs[i]]
    if not parts:
        return x.new_empty(x.shape[0], 0)
    return torch.cat(parts, dim=1)


def mlp_energy_grad_backward_ref(x, weights, biases, act, slope, grad_e, grad_g, create_graph: bool = False):
    """VJP of (E, grad_x E) by autograd through mlp_energy_grad_ref: (grad_x, [grad_W], [grad_b]).

    create_graph=True keeps the result differentiable w.r.t. the inputs that require grad
    (x, the parameters and the cotangents): third derivatives for gradgradcheck.
    """
    def leaf(t):
        return t if (create_graph and t.requires_grad) else t.detach().requires_grad_(True)

    with torch.enable_grad():
        xs = leaf(x)
        ws = [leaf(w) for w in weights]
        bs = [leaf(b) for b in biases]
        e, g = mlp_energy_grad_ref(xs, ws, bs, act, slope)
        outs, cots = [], []
        if grad_e is not None:
            outs.append(e)
            cots.append(grad_e)
        if grad_g is not None:
            outs.append(g)
            cots.append(grad_g)
        grads = torch.autograd.grad(outs, [xs] + ws + bs, cots, allow_unused=True, create_graph=create_graph)
    grads = [torch.zeros_like(t) if gr is None else gr for gr, t in zip(grads, [xs] + ws + bs)]
    n = len(weights)
    return grads[0], grads[1:1 + n], grads[1 + n:]


# --------------------------------------------------------------------------- backends
if _ext.available():
    torch.library.register_fake("ebmfast::mlp_energy_grad")(fake_energy_grad)
    torch.library.register_fake("ebmfast::mlp_energy_grad_backward")(fake_energy_grad_backward)


def below_autograd():
    """Calls below the Autograd dispatch key: our autograd.Functions record the graph themselves."""
    return torch._C._AutoDispatchBelowAutograd()


def _forward_kernel(backend: str, x, weights, biases, act, slope, save):
    if backend == "triton":
        return _mlp_checks.triton_ops().energy_grad(x, weights, biases, act, slope, save)
    with below_autograd():
        return torch.ops.ebmfast.mlp_energy_grad.default(x, weights, biases, act, slope, save)


def _backward_kernel(x, weights, biases, act, slope, saved, grad_e, grad_g, requested: str):
    """The fused VJP on the backend the dispatcher picks (never raises: the forward already ran)."""
    backend = _dispatch.choose("mlp_energy_grad_backward", x.device, x.dtype, requested, fallback_to_ref=True,
                               x=x, weights=weights, act=act)
    if backend in ("cpu", "cuda"):
        return torch.ops.ebmfast.mlp_energy_grad_backward(x, weights, biases, act, slope, saved, grad_e, grad_g)
    if backend == "triton":
        out = _mlp_checks.triton_backward_or_none(x, weights, biases, act, slope, saved, grad_e, grad_g)
        if out is not None:
            return out
        warnings.warn("ebmfast: the triton mlp_energy_grad_backward kernel does not fit this GPU; using the "
                      "PyTorch reference for this network", RuntimeWarning, stacklevel=3)
    return mlp_energy_grad_backward_ref(x, weights, biases, act, slope, grad_e, grad_g)


class MLPEnergyGradFn(torch.autograd.Function):
    """(E, grad_x E) as one autograd node on a compiled backend; backward = the fused analytic VJP.

    A loss on grad_x E (a gradient penalty) back-propagates through `mlp_energy_grad_backward`;
    with create_graph=True (a third derivative) the backward is the differentiable reference.
    """

    @staticmethod
    def forward(ctx, x, backend, requested, act, slope, n_w, *params):
        weights, biases = list(params[:n_w]), list(params[n_w:])
        save = backend == "cpu"  # the CPU backward reads a_l, g_l instead of recomputing them
        e, g, saved = _forward_kernel(backend, x, weights, biases, act, slope, save)
        ctx.act, ctx.slope, ctx.n_w, ctx.requested = act, slope, n_w, requested
        ctx.save_for_backward(x, saved, *params)
        return e, g

    @staticmethod
    def backward(ctx, grad_e, grad_g):
        x, saved, *params = ctx.saved_tensors
        weights, biases = params[:ctx.n_w], params[ctx.n_w:]
        if torch.is_grad_enabled():
            gx, gw, gb = mlp_energy_grad_backward_ref(x, weights, biases, ctx.act, ctx.slope, grad_e, grad_g,
                                                      create_graph=True)
        else:
            grad_e = x.new_zeros(x.shape[0]) if grad_e is None else grad_e.contiguous()
            grad_g = torch.zeros_like(x) if grad_g is None else grad_g.contiguous()
            gx, gw, gb = _backward_kernel(x, weights, biases, ctx.act, ctx.slope, saved, grad_e, grad_g,
                                          ctx.requested)
        return (gx if ctx.needs_input_grad[0] else None, None, None, None, None, None, *gw, *gb)


# --------------------------------------------------------------------------- public function
def mlp_energy_grad(x: torch.Tensor, weights, biases, activation="silu", negative_slope: float = 0.01,
                    backend: str = "auto", *, _checked: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy and input gradient of an MLP in one call, without an autograd graph of the network.

    Args:
        x: [B, D] points.
        weights: [W_1 [w_1, D], ..., W_out [1, w_H]] (nn.Linear layout, same dtype/device as x).
        biases: [] or [b_1 [w_1], ..., b_out [1]].
        activation: name (see ebmfast.ops.mlp_activations.ACTIVATIONS) or code.
        negative_slope: slope of leaky_relu.
        backend: "auto" | "cpu" | "cuda" | "triton" | "ref".

    Returns:
        (E [B], grad_x E [B, D]). Both are differentiable w.r.t. x, weights and biases; the
        gradient of a loss on grad_x E (a gradient penalty) runs the fused analytic double backward.

    Equivalent to::

        x = x.requires_grad_(); e = mlp(x)
        g, = torch.autograd.grad(e.sum(), x, create_graph=True)
    """
    if _checked:  # from an MLPSpec: the layer shapes are the module's; the caller checked x
        act, slope = activation, negative_slope
    else:
        x, weights, biases, act, slope = check_mlp_args(x, weights, biases, activation, negative_slope)
    cdt = compute_dtype(x)
    if cdt != x.dtype:
        e, g = mlp_energy_grad(x.to(cdt), [w.to(cdt) for w in weights], [b.to(cdt) for b in biases], act, slope,
                               backend, _checked=True)
        return e.to(x.dtype), g.to(x.dtype)
    chosen = _dispatch.choose("mlp_energy_grad", x.device, x.dtype, backend, x=x, weights=weights, act=act)
    if chosen == "ref":
        return mlp_energy_grad_ref(x, weights, biases, act, slope)
    if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in weights + biases)):
        requested = _dispatch.requested_backend(backend)[0]
        return MLPEnergyGradFn.apply(x, chosen, requested, act, slope, len(weights), *weights, *biases)
    e, g, _ = _forward_kernel(chosen, x, weights, biases, act, slope, False)
    return e, g


__all__ = ["MLPEnergyGradFn", "mlp_energy_grad", "mlp_energy_grad_backward_ref", "mlp_energy_grad_ref",
           "mlp_energy_grad_saved_ref"]

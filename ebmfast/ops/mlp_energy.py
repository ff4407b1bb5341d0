"""Fused MLP energies: E and grad_x E in one call (with an analytic double backward), and
whole Langevin chains in one call.

The MLP (ebmfast.energies.MLPEnergy) is described to the ops by
    weights = [W_1 [w_1, D], ..., W_H [w_H, w_{H-1}], W_out [1, w_H]]   (nn.Linear layout)
    biases  = [] (no biases) or [b_1 [w_1], ..., b_H [w_H], b_out [1]]
    act     = activation code (ebmfast/ops/mlp_activations.py), slope = leaky_relu slope
    E(x) = W_out h_H + b_out,  h_l = sigma(a_l),  a_l = W_l h_{l-1} + b_l,  h_0 = x [B, D].

Ops (schemas in csrc/mlp_schemas.cpp, CPU kernels in csrc/cpu/mlp_energy.cpp; the Python
references below define them and are what the Triton/CUDA kernels are tested against):

  ebmfast::mlp_energy_grad(x, weights, biases, act, slope, save) -> (E [B], grad_x E [B, D], saved)
      `saved` [B, 2 * sum(w_l)] (a_l then g_l = dE/dh_l per hidden layer, per particle) when
      save is True, else an empty tensor. Differentiable (register_autograd): the backward is
  ebmfast::mlp_energy_grad_backward(x, weights, biases, act, slope, saved, grad_E, grad_g)
      -> (grad_x, grad_weights[], grad_biases[])
      the vector-Jacobian product of (E, grad_x E) w.r.t. x and every parameter, second-order
      terms computed directly (no autograd graph); saved empty -> the forward is recomputed.
  ebmfast::mlp_langevin_chain(x0, weights, biases, act, slope, n_steps, step_size, noise_scale,
      ref_coef, seed, clamp_min, clamp_max, clip_mode, clip_value, every, record_trajectory,
      record_energies, check_finite) -> (x, trajectory, energies, bad_step)
      K steps  x <- clamp(x - step_size * clip(grad E(x) + ref_coef * x) + noise_scale * xi_k)
      with xi_k = Philox(seed, offset=k): the stream of ebmfast.ops.langevin_step, so the chain
      equals the step-by-step sampler. trajectory [T, B, D] holds x_k for k % every == 0 and the
      final state (T = ceil(K / every) + 1), energies [T, B] their energies (empty tensors when
      not recorded). check_finite: stop at the first step whose energies or drift (grad E +
      ref_coef * x, before clipping) are not finite, as the sampler loop checks, and return its
      index in bad_step (int64 scalar, -1 if none); outputs are then undefined (the Python
      wrapper raises, or re-runs the chain to that step).
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch

from .. import _ext
from . import _dispatch
from .langevin_step import (_check_scalar, _check_seed, draw_seed, langevin_step_ref, parse_clamp,
                            parse_grad_clip)
from .mlp_activations import act_derivs, activation_code, check_code

_FLOAT_TYPES = (torch.float32, torch.float64)


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


def mlp_langevin_chain_ref(x0, weights, biases, act, slope, n_steps, step_size, noise_scale, ref_coef, seed,
                           clamp_min, clamp_max, clip_mode, clip_value, every, record_trajectory,
                           record_energies, check_finite):
    """Reference of ebmfast::mlp_langevin_chain (same arguments and outputs; see the module docstring).

    Equivalent to the step-by-step sampler loop (ebmfast/samplers/base.py) with this energy.
    """
    x = x0
    traj, ens = [], []
    bad = -1
    for k in range(n_steps):
        e, g = mlp_energy_grad_ref(x, weights, biases, act, slope)
        if ref_coef != 0.0:
            g = g + ref_coef * x
        # the sampler loop checks the energies and the drift (after the reference term)
        if check_finite and not bool(torch.isfinite(e.sum() + g.sum())):
            bad = k
            break
        if k % every == 0:
            if record_trajectory:
                traj.append(x)
            if record_energies:
                ens.append(e)
        x = langevin_step_ref(x, g, step_size, noise_scale, None, seed, k, clamp_min, clamp_max, clip_mode,
                              clip_value)
    t_len = -(-n_steps // every) + 1
    if bad >= 0:  # outputs are undefined then; keep shapes
        traj_t = x0.new_full((t_len,) + tuple(x0.shape), float("nan")) if record_trajectory else x0.new_empty(0)
        ens_t = x0.new_full((t_len, x0.shape[0]), float("nan")) if record_energies else x0.new_empty(0)
        return x, traj_t, ens_t, torch.tensor(bad, dtype=torch.int64)
    if record_trajectory:
        traj.append(x)
    if record_energies:
        ens.append(mlp_energy_grad_ref(x, weights, biases, act, slope)[0])
    traj_t = torch.stack(traj) if record_trajectory else x0.new_empty(0)
    ens_t = torch.stack(ens) if record_energies else x0.new_empty(0)
    return x, traj_t, ens_t, torch.tensor(-1, dtype=torch.int64)


# --------------------------------------------------------------------------- registration
def _saved_width(weights) -> int:
    return 2 * sum(int(w.shape[0]) for w in weights[:-1])


def _fake_energy_grad(x, weights, biases, act, slope, save):
    b = x.shape[0]
    saved = x.new_empty(b, _saved_width(weights)) if save else x.new_empty(0)
    return x.new_empty(b), torch.empty_like(x), saved


def _fake_energy_grad_backward(x, weights, biases, act, slope, saved, grad_e, grad_g):
    return torch.empty_like(x), [torch.empty_like(w) for w in weights], [torch.empty_like(b) for b in biases]


def _fake_chain(x0, weights, biases, act, slope, n_steps, step_size, noise_scale, ref_coef, seed, lo, hi, clip_mode,
                clip_value, every, record_trajectory, record_energies, check_finite):
    t_len = -(-n_steps // every) + 1
    traj = x0.new_empty((t_len,) + tuple(x0.shape)) if record_trajectory else x0.new_empty(0)
    ens = x0.new_empty(t_len, x0.shape[0]) if record_energies else x0.new_empty(0)
    return torch.empty_like(x0), traj, ens, x0.new_empty((), dtype=torch.int64)


def _setup_context(ctx, inputs, output):
    x, weights, biases, act, slope, _save = inputs
    _e, _g, saved = output
    ctx.act, ctx.slope, ctx.n_w, ctx.n_b = act, slope, len(weights), len(biases)
    ctx.save_for_backward(x, saved, *weights, *biases)
    ctx.mark_non_differentiable(saved)


def _backward(ctx, grad_e, grad_g, _grad_saved):
    x, saved, *params = ctx.saved_tensors
    weights, biases = params[:ctx.n_w], params[ctx.n_w:]
    if torch.is_grad_enabled():
        # create_graph=True (a third derivative was asked for): the differentiable reference
        gx, gw, gb = mlp_energy_grad_backward_ref(x, weights, biases, ctx.act, ctx.slope, grad_e, grad_g,
                                                  create_graph=True)
    else:
        grad_e = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if grad_e is None else grad_e
        grad_g = torch.zeros_like(x) if grad_g is None else grad_g
        gx, gw, gb = _backward_impl(x, weights, biases, ctx.act, ctx.slope, saved, grad_e.contiguous(),
                                    grad_g.contiguous())
    return gx, list(gw), list(gb), None, None, None


def _gpu_backward_backend(x, weights, act) -> str:
    """"cuda" | "triton" | "ref": which VJP kernel runs for GPU tensors.

    Follows the dispatcher (EBMFAST_BACKEND, else cuda -> triton -> ref), narrowed by what the
    backward kernels take: "cuda" needs `cuda_backward_not_supported_reasons` empty (the
    extension's CUDA kernel, the CUDA MLP limits, shared memory), "triton" needs triton and `not_supported_reasons` empty. An automatic
    choice falls back cuda -> triton -> ref; an explicit EBMFAST_BACKEND=cuda/triton that cannot
    be met falls back to the reference (never raises: the forward already ran on that backend,
    and the backward has no backend= argument). `cuda_backward_not_supported_reasons` mirrors the
    kernel's own shared-memory plan, so a network it passes launches. The choice is recorded in
    _dispatch.LAST_CHOICE[("mlp_energy_grad_backward", device type)].
    """
    import os

    from . import _triton_mlp_register as treg

    try:
        chosen = _dispatch.choose("mlp_energy_grad_backward", x.device, x.dtype)
    except (RuntimeError, ValueError):  # an explicit backend that cannot run here: the forward raised already
        chosen = "ref"
    explicit = bool(os.environ.get(_dispatch.ENV_VAR))
    order = {"cuda": ["cuda"] if explicit else ["cuda", "triton"], "triton": ["triton"]}.get(chosen, [])
    pick = "ref"
    for cand in order:
        if cand == "cuda":
            ok = not treg.cuda_backward_not_supported_reasons(x, weights, act)
        else:
            ok = not _dispatch.not_supported_reasons("triton", x.device, x.dtype) and \
                not treg.not_supported_reasons(x, weights, act)
        if ok:
            pick = cand
            break
    _dispatch.LAST_CHOICE[("mlp_energy_grad_backward", x.device.type)] = pick
    return pick


def _backward_impl(x, weights, biases, act, slope, saved, grad_e, grad_g):
    """The fused VJP on x's device: the C++ kernel on the CPU; on GPUs the CUDA kernel, else the
    Triton kernel (ebmfast/ops/_triton/mlp_backward.py), else the reference (_gpu_backward_backend)."""
    if x.device.type == "cpu" and _ext.available():
        return torch.ops.ebmfast.mlp_energy_grad_backward(x, list(weights), list(biases), act, slope, saved, grad_e,
                                                          grad_g)
    if x.device.type == "cuda":
        which = _gpu_backward_backend(x, weights, act)
        if which == "cuda":
            return torch.ops.ebmfast.mlp_energy_grad_backward(x, list(weights), list(biases), act, slope, saved,
                                                              grad_e, grad_g)
        if which == "triton":
            out = _triton_backward_or_none(x, weights, biases, act, slope, saved, grad_e, grad_g)
            if out is not None:
                return out
    return mlp_energy_grad_backward_ref(x, weights, biases, act, slope, grad_e, grad_g)


# (device, dtype, D, widths, act) of networks whose Triton backward kernel did not fit the GPU
_TRITON_BWD_TOO_BIG: set = set()


def _triton_backward_or_none(x, weights, biases, act, slope, saved, grad_e, grad_g):
    """The Triton VJP, or None when its kernel needs more shared memory than this GPU has.

    AOT-compiled for sm_90 the float64 kernel at width 128 needs ~152 KB of shared memory per
    block: it fits an A100 (163 KB) or H100 (227 KB) but not consumer GPUs (~99 KB), and only
    the launch can tell. Such networks are remembered and go to the reference from then on."""
    from triton.runtime.errors import OutOfResources

    from ._triton_mlp_register import triton_ops

    key = (str(x.device), x.dtype, int(x.shape[1]), tuple(int(w.shape[0]) for w in weights), int(act))
    if key in _TRITON_BWD_TOO_BIG:
        return None
    try:
        return triton_ops().energy_grad_backward(x, list(weights), list(biases), act, slope, saved, grad_e, grad_g)
    except OutOfResources as exc:
        _TRITON_BWD_TOO_BIG.add(key)
        _dispatch.LAST_CHOICE[("mlp_energy_grad_backward", x.device.type)] = "ref"
        warnings.warn(f"ebmfast: the triton mlp_energy_grad_backward kernel does not fit this GPU ({exc}); "
                      "using the PyTorch reference for this network", RuntimeWarning, stacklevel=3)
        return None


_REGISTERED = False


def _register() -> bool:
    """Fake kernels + autograd for the C++ ops (once, when _C holds them)."""
    global _REGISTERED
    if _REGISTERED:
        return True
    if not _ext.available() or not hasattr(torch.ops.ebmfast, "mlp_energy_grad"):
        return False
    torch.library.register_fake("ebmfast::mlp_energy_grad")(_fake_energy_grad)
    torch.library.register_fake("ebmfast::mlp_energy_grad_backward")(_fake_energy_grad_backward)
    torch.library.register_fake("ebmfast::mlp_langevin_chain")(_fake_chain)
    torch.library.register_autograd("ebmfast::mlp_energy_grad", _backward, setup_context=_setup_context)
    if hasattr(torch.ops.ebmfast, "mlp_grad_norm_penalty"):  # CPU penalty ops (an older build may lack them)
        from .grad_norm_penalty import _fake_penalty, _fake_penalty_backward

        torch.library.register_fake("ebmfast::mlp_grad_norm_penalty")(_fake_penalty)
        torch.library.register_fake("ebmfast::mlp_grad_norm_penalty_backward")(_fake_penalty_backward)
    _REGISTERED = True
    return True


def _has_cpu_ops() -> bool:
    try:
        return _register()
    except Exception:  # an extension built before these ops existed
        return False


_has_cpu_ops()


def _below_autograd():
    """Calls below the Autograd dispatch key: skips the Python autograd wrapper of the op (~6 us)
    inside our own autograd.Functions, which record the graph themselves."""
    guard = getattr(torch._C, "_AutoDispatchBelowAutograd", None)
    return guard() if guard is not None else torch.no_grad()


class _EnergyGradFn(torch.autograd.Function):
    """(E, grad_x E) as one autograd node; backward = the fused analytic VJP (mlp_energy_grad_backward).

    Leaner than the op's register_autograd path (no pytree wrapping), which matters for small
    networks where a penalty step is a few hundred microseconds.
    """

    @staticmethod
    def forward(ctx, x, act, slope, n_w, *params):
        weights, biases = list(params[:n_w]), list(params[n_w:])
        save = x.device.type == "cpu"  # the CPU backward reads a_l, g_l instead of recomputing them
        with _below_autograd():
            e, g, saved = torch.ops.ebmfast.mlp_energy_grad.default(x, weights, biases, act, slope, save)
        ctx.act, ctx.slope, ctx.n_w = act, slope, n_w
        ctx.save_for_backward(x, saved, *params)
        return e, g

    @staticmethod
    def backward(ctx, grad_e, grad_g):
        x, saved, *params = ctx.saved_tensors
        weights, biases = params[:ctx.n_w], params[ctx.n_w:]
        if torch.is_grad_enabled():  # create_graph=True: the differentiable reference
            gx, gw, gb = mlp_energy_grad_backward_ref(x, weights, biases, ctx.act, ctx.slope, grad_e, grad_g,
                                                      create_graph=True)
        else:
            grad_e = x.new_zeros(x.shape[0]) if grad_e is None else grad_e.contiguous()
            grad_g = torch.zeros_like(x) if grad_g is None else grad_g.contiguous()
            gx, gw, gb = _backward_impl(x, weights, biases, ctx.act, ctx.slope, saved, grad_e, grad_g)
        return (gx if ctx.needs_input_grad[0] else None, None, None, None, *gw, *gb)


# --------------------------------------------------------------------------- argument checks
def check_mlp_args(x: torch.Tensor, weights, biases, name: str = "x"):
    """Validates x [B, D] against the layer list; returns contiguous (x, weights, biases) lists."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [B, D], got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [B, D], got {tuple(x.shape)}")
    if not isinstance(weights, (list, tuple)) or len(weights) < 1:
        raise ValueError("weights must be a non-empty list of 2-D tensors [out, in] (the last one [1, w])")
    weights, biases = list(weights), list(biases or [])
    if biases and len(biases) != len(weights):
        raise ValueError(f"biases must be empty or one per weight ({len(weights)}), got {len(biases)}")
    fan_in = x.shape[1]
    for i, w in enumerate(weights):
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise ValueError(f"weights[{i}] must be a 2-D tensor [out, in], got "
                             f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}")
        if w.shape[1] != fan_in:
            what = f"the input dim of {name} ({fan_in})" if i == 0 else f"weights[{i - 1}].shape[0] ({fan_in})"
            raise ValueError(f"weights[{i}] has shape {tuple(w.shape)}: its in-features must equal {what}")
        if w.dtype != x.dtype:
            raise TypeError(f"weights[{i}] has dtype {w.dtype} but {name} has dtype {x.dtype}")
        if w.device != x.device:
            raise ValueError(f"weights[{i}] is on {w.device} but {name} is on {x.device}")
        fan_in = w.shape[0]
    if weights[-1].shape[0] != 1:
        raise ValueError(f"the last weight must have shape [1, w] (a scalar energy), got {tuple(weights[-1].shape)}")
    for i, (b, w) in enumerate(zip(biases, weights)):
        if not isinstance(b, torch.Tensor) or b.shape != (w.shape[0],):
            raise ValueError(f"biases[{i}] must have shape ({w.shape[0]},), got "
                             f"{tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__}")
        if b.dtype != x.dtype or b.device != x.device:
            raise TypeError(f"biases[{i}] must have dtype {x.dtype} on {x.device}, got {b.dtype} on {b.device}")
    return x.contiguous(), [w.contiguous() for w in weights], [b.contiguous() for b in biases]


def _act_arg(activation) -> int:
    return check_code(activation) if isinstance(activation, int) and not isinstance(activation, bool) \
        else activation_code(activation)


def _compute_dtype(x: torch.Tensor):
    """Kernels run in float32/float64; half and bfloat16 are computed in float32."""
    if x.dtype in _FLOAT_TYPES:
        return x.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")


# --------------------------------------------------------------------------- public functions
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
    if _checked:  # MLPEnergy: the module guarantees the layer shapes; x was checked by the caller
        act, slope = activation, negative_slope
    else:
        act = _act_arg(activation)
        slope = _check_scalar("negative_slope", negative_slope)
        x, weights, biases = check_mlp_args(x, weights, biases)
    cdt = _compute_dtype(x)
    if cdt != x.dtype:
        e, g = mlp_energy_grad(x.to(cdt), [w.to(cdt) for w in weights], [b.to(cdt) for b in biases], act, slope,
                               backend)
        return e.to(x.dtype), g.to(x.dtype)
    chosen = _dispatch.choose("mlp_energy_grad", x.device, x.dtype, backend)
    if chosen == "cpu" and not _has_cpu_ops():
        if backend not in ("auto", None):
            raise RuntimeError("ebmfast.mlp_energy_grad: backend='cpu' but the loaded extension has no MLP ops "
                               "(rebuild: python setup.py build_ext --inplace)")
        chosen = "ref"
    if chosen in ("cuda", "triton"):  # narrowed by what the GPU kernels take (depth, widths)
        from ._triton_mlp_register import resolve_gpu_backend

        chosen = resolve_gpu_backend("mlp_energy_grad", chosen, x, weights, act, backend)
    if chosen == "ref":
        return mlp_energy_grad_ref(x, weights, biases, act, slope)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in weights + biases))
    if chosen == "triton":
        from ._triton_mlp_register import triton_ops

        # save=False: the GPU backward recomputes (it is the reference until a fused GPU VJP exists)
        e, g, _ = triton_ops().energy_grad(x, weights, biases, act, slope, False)
        return e, g
    if needs_grad:  # one autograd node; its backward is the fused analytic VJP
        return _EnergyGradFn.apply(x, act, slope, len(weights), *weights, *biases)
    with _below_autograd():
        e, g, _ = torch.ops.ebmfast.mlp_energy_grad.default(x, weights, biases, act, slope, False)
    return e, g


def mlp_langevin_chain(x0: torch.Tensor, weights, biases, activation="silu", negative_slope: float = 0.01, *,
                       n_steps: int, step_size: float, noise_scale: float = 0.0, sigma: Optional[float] = None,
                       clamp=None, grad_clip=None, seed: Optional[int] = None, every: int = 1,
                       return_trajectory: bool = False, return_energies: bool = False, on_nonfinite: str = "raise",
                       backend: str = "auto"):
    """`n_steps` Langevin / gradient-descent steps on an MLP energy in one fused call.

    Args:
        x0: [B, D] start (not modified). weights / biases / activation / negative_slope: the MLP
            (see mlp_energy_grad).
        n_steps: K >= 0. step_size > 0. noise_scale >= 0 (0: noise-free descent).
        sigma: None, or the Gaussian reference scale of ReferenceLangevin (drift grad E + x / sigma^2).
        clamp: None or (lo, hi). grad_clip: None, c / ("value", c), ("norm", c) (applied to the drift).
        seed: Philox seed (None: drawn from torch's generator); step k uses offset k, as
            ebmfast.sample does, so both give the same trajectory.
        every / return_trajectory / return_energies: record x_k (and E(x_k)) for k % every == 0
            plus the final state.
        on_nonfinite: "raise" (NonFiniteError naming the step), "stop" (warn, return the state
            before the first non-finite step), "ignore".
        backend: "auto" | "cpu" | "cuda" | "triton" | "ref".

    Returns:
        The final state [B, D], or a SampleResult(x, trajectory [T, B, D], energies [T, B], stopped_at).

    Equivalent to::

        ebmfast.sample(mlp, x0, n_steps, step_size, noise_scale, clamp, grad_clip, seed=seed)
    """
    from ..samplers._checks import NonFiniteError, check_every, check_n_steps, check_on_nonfinite
    from ..samplers.base import SampleResult

    act = _act_arg(activation)
    slope = _check_scalar("negative_slope", negative_slope)
    x0, weights, biases = check_mlp_args(x0, weights, biases, name="x0")
    n_steps, every = check_n_steps(n_steps), check_every(every)
    check_on_nonfinite(on_nonfinite)
    step_size = _check_scalar("step_size", step_size, positive=True)
    noise_scale = _check_scalar("noise_scale", noise_scale, nonneg=True)
    ref_coef = 0.0 if sigma is None else 1.0 / _check_scalar("sigma", sigma, positive=True) ** 2
    lo, hi = parse_clamp(clamp)
    clip_mode, clip_value = parse_grad_clip(grad_clip)
    seed = draw_seed() if seed is None else _check_seed("seed", seed)
    cdt = _compute_dtype(x0)
    if cdt != x0.dtype:
        res = mlp_langevin_chain(x0.to(cdt), [w.to(cdt) for w in weights], [b.to(cdt) for b in biases], act, slope,
                                 n_steps=n_steps, step_size=step_size, noise_scale=noise_scale, sigma=sigma,
                                 clamp=clamp, grad_clip=grad_clip, seed=seed, every=every,
                                 return_trajectory=return_trajectory, return_energies=return_energies,
                                 on_nonfinite=on_nonfinite, backend=backend)
        if isinstance(res, torch.Tensor):
            return res.to(x0.dtype)
        return SampleResult(x=res.x.to(x0.dtype),
                            trajectory=None if res.trajectory is None else res.trajectory.to(x0.dtype),
                            energies=None if res.energies is None else res.energies.to(x0.dtype),
                            stopped_at=res.stopped_at)
    weights = [w.detach() for w in weights]
    biases = [b.detach() for b in biases]
    x0 = x0.detach()
    chosen = _dispatch.choose("mlp_langevin_chain", x0.device, x0.dtype, backend)
    if chosen == "cpu" and not _has_cpu_ops():
        if backend not in ("auto", None):
            raise RuntimeError("ebmfast.mlp_langevin_chain: backend='cpu' but the loaded extension has no MLP ops")
        chosen = "ref"
    if chosen in ("cuda", "triton"):  # narrowed by what the GPU kernels take (depth, widths)
        from ._triton_mlp_register import resolve_gpu_backend

        chosen = resolve_gpu_backend("mlp_langevin_chain", chosen, x0, weights, act, backend)

    def run(k_steps):
        args = (x0, weights, biases, act, slope, k_steps, step_size, noise_scale, ref_coef, seed, lo, hi, clip_mode,
                clip_value, every, return_trajectory, return_energies, on_nonfinite != "ignore")
        with torch.no_grad():
            if chosen in ("cpu", "cuda"):
                return torch.ops.ebmfast.mlp_langevin_chain(*args)
            if chosen == "triton":
                from ._triton_mlp_register import triton_ops

                return triton_ops().chain(*args)
            return mlp_langevin_chain_ref(*args)

    x, traj, ens, bad = run(n_steps)
    stopped_at = None
    bad = int(bad)
    if bad >= 0:
        msg = (f"mlp_langevin_chain: non-finite energy or gradient at step {bad} of {n_steps} "
               "(lower step_size, add grad_clip/clamp, or check the energy)")
        if on_nonfinite == "raise":
            raise NonFiniteError(msg, bad)
        warnings.warn(msg + "; returning the last finite state", RuntimeWarning, stacklevel=2)
        # the chain is deterministic given the seed: re-running it for `bad` steps gives the
        # state (and records) just before the first non-finite step
        x, traj, ens, _ = run(bad)
        stopped_at = bad
    if not (return_trajectory or return_energies):
        return x
    return SampleResult(x=x, trajectory=traj if return_trajectory else None,
                        energies=ens if return_energies else None, stopped_at=stopped_at)


def mlp_chain_flops(dims: Sequence[int], batch: int, n_steps: int) -> float:
    """FLOPs of a chain (forward + input gradient per step, multiply-add = 2), for benchmarks."""
    macs = sum(dims[i] * dims[i + 1] for i in range(len(dims) - 1))
    return 2.0 * 2 * macs * batch * n_steps


__all__ = ["mlp_energy_grad", "mlp_energy_grad_ref", "mlp_energy_grad_backward_ref", "mlp_energy_grad_saved_ref",
           "mlp_langevin_chain", "mlp_langevin_chain_ref", "check_mlp_args", "mlp_chain_flops"]

"""Density of the noise-free gradient flow of an energy (paper 003, eq. 4-6).

The noise-free sampling dynamics of an EBM is the ODE

    x'(t) = -grad_x E(x(t)),   x(0) = x0 ~ p0 = N(0, sigma0^2 I),   t in [0, T]   (003 eq. 4)

and, since the map x0 -> x(T) is invertible, it is a continuous normalising
flow whose log-density follows the instantaneous change of variables
(d/dt log p(x(t)) = -div(-grad E) = tr Hess E):

    log p_T(x_T) = log p0(x0) + int_0^T tr[Hess E(x(t))] dt                      (003 eq. 6)

``flow_log_likelihood`` solves the ODE *backwards* from x(T) = x to find x0
and accumulates the trace integral on the way (torchdiffeq). The trace is
exact (one backward pass per dimension) in low dimension and Hutchinson's
estimator ``eps^T Hess E eps`` otherwise, with the probe ``eps`` held fixed
along each trajectory (FFJORD), which keeps the estimate unbiased and the ODE
smooth enough for adaptive solvers.

``gradient_flow`` is the forward map G_theta^T (003 eq. 5), optionally
differentiable in the energy's parameters (``create_graph=True``), which is
what the self-adversarial generator loss needs.

Sign convention: ``energy(x)`` maps [B, *S] -> [B] (or [B, 1]); low energy =
likely. All log-densities are natural logs (nats) in the coordinates of ``x``.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from ..core import energy_values

__all__ = [
    "FIXED_STEP_METHODS",
    "energy_values",
    "energy_grad",
    "grad_and_hessian_trace",
    "gaussian_log_prob",
    "gradient_flow",
    "flow_log_likelihood",
]

EnergyFn = Callable[[Tensor], Tensor]

FIXED_STEP_METHODS = {"euler", "midpoint", "rk4", "explicit_adams", "implicit_adams", "fixed_adams", "heun2", "heun3"}


# ----------------------------------------------------------------- helpers
def energy_grad(energy: EnergyFn, x: Tensor, create_graph: bool = False) -> Tensor:
    """grad_x E(x), same shape as ``x``.

    With ``create_graph=False`` the result is detached (evaluation); with
    ``True`` it stays differentiable w.r.t. ``x``'s history and the energy's
    parameters (double backward).
    """
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        e = energy_values(energy, x)
        (g,) = torch.autograd.grad(e.sum(), x, create_graph=create_graph)
    return g


def _probes(x: Tensor, n_probes: int, kind: str, generator: Optional[torch.Generator]) -> Tensor:
    """[n_probes, B, *S] Hutchinson probes with E[eps eps^T] = I."""
    shape = (n_probes, *x.shape)
    if kind == "rademacher":
        r = torch.randint(0, 2, shape, generator=generator, device="cpu").to(x.device, x.dtype)
        return 2.0 * r - 1.0
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, device="cpu").to(x.device, x.dtype)
    raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {kind!r}")


def grad_and_hessian_trace(energy: EnergyFn, x: Tensor, trace: str = "exact", probes: Optional[Tensor] = None,
                           create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """grad_x E(x) [B, *S] and tr Hess_x E(x) [B] (exact or Hutchinson).

    Args:
        energy: [B, *S] -> [B].
        x: [B, *S] points.
        trace: "exact" (D extra backward passes, D = prod(S)) or "hutchinson".
        probes: [P, B, *S] fixed probes for "hutchinson" (mean over P of
            eps^T H eps; unbiased for tr H when E[eps eps^T] = I).
        create_graph: keep the graph of both outputs (for training by ML).
    Returns:
        (grad [B, *S], trace [B]).

    Equivalent to (exact, 2-D)::

        H = torch.autograd.functional.hessian(lambda z: energy(z[None])[0], x[b])
        trace = H.diagonal().sum()
    """
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        e = energy_values(energy, xg)
        (g,) = torch.autograd.grad(e.sum(), xg, create_graph=True)
        B = x.shape[0]
        if trace == "exact":
            gf = g.reshape(B, -1)
            D = gf.shape[1]
            tr = torch.zeros(B, dtype=x.dtype, device=x.device)
            for i in range(D):
                # d g_i / d x, summed over the batch (samples are independent), keep column i
                (h_i,) = torch.autograd.grad(gf[:, i].sum(), xg, create_graph=create_graph,
                                             retain_graph=True)
                tr = tr + h_i.reshape(B, -1)[:, i]
        elif trace == "hutchinson":
            if probes is None:
                raise ValueError("trace='hutchinson' needs probes [P, B, ...]")
            P = probes.shape[0]
            tr = torch.zeros(B, dtype=x.dtype, device=x.device)
            for p in range(P):
                eps = probes[p]
                (hv,) = torch.autograd.grad((g * eps).sum(), xg, create_graph=create_graph, retain_graph=True)
                tr = tr + (hv * eps).reshape(B, -1).sum(1)
            tr = tr / P
        else:
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
    if not create_graph:
        g, tr = g.detach(), tr.detach()
    return g, tr


def gaussian_log_prob(x: Tensor, std: float = 1.0) -> Tensor:
    """log N(x; 0, std^2 I) summed over all non-batch dims -> [B]."""
    d = x[0].numel()
    return -0.5 * (x.reshape(x.shape[0], -1) ** 2).sum(1) / std ** 2 - d * (math.log(std) + 0.5 * math.log(2 * math.pi))


def _odeint(f, y0, ts, method: str, rtol: float, atol: float, options: dict):
    """torchdiffeq.odeint with a readable error when an adaptive solver runs out of steps."""
    from torchdiffeq import odeint

    try:
        return odeint(f, y0, ts, method=method, rtol=rtol, atol=atol, options=options or None)
    except AssertionError as e:
        if "max_num_steps" in str(e):
            raise RuntimeError(f"{method} exceeded max_num_steps={options.get('max_num_steps')} (the flow is "
                               "stiff at this tolerance); use a fixed-step method (n_steps) or a looser "
                               "rtol/atol") from e
        raise


def _check_solver(T: float, method: str, n_steps: Optional[int], max_num_steps: Optional[int] = None) -> dict:
    if isinstance(T, bool) or not isinstance(T, (int, float)) or not T > 0 or not math.isfinite(T):
        raise ValueError(f"T (flow time) must be a finite number > 0, got {T!r}")
    from torchdiffeq._impl.odeint import SOLVERS
    if method not in SOLVERS:
        raise ValueError(f"method must be a torchdiffeq solver, one of {sorted(SOLVERS)}; got {method!r}")
    if method in FIXED_STEP_METHODS:
        if n_steps is None or isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"fixed-step method {method!r} needs n_steps (int >= 1), got {n_steps!r}")
        return {"step_size": float(T) / n_steps}
    if max_num_steps is not None:
        if isinstance(max_num_steps, bool) or not isinstance(max_num_steps, int) or max_num_steps < 1:
            raise ValueError(f"max_num_steps must be an int >= 1 or None, got {max_num_steps!r}")
        return {"max_num_steps": max_num_steps}
    return {}


# ------------------------------------------------------------- forward map
def gradient_flow(energy: EnergyFn, x0: Tensor, T: float, method: str = "dopri5", rtol: float = 1e-5,
                  atol: float = 1e-5, n_steps: Optional[int] = None, create_graph: bool = False,
                  max_num_steps: Optional[int] = None) -> Tensor:
    """x(T) of the noise-free flow x' = -grad E(x) from x(0) = x0 (003 eq. 5).

    Args:
        energy: [B, *S] -> [B].
        x0: [B, *S] initial points (latent variables of the generator).
        T: flow time (003 toys: 0.2).
        method: torchdiffeq solver ("dopri5" as in 003; "euler"/"rk4" need n_steps).
        rtol, atol: tolerances of adaptive solvers (003: 1e-5).
        n_steps: number of steps of a fixed-step solver (step = T / n_steps).
            ``method="euler"`` is exactly the discrete chain of 003 eq. 7 with
            eta / 2 = T / n_steps.
        create_graph: back-propagate through the solver into the energy's
            parameters (generator loss, 003 eq. 11-12). Memory grows with the
            number of function evaluations.
        max_num_steps: cap on the steps of an adaptive solver (None = no cap);
            exceeding it raises RuntimeError instead of running for hours on a
            stiff energy.
    Returns:
        x(T) [B, *S]; detached unless ``create_graph``.
    """
    options = _check_solver(T, method, n_steps, max_num_steps)

    def f(t, x):
        return -energy_grad(energy, x, create_graph=create_graph)

    ts = torch.tensor([0.0, float(T)], dtype=x0.dtype, device=x0.device)
    with torch.set_grad_enabled(create_graph or torch.is_grad_enabled()):
        xs = _odeint(f, x0 if create_graph else x0.detach(), ts, method, rtol, atol, options)
    return xs[-1] if create_graph else xs[-1].detach()


# ----------------------------------------------------------------- density
def flow_log_likelihood(energy: EnergyFn, x: Tensor, T: float, *, prior_std: float = 1.0,
                        log_prob0: Optional[Callable[[Tensor], Tensor]] = None, method: str = "dopri5",
                        rtol: float = 1e-5, atol: float = 1e-5, n_steps: Optional[int] = None,
                        trace: str = "auto", exact_max_dim: int = 16, n_probes: int = 1,
                        probe: str = "rademacher", seed: Optional[int] = None, batch_size: Optional[int] = None,
                        max_num_steps: Optional[int] = None, return_x0: bool = False):
    """log-density of the noise-free flow G^T at ``x`` (003 eq. 6), in nats.

    Solves, backwards in time from t = T to t = 0, the augmented ODE

        x' = -grad E(x),       a' = tr Hess E(x),       x(T) = x, a(T) = 0

    so that x(0) = x0 = G^{-1}(x) and a(0) = -int_0^T tr Hess E dt, and returns
    ``log p0(x0) - a(0)``.

    Args:
        energy: [B, *S] -> [B].
        x: [B, *S] points to score (e.g. held-out data).
        T: flow time used to generate (the same T as sampling, 003 §2).
        prior_std: std of the Gaussian base p0 = N(0, prior_std^2 I) (ignored
            when ``log_prob0`` is given).
        log_prob0: optional callable [B, *S] -> [B] for another base density.
        method, rtol, atol, n_steps: torchdiffeq solver settings (see
            :func:`gradient_flow`). Use the same discretisation as sampling if
            you want the density of the discretised generator's ODE limit.
        trace: "exact", "hutchinson" or "auto" (exact when D <= exact_max_dim).
        n_probes, probe: Hutchinson probes per point ("rademacher"/"gaussian"),
            drawn once and held fixed along the trajectory.
        seed: seed of the probe generator (Hutchinson only).
        batch_size: score ``x`` in chunks of this size (memory), None = all.
        max_num_steps: cap on an adaptive solver's steps (RuntimeError when hit).
        return_x0: also return the recovered latents x0 [B, *S].
    Returns:
        log p(x) [B] (detached), or (log p [B], x0 [B, *S]) with ``return_x0``.

    Equivalent to (2-D, one point, crude Euler)::

        logdet = 0
        for k in range(K):  # backwards from x_T, h = T / K
            logdet += h * trace(hessian(E)(x)); x = x + h * grad(E)(x)
        log p = log N(x; 0, I) + logdet
    """
    if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 2:
        raise TypeError(f"x must be a floating Tensor [B, ...], got "
                        f"{type(x).__name__ if not torch.is_tensor(x) else (x.dtype, tuple(x.shape))}")
    options = _check_solver(T, method, n_steps, max_num_steps)
    D = x[0].numel()
    if trace == "auto":
        trace = "exact" if D <= exact_max_dim else "hutchinson"
    if trace not in ("exact", "hutchinson"):
        raise ValueError(f"trace must be 'auto', 'exact' or 'hutchinson', got {trace!r}")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be an int >= 1, got {n_probes!r}")
    if not prior_std > 0:
        raise ValueError(f"prior_std must be > 0, got {prior_std!r}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def score_chunk(xc: Tensor):
        probes = _probes(xc, n_probes, probe, gen) if trace == "hutchinson" else None

        def f(t, state):
            xs, _ = state
            g, tr = grad_and_hessian_trace(energy, xs, trace=trace, probes=probes, create_graph=False)
            return (-g, tr)

        ts = torch.tensor([float(T), 0.0], dtype=xc.dtype, device=xc.device)
        a_T = torch.zeros(xc.shape[0], dtype=xc.dtype, device=xc.device)
        with torch.no_grad():
            xs, a_s = _odeint(f, (xc.detach(), a_T), ts, method, rtol, atol, options)
        x0, a0 = xs[-1], a_s[-1]
        lp0 = log_prob0(x0) if log_prob0 is not None else gaussian_log_prob(x0, prior_std)
        return (lp0 - a0).detach(), x0.detach()

    if batch_size is None or batch_size >= x.shape[0]:
        lp, x0 = score_chunk(x)
    else:
        parts = [score_chunk(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        lp, x0 = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return (lp, x0) if return_x0 else lp

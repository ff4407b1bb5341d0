"""K Langevin steps of an MLP energy in one call: reference, backends, public function.

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

The chain is not differentiable (no graph survives it); differentiable chains run the sampler loop.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch

from .. import _ext
from ..core import (NonFiniteError, SampleResult, check_every, check_n_steps, check_on_nonfinite, check_scalar,
                    check_seed)
from . import _dispatch, _mlp_checks
from .langevin_step import draw_seed, langevin_step_ref, parse_clamp, parse_grad_clip
from .mlp_energy import mlp_energy_grad_ref
from .mlp_spec import check_mlp_args, compute_dtype, fake_chain


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


if _ext.available():
    torch.library.register_fake("ebmfast::mlp_langevin_chain")(fake_chain)


def _run_chain(backend: str, *args):
    with torch.no_grad():
        if backend in ("cpu", "cuda"):
            return torch.ops.ebmfast.mlp_langevin_chain(*args)
        if backend == "triton":
            return _mlp_checks.triton_ops().chain(*args)
        return mlp_langevin_chain_ref(*args)


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
    x0, weights, biases, act, slope = check_mlp_args(x0, weights, biases, activation, negative_slope, name="x0")
    n_steps, every = check_n_steps(n_steps), check_every(every)
    check_on_nonfinite(on_nonfinite)
    step_size = check_scalar("step_size", step_size, positive=True)
    noise_scale = check_scalar("noise_scale", noise_scale, nonneg=True)
    ref_coef = 0.0 if sigma is None else 1.0 / check_scalar("sigma", sigma, positive=True) ** 2
    lo, hi = parse_clamp(clamp)
    clip_mode, clip_value = parse_grad_clip(grad_clip)
    seed = draw_seed() if seed is None else check_seed("seed", seed)
    cdt = compute_dtype(x0)
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
    chosen = _dispatch.choose("mlp_langevin_chain", x0.device, x0.dtype, backend, x=x0, weights=weights, act=act)

    def run(k_steps):
        return _run_chain(chosen, x0, weights, biases, act, slope, k_steps, step_size, noise_scale, ref_coef, seed,
                          lo, hi, clip_mode, clip_value, every, return_trajectory, return_energies,
                          on_nonfinite != "ignore")

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


__all__ = ["mlp_langevin_chain", "mlp_langevin_chain_ref"]

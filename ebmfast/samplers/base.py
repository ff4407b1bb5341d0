"""Sampler base class, the chain loop they all share, and the name registry.

A sampler defines the *effective gradient* of one step (`drift`): plain
grad_x E for Langevin and gradient descent, grad_x E + x / sigma^2 with a
Gaussian reference, grad_x E + 1/4 grad_x |grad_x E|^2 for the second-order
drift. The loop computes it with autograd and hands it to the fused
`ebmfast.ops.langevin_step` op (update + noise + clip + clamp in one pass).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, ClassVar, Optional

import torch

from ..core import (NonFiniteError, SampleResult, check_every, check_n_steps, check_on_nonfinite, check_scalar,
                    check_x0, energy_values)
from ..ops.langevin_step import Stepper, draw_seed, parse_clamp, parse_grad_clip
from ..ops.mlp_langevin_chain import mlp_langevin_chain
from ..ops.mlp_spec import fused_mlp_of

SAMPLERS: dict[str, type["Sampler"]] = {}


def register_sampler(cls):
    SAMPLERS[cls.name] = cls
    return cls


def get_sampler(name: str, **kwargs) -> "Sampler":
    """Build a sampler by registry name, e.g. get_sampler("langevin", step_size=0.01)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {sorted(SAMPLERS)}")
    return SAMPLERS[name](**kwargs)


def check_energy_matches(energy, x0: torch.Tensor) -> None:
    """An nn.Module energy's parameters must live on x0's device with x0's dtype."""
    if not callable(energy):
        raise TypeError(f"energy must be callable ([B, ...] -> [B]), got {type(energy).__name__}")
    if isinstance(energy, torch.nn.Module):
        for name, p in energy.named_parameters():
            if p.device != x0.device:
                raise ValueError(
                    f"energy parameter {name!r} is on {p.device} but x0 is on {x0.device}; move one of them"
                )
            if p.is_floating_point() and p.dtype != x0.dtype:
                raise TypeError(
                    f"energy parameter {name!r} has dtype {p.dtype} but x0 has dtype {x0.dtype}; "
                    f"use energy.to({x0.dtype}) or x0.to({p.dtype})"
                )
            break


def energy_grad(e: torch.Tensor, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """grad_x sum(e); zeros when e does not depend on x (a constant energy is allowed)."""
    if not e.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(e.sum(), x, create_graph=create_graph, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _is_finite(e: torch.Tensor, g: torch.Tensor) -> bool:
    # one reduction and one host sync per step; NaN/Inf in either survive the sum
    return bool(torch.isfinite(e.detach().sum() + g.detach().sum()))


class Sampler:
    """Base of every sampler. Subclasses set `name` and may override `drift`."""

    name: ClassVar[str] = "base"

    def __init__(
        self,
        step_size: float,
        noise_scale: Optional[float] = None,
        clamp=None,
        grad_clip=None,
        backend: str = "auto",
        on_nonfinite: str = "raise",
    ):
        self.step_size = check_scalar("step_size", step_size, positive=True)
        if noise_scale is None:
            noise_scale = self.default_noise_scale(self.step_size)
        self.noise_scale = check_scalar("noise_scale", noise_scale, nonneg=True)
        parse_clamp(clamp)
        parse_grad_clip(grad_clip)
        check_on_nonfinite(on_nonfinite)
        self.clamp, self.grad_clip, self.backend, self.on_nonfinite = clamp, grad_clip, backend, on_nonfinite

    @staticmethod
    def default_noise_scale(step_size: float) -> float:
        return 0.0

    def drift(self, energy, x: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(E(x) [B], effective gradient [B, ...]) at x (x requires grad)."""
        e = energy_values(energy, x)
        return e, energy_grad(e, x, create_graph)

    def __repr__(self):
        return (
            f"{type(self).__name__}(step_size={self.step_size}, noise_scale={self.noise_scale}, "
            f"clamp={self.clamp}, grad_clip={self.grad_clip})"
        )

    def run(
        self,
        energy: Callable[[torch.Tensor], torch.Tensor],
        x0: torch.Tensor,
        n_steps: int,
        seed: Optional[int] = None,
        create_graph: bool = False,
        return_trajectory: bool = False,
        every: int = 1,
        return_energies: bool = False,
        callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
    ):
        """Run `n_steps` steps from x0 [B, ...].

        Returns the final state (shaped like x0), or a SampleResult when a trajectory or
        energies are requested. `callback(step, x, energies)` runs after each step.
        create_graph=True keeps the autograd graph through every step so a loss on the
        result back-propagates into the energy's parameters (memory grows with n_steps);
        otherwise each step's graph is freed before the next.
        """
        check_x0(x0)
        check_energy_matches(energy, x0)
        n_steps = check_n_steps(n_steps)
        every = check_every(every)
        seed = draw_seed() if seed is None else seed
        fused = self._try_fused(energy, x0, n_steps, seed, create_graph, return_trajectory, every,
                                return_energies, callback)
        if fused is not None:
            return fused

        step = Stepper(x0, self.step_size, self.noise_scale, self.clamp, self.grad_clip, seed, self.backend)
        want_result = return_trajectory or return_energies
        traj, energies = [], []
        x = x0.detach().clone() if not create_graph else x0
        stopped_at = None
        for k in range(n_steps):
            with torch.enable_grad():
                xr = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
                e, g = self.drift(energy, xr, create_graph)
            if self.on_nonfinite != "ignore" and not _is_finite(e, g):
                msg = (f"{type(self).__name__}: non-finite energy or gradient at step {k} of {n_steps} "
                       "(lower step_size, add grad_clip/clamp, or check the energy)")
                if self.on_nonfinite == "raise":
                    raise NonFiniteError(msg, k)
                warnings.warn(msg + "; returning the last finite state", RuntimeWarning, stacklevel=2)
                stopped_at = k
                break
            if want_result and k % every == 0:
                if return_trajectory:
                    traj.append(x.detach().clone())
                if return_energies:
                    energies.append(e.detach())
            if create_graph:
                x = step(xr, g, k, inplace=False)  # differentiable through the op's autograd
            else:
                x = step(x, g.detach(), k, inplace=True)  # x is our own copy
            if callback is not None:
                callback(k, x, e.detach())
        if not want_result:
            return x
        # the final state always closes the record
        if return_trajectory:
            traj.append(x.detach().clone())
        if return_energies:
            with torch.no_grad():
                energies.append(energy_values(energy, x.detach()))
        return SampleResult(
            x=x,
            trajectory=torch.stack(traj) if return_trajectory else None,
            energies=torch.stack(energies) if return_energies else None,
            stopped_at=stopped_at,
        )

    def fused_drift_sigma(self) -> tuple[bool, Optional[float]]:
        """(can the fused MLP chain run this sampler's drift, its Gaussian reference scale or None).

        The base drift grad E is fusable; a subclass with a drift of its own is not, unless it says
        so by overriding this (ReferenceLangevin: grad E + x / sigma^2)."""
        return type(self).drift is Sampler.drift, None

    def _try_fused(self, energy, x0, n_steps, seed, create_graph, return_trajectory, every, return_energies,
                   callback):
        """The whole chain in one kernel when the energy opts in (`fused_mlp()`, e.g. MLPEnergy), the
        drift is one the kernel implements, and no graph or callback needs the step-by-step loop;
        else None."""
        if create_graph or callback is not None:
            return None
        fusable, sigma = self.fused_drift_sigma()
        spec = fused_mlp_of(energy) if fusable else None
        if spec is None or math.prod(x0.shape[1:]) != spec.in_dim:
            return None
        res = mlp_langevin_chain(
            x0.detach().reshape(x0.shape[0], spec.in_dim), list(spec.weights), list(spec.biases), spec.act,
            spec.slope, n_steps=n_steps, step_size=self.step_size, noise_scale=self.noise_scale, sigma=sigma,
            clamp=self.clamp, grad_clip=self.grad_clip, seed=seed, every=every, return_trajectory=return_trajectory,
            return_energies=return_energies, on_nonfinite=self.on_nonfinite, backend=self.backend)
        if isinstance(res, torch.Tensor):
            return res.reshape(x0.shape)
        traj = None if res.trajectory is None else res.trajectory.reshape((-1,) + tuple(x0.shape))
        return SampleResult(x=res.x.reshape(x0.shape), trajectory=traj, energies=res.energies,
                            stopped_at=res.stopped_at)

"""What the particle-based EBM trainers share (MLE, OT-EBM): the config fields declared once,
the energy module, the negatives (persistent particles / replay buffer / fresh noise) and the
helpers used by every EBM trainer (w-GCN included).

Negatives start from
    - ``init="persistent"``: ``n_particles`` chains that persist across iterations (000's setting),
    - ``init="buffer"``: a replay buffer (``ebmfast.samplers.ReplayBuffer``; IGEBM/JEM practice),
    - ``init="noise"``: fresh draws from the initial distribution (short-run EBM).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from .config import FCEnergyConfig, param

__all__ = ["ParticleEBMConfig", "EnergyArgMixin", "ParticleMixin", "build_energy", "init_particles", "run_chain",
           "energy_stats", "clamp_arg"]


def build_energy(event_shape: Sequence[int], hidden: int, n_layers: int, activation: str,
                 energy: nn.Module | None = None) -> nn.Module:
    """The energy module: the user's ``energy`` if given, else the toy FC energy.

    The default is ``ebmfast.energies.toy.ToyEnergy`` (an ``MLPEnergy`` with
    ``n_layers`` Linear layers of width ``hidden``, LeakyReLU slope 0.2), which
    maps [B, D] -> [B] and has fused sampling / penalty kernels. Needs a flat event shape.
    """
    if energy is not None:
        if not isinstance(energy, nn.Module):
            raise TypeError(f"energy must be an nn.Module, got {type(energy).__name__}")
        return energy
    if len(event_shape) != 1:
        raise ValueError(f"the default FC energy needs a flat event shape, got {tuple(event_shape)}; "
                         "pass energy=<your conv module>")
    from ebmfast.energies.toy import ToyEnergy
    return ToyEnergy(int(event_shape[0]), hidden=hidden, n_layers=n_layers, activation=activation)


def init_particles(n: int, event_shape: Sequence[int], kind: str, scale: float, device, dtype) -> Tensor:
    """Initial particles [n, *event_shape] from ``kind``: "normal" (N(0, scale^2 I)),
    "uniform" (U[-scale, scale]) or "zeros" (w-GCN, 001 Alg. 1 line 1). Uses the global torch RNG."""
    shape = (n, *event_shape)
    if kind == "normal":
        return torch.randn(shape, device=device, dtype=dtype) * scale
    if kind == "uniform":
        return (torch.rand(shape, device=device, dtype=dtype) * 2 - 1) * scale
    if kind == "zeros":
        return torch.zeros(shape, device=device, dtype=dtype)
    raise ValueError(f"init_dist must be 'normal', 'uniform' or 'zeros', got {kind!r}")


def run_chain(energy: Callable[[Tensor], Tensor], x0: Tensor, n_steps: int, step_size: float,
              noise_scale: float = 0.0, clamp=None, grad_clip=None, backend: str = "auto") -> Tensor:
    """``n_steps`` of ``x <- clamp(x - step_size * clip(grad E(x)) + noise_scale * xi)`` via ``ebmfast.sample``.

    Returns the detached end point [B, ...]. Parameters of ``energy`` get no
    ``.grad`` from this (the sampler differentiates w.r.t. x only).
    """
    if n_steps == 0:
        return x0.detach()
    from ebmfast.samplers import sample
    return sample(energy, x0.detach(), n_steps, step_size, noise_scale=noise_scale, clamp=clamp,
                  grad_clip=grad_clip, backend=backend).detach()


def energy_stats(e_data: Tensor, e_neg: Tensor) -> dict[str, float]:
    """Common metrics: mean energies and MAEE R = |mean E(x) - mean E(data)| (000 eq. 3)."""
    ed, en = float(e_data.mean()), float(e_neg.mean())
    return {"e_data": ed, "e_sample": en, "maee": abs(en - ed)}


def clamp_arg(lo: Optional[float], hi: Optional[float]):
    """The sampler's ``clamp`` argument of two optional bounds: None, or (lo, hi) with open ends infinite."""
    return None if lo is None and hi is None else (lo if lo is not None else -math.inf,
                                                    hi if hi is not None else math.inf)


@dataclass
class ParticleEBMConfig(FCEnergyConfig):
    """Fields of every particle-based EBM trainer (defaults: the 000 toy setting)."""

    lr: float = param(1e-3, gt=0.0, doc="Adam learning rate for theta")
    beta1: float = param(0.9, ge=0.0, lt=1.0, doc="Adam beta1")
    beta2: float = param(0.999, ge=0.0, lt=1.0, doc="Adam beta2")
    weight_decay: float = param(0.0, ge=0.0)
    alpha: float = param(0.0, ge=0.0, doc="energy L2 regulariser weight (IGEBM)")
    n_steps: int = param(1, ge=1, doc="sampler steps per iteration")
    grad_clip: float = param(None, gt=0.0, optional=True, kind=float, doc="elementwise clip of grad E in the sampler")
    clamp_lo: float = param(None, optional=True, kind=float)
    clamp_hi: float = param(None, optional=True, kind=float)
    init: str = param("persistent", choices=("persistent", "buffer", "noise"))
    init_dist: str = param("normal", choices=("normal", "uniform"))
    init_scale: float = param(1.0, gt=0.0, doc="std (normal) or half-width (uniform) of the initial distribution")
    n_particles: int = param(200, ge=1, doc="persistent chains / negatives per iteration")
    buffer_size: int = param(10000, ge=1)
    reinit_prob: float = param(0.05, ge=0.0, le=1.0, doc="buffer: share of chains restarted from init")
    sample_steps: int = param(0, ge=0, doc="sample(n): 0 = return persistent particles; >0 = fresh chains")

    def validate(self):
        super().validate()
        if self.clamp_lo is not None and self.clamp_hi is not None and not self.clamp_lo < self.clamp_hi:
            raise ValueError(f"{type(self).__name__}: clamp_lo must be < clamp_hi, got {self.clamp_lo} >= {self.clamp_hi}")
        return self


class EnergyArgMixin:
    """The ``energy=`` keyword shared by the EBM trainers: a user nn.Module [B, ...] -> [B]
    that replaces the default FC energy built from the config (hidden, n_layers, activation)."""

    def __init__(self, config=None, dim=2, device="cpu", dtype=torch.float32, seed=0, backend="auto", *,
                 energy: nn.Module | None = None):
        self._energy_arg = energy
        super().__init__(config, dim, device=device, dtype=dtype, seed=seed, backend=backend)

    def _make_energy(self) -> nn.Module:
        c = self.config
        return build_energy(self.event_shape, c.hidden, c.n_layers, c.activation,
                            self._energy_arg).to(self.device, self.dtype)


class ParticleMixin:
    """Particle bookkeeping of MLE and OT-EBM (persistent / buffer / noise negatives).

    The trainer defines ``chain(x, n_steps)``, its sampler.
    """

    pool_key = "n_particles"
    has_chain = True

    @classmethod
    def sample_pool_key(cls, config) -> Optional[str]:
        # fresh chains (sample_steps > 0) can return any n
        return None if config.sample_steps else "n_particles"

    def init_points(self, n: int) -> Tensor:
        """[n, *event_shape] draws of the initial distribution (init_dist, init_scale)."""
        c = self.config
        return init_particles(n, self.event_shape, c.init_dist, c.init_scale, self.device, self.dtype)

    def build(self) -> None:
        """The energy, Adam on all its parameters, the particles."""
        c = self.config
        self.energy = self._make_energy()
        self.opt = torch.optim.Adam(self.energy.parameters(), lr=c.lr, betas=(c.beta1, c.beta2),
                                    weight_decay=c.weight_decay)
        self.x = None
        self.buffer = None
        if c.init == "persistent":
            self.x = self.init_points(c.n_particles)
        elif c.init == "buffer":
            from ebmfast.samplers import ReplayBuffer
            self.buffer = ReplayBuffer(c.buffer_size, c.reinit_prob, init=self.init_points)

    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy}

    def optimizers(self):
        return {"energy": self.opt}

    def start_points(self) -> Tensor:
        """Where this iteration's negatives start (draws from the buffer are remembered for ``store``)."""
        c = self.config
        if c.init == "persistent":
            return self.x
        if c.init == "buffer":
            x0, self._buf_idx = self.buffer.sample(c.n_particles)
            return x0
        return self.init_points(c.n_particles)

    def store(self, x_new: Tensor) -> None:
        """Keep this iteration's negatives (persistent particles / buffer slots / last batch)."""
        c = self.config
        if c.init == "persistent":
            self.x = x_new.detach()
        elif c.init == "buffer":
            self.buffer.update(self._buf_idx, x_new.detach())
        self._last = x_new.detach()

    def sample(self, n: int) -> Tensor:
        """[n, *event_shape]: the persistent particles (``sample_steps == 0``) or fresh chains."""
        c = self.config
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if c.sample_steps == 0:
            pool = self.x if c.init == "persistent" else getattr(self, "_last", None)
            if pool is None:
                raise ValueError(f"{type(self).__name__}.sample: no particles yet (init={c.init!r}); "
                                 "train first or set sample_steps > 0")
            if n > pool.shape[0]:
                raise ValueError(f"n={n} > {pool.shape[0]} available particles; set sample_steps > 0 "
                                 "to draw more from fresh chains")
            return pool[:n].detach().clone()
        return self.chain(self.init_points(n), c.sample_steps)

    def extra_state(self) -> dict[str, Any]:
        st = {}
        if self.x is not None:
            st["particles"] = self.x
        if getattr(self, "_last", None) is not None:
            st["last"] = self._last
        if self.buffer is not None:
            st["buffer"] = self.buffer.state_dict()
        return st

    def load_extra_state(self, state) -> None:
        if "buffer" in state and self.buffer is None:
            raise ValueError("checkpoint holds a replay buffer but this trainer has init != 'buffer'")
        if "particles" in state:
            self.x = state["particles"].to(self.device, self.dtype)
        if "last" in state:
            self._last = state["last"].to(self.device, self.dtype)
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])

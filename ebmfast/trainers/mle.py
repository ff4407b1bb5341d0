"""Maximum-likelihood EBM with (SG)Langevin negatives: the baseline of every comparison.

Papers 000 eq. 4, 5, 12 and 003 eq. 1, 3. Each iteration:

1. negatives: ``n_steps`` Langevin steps ``x <- x - step_size * grad E(x) + noise_scale * xi``
   (``ebmfast.sample``) started from
   - ``init="persistent"``: ``n_particles`` chains that persist across iterations (000's setting),
   - ``init="buffer"``: a replay buffer (``ebmfast.samplers.ReplayBuffer``; IGEBM/JEM practice),
   - ``init="noise"``: fresh draws from the initial distribution (short-run EBM);
2. theta (Adam) minimises ``mean E(data) - mean E(x_neg) + alpha * mean(E(data)^2 + E(x_neg)^2)``.

    tr = MLETrainer({"step_size": 1.0, "noise_scale": 0.01}, dim=2, seed=0)
    tr.fit(data, n_iters=2000, batch_size=200)
    x = tr.sample(200)                                   # [200, 2]

The particle bookkeeping and the shared config fields live in :mod:`ebmfast.trainers.particles`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import Trainer
from .config import param
from .particles import (EnergyArgMixin, ParticleEBMConfig, ParticleMixin, build_energy, clamp_arg, energy_stats,
                        init_particles, run_chain)

__all__ = ["MLEConfig", "MLETrainer", "build_energy", "run_chain", "init_particles", "energy_stats"]


@dataclass
class MLEConfig(ParticleEBMConfig):
    """Hyper-parameters of :class:`MLETrainer` (defaults: the 000 toy setting)."""

    step_size: float = param(1.0, gt=0.0, doc="Langevin step size (000 toy: particle lr 1.0)")
    noise_scale: float = param(0.01, ge=0.0, doc="Langevin noise std per step")


class MLETrainer(EnergyArgMixin, ParticleMixin, Trainer):
    """Maximum-likelihood EBM with Langevin negatives (see the module docstring).

    Extra keyword: ``energy`` (an nn.Module [B, ...] -> [B]) replaces the default FC energy.
    Metrics per iteration: loss, e_data, e_sample, maee.
    """

    name = "mle"
    Config = MLEConfig
    step_size_keys = ("lr", "step_size")

    def chain(self, x0: Tensor, n_steps: int) -> Tensor:
        """``n_steps`` Langevin steps from ``x0`` (detached)."""
        c = self.config
        return run_chain(self.energy, x0, n_steps, c.step_size, c.noise_scale,
                         clamp=clamp_arg(c.clamp_lo, c.clamp_hi), grad_clip=c.grad_clip, backend=self.backend)

    def train_step(self, batch: Tensor, it: int) -> dict[str, float]:
        c = self.config
        x_neg = self.chain(self.start_points(), c.n_steps)
        self.store(x_neg)
        e_data = self.energy(batch)
        e_neg = self.energy(x_neg)
        loss = e_data.mean() - e_neg.mean()
        if c.alpha > 0:
            loss = loss + c.alpha * (e_data.pow(2).mean() + e_neg.pow(2).mean())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), **energy_stats(e_data.detach(), e_neg.detach())}

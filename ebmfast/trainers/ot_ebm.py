"""OT-EBM: near-optimal Wasserstein gradient flow (000 §5.4, eq. 30-32, Alg. 1).

Particles x (``n_particles``, 200 on toys) start once from N(0, I) and persist.
Each iteration t:

1. particles: ``n_steps`` (K) noise-free SGD steps ``x <- x - particle_lr * grad_x E(x)``
   (``ebmfast.sample`` with ``noise_scale=0``); ``x_t`` is kept (before) and ``x_{t+1}`` (after).
   ``second_order=True`` adds the convexity correction of eq. 30,
   ``- particle_lr/4 * grad |grad E|^2`` (``ebmfast.samplers.SecondOrderLangevin``, noise 0).
2. theta (Adam) minimises::

       mean E(data) - mean E(x_{t+1})
         + tau/8 * mean (|grad E(x_t)|     - L)^2
         + tau/4 * mean (|grad E(x_{t+1})| - L)^2     (+ alpha * mean(E(data)^2 + E(x_{t+1})^2))

   (the penalties are minimised: eq. 32 prints "+" as gradient ascent, which
   would grow them and contradict the text).

    tr = OTEBMTrainer({"tau": 20.0, "lipschitz": 1.0}, dim=2, seed=0)
    tr.fit(data, n_iters=2000, batch_size=200)
    x = tr.sample(200)                                   # the particles

Metrics: loss, e_data, e_sample, maee, pen_prev, pen_cur (the unweighted penalties).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..ops import grad_norm_penalty
from .base import Trainer
from .config import param
from .particles import EnergyArgMixin, ParticleEBMConfig, ParticleMixin, clamp_arg, energy_stats, run_chain

__all__ = ["OTEBMConfig", "OTEBMTrainer"]


@dataclass
class OTEBMConfig(ParticleEBMConfig):
    """Hyper-parameters of :class:`OTEBMTrainer` (defaults: 000 §6.1 toy setting); ``n_steps`` is K,
    the noise-free SGD particle steps per iteration."""

    tau: float = param(20.0, ge=0.0, doc="gradient-norm penalty weight")
    lipschitz: float = param(1.0, gt=0.0, doc="target gradient norm L")
    particle_lr: float = param(1.0, gt=0.0, doc="particle SGD step (toy 1.0, images 0.112)")
    second_order: bool = param(False, doc="add the -1/4 grad|grad E|^2 drift of eq. 30")


class OTEBMTrainer(EnergyArgMixin, ParticleMixin, Trainer):
    """OT-EBM (see the module docstring). Extra keyword: ``energy`` (nn.Module [B, ...] -> [B])."""

    name = "ot-ebm"
    Config = OTEBMConfig
    step_size_keys = ("lr", "particle_lr")

    def chain(self, x0: Tensor, n_steps: int) -> Tensor:
        """``n_steps`` noise-free particle steps from ``x0`` (detached)."""
        c = self.config
        clamp = clamp_arg(c.clamp_lo, c.clamp_hi)
        if c.second_order:
            from ebmfast.samplers import SecondOrderLangevin
            s = SecondOrderLangevin(step_size=c.particle_lr, noise_scale=0.0, clamp=clamp, grad_clip=c.grad_clip,
                                    backend=self.backend)
            out = s.run(self.energy, x0.detach(), n_steps)
            return (out.x if hasattr(out, "x") else out).detach()
        return run_chain(self.energy, x0, n_steps, c.particle_lr, 0.0, clamp=clamp, grad_clip=c.grad_clip,
                         backend=self.backend)

    def train_step(self, batch: Tensor, it: int) -> dict[str, float]:
        c = self.config
        x_t = self.start_points().detach()
        x_next = self.chain(x_t, c.n_steps)
        self.store(x_next)
        e_data = self.energy(batch)
        e_next = self.energy(x_next)
        loss = e_data.mean() - e_next.mean()
        metrics = {}
        if c.tau > 0:
            pen_prev = grad_norm_penalty(self.energy, x_t.detach(), lipschitz=c.lipschitz)
            pen_cur = grad_norm_penalty(self.energy, x_next.detach(), lipschitz=c.lipschitz)
            loss = loss + c.tau / 8 * pen_prev + c.tau / 4 * pen_cur
            metrics.update(pen_prev=float(pen_prev.detach()), pen_cur=float(pen_cur.detach()))
        if c.alpha > 0:
            loss = loss + c.alpha * (e_data.pow(2).mean() + e_next.pow(2).mean())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), **energy_stats(e_data.detach(), e_next.detach()), **metrics}

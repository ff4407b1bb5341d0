"""w-pGCN / w-GCN: Wasserstein generative ConvNet (001 §4.1, eq. 13-18, Alg. 1).

Model ``p(x) ∝ exp(f_theta(x)) q(x)`` with Gaussian reference q = N(0, sigma^2 I).
The trainer's module ``net`` is an energy ``E_net = -f`` ([B, ...] -> [B], ebmfast
sign convention), so the full energy is ``E(x) = E_net(x) + |x|^2 / (2 sigma^2)``.

Each iteration t (Alg. 1):

1. chains (start at 0 once, Alg. 1 line 1, and persist): ``n_steps`` (L) steps of
   ``x <- x + delta^2/2 * (grad f(x) - x / sigma^2) + delta * noise_std * xi``
   i.e. ``ebmfast.samplers.ReferenceLangevin(sigma)`` with ``step_size = delta^2/2``.
   ``noise="langevin"`` uses ``xi ~ N(0, I)`` (Xie et al.'s GCN code; the chain then
   targets p); ``noise="printed"`` uses ``xi ~ N(0, sigma^2 I)`` as Alg. 1 line 9 prints.
2. gamma ~ U[0, 1]; theta minimises (eq. 18 as a loss)::

       mean E_net(y_obs) - mean E_net(x_t)
         + beta/2 * ((1 - gamma) * mean |grad f(x_{t-1})|^2 + gamma * mean |grad f(x_t)|^2)

   with x_{t-1} the previous iteration's samples (kept in the state).
   ``penalty=False`` drops the second line: the KL (plain pGCN / GCN) baseline.

Variants: ``variant="gcn"`` trains every parameter; ``variant="pgcn"`` trains only
the top weights (the last parametrised leaf module of ``net``, e.g. the final
Linear/Conv), the filters below stay fixed (001 uses pretrained VGG filters;
pass your own ``energy`` module with the filters you want).

    tr = WGCNTrainer({"variant": "gcn", "sigma": 1.0, "delta": 0.2}, dim=2, seed=0)
    tr.fit(data, n_iters=500, batch_size=100)
    conv = WGCNTrainer(cfg, dim=(3, 32, 32), energy=my_conv_energy)   # any [B, C, H, W] -> [B] module

Metrics: loss, e_data, e_sample, maee, pen_prev, pen_cur (mean |grad f|^2), gamma.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..ops import grad_norm_penalty
from .base import Trainer
from .config import FCEnergyConfig, param
from .particles import EnergyArgMixin, energy_stats

__all__ = ["WGCNConfig", "WGCNTrainer", "top_module"]


def top_module(net: nn.Module) -> nn.Module:
    """The last leaf module (in registration order) that owns parameters: pGCN's "top weights"."""
    last = None
    for m in net.modules():
        if next(m.children(), None) is None and any(True for _ in m.parameters(recurse=False)):
            last = m
    if last is None:
        raise ValueError("energy module has no parameters")
    return last


@dataclass
class WGCNConfig(FCEnergyConfig):
    """Hyper-parameters of :class:`WGCNTrainer`.

    001's image defaults: L = 50, delta = 0.2 (CelebA) / 0.15, sigma = 0.01 on its
    pixel scale, batch 100, lambda = 1e-3, beta = 60. Toy defaults here: sigma = 1
    (the data scale), delta = 0.2.
    """

    variant: str = param("gcn", choices=("gcn", "pgcn"), doc="gcn: all weights learn; pgcn: top weights only")
    penalty: bool = param(True, doc="False = KL baseline (plain pGCN/GCN)")
    beta: float = param(60.0, ge=0.0, doc="penalty weight (time piece)")
    lr: float = param(1e-3, gt=0.0, doc="learning rate lambda")
    optimizer: str = param("adam", choices=("adam", "sgd"))
    beta1: float = param(0.5, ge=0.0, lt=1.0, doc="Adam beta1 (GCN code uses 0.5)")
    beta2: float = param(0.999, ge=0.0, lt=1.0)
    n_steps: int = param(50, ge=1, doc="Langevin steps L per iteration")
    delta: float = param(0.2, gt=0.0, doc="Langevin step: step_size = delta^2/2")
    sigma: float = param(1.0, gt=0.0, doc="std of the Gaussian reference q")
    noise: str = param("langevin", choices=("langevin", "printed"))
    n_chains: int = param(100, ge=1, doc="persistent chains M")
    grad_clip: float = param(None, gt=0.0, optional=True, kind=float)


class WGCNTrainer(EnergyArgMixin, Trainer):
    """w-pGCN / w-GCN (see the module docstring). Extra keyword: ``energy`` = the ``-f`` module."""

    name = "w-gcn"
    Config = WGCNConfig
    pool_key = "n_chains"
    step_size_keys = ("lr", "delta")  # the chain's step is delta^2 / 2
    has_chain = True

    # ----------------------------------------------------------------- build
    def build(self) -> None:
        c = self.config
        self.net = self._make_energy()
        if c.variant == "pgcn":
            top = top_module(self.net)
            top_ids = {id(p) for p in top.parameters()}
            for p in self.net.parameters():
                p.requires_grad_(id(p) in top_ids)
        params = [p for p in self.net.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=c.lr, betas=(c.beta1, c.beta2))
        else:
            self.opt = torch.optim.SGD(params, lr=c.lr)
        self.x = torch.zeros((c.n_chains, *self.event_shape), device=self.device, dtype=self.dtype)

    def full_energy(self, x: Tensor) -> Tensor:
        """E(x) = E_net(x) + |x|^2 / (2 sigma^2)  [B, ...] -> [B] (p ∝ exp(-E))."""
        return self.net(x) + x.flatten(1).pow(2).sum(1) / (2 * self.config.sigma ** 2)

    def sampler(self):
        """The chain's sampler: ``ReferenceLangevin.from_delta(delta, sigma)`` (on E_net)."""
        from ebmfast.samplers import ReferenceLangevin
        c = self.config
        return ReferenceLangevin.from_delta(c.delta, c.sigma, paper_noise=c.noise == "printed",
                                            grad_clip=c.grad_clip, backend=self.backend)

    def energy_fn(self):
        """The full energy ``E_net + |x|^2 / (2 sigma^2)`` (:meth:`full_energy`)."""
        return self.full_energy

    def init_points(self, n: int) -> Tensor:
        """Chains start at 0 (001 Alg. 1 line 1)."""
        return torch.zeros((n, *self.event_shape), device=self.device, dtype=self.dtype)

    def chain(self, x0: Tensor, n_steps: int) -> Tensor:
        """``n_steps`` of the reference Langevin chain from ``x0`` (detached)."""
        out = self.sampler().run(self.net, x0.detach(), n_steps)
        return (out.x if hasattr(out, "x") else out).detach()

    def figure_chain_steps(self) -> int:
        return int(self.config.n_steps)

    # ----------------------------------------------------------------- steps
    def train_step(self, batch: Tensor, it: int) -> dict[str, float]:
        c = self.config
        x_prev = self.x
        x_cur = self.chain(x_prev, c.n_steps)
        self.x = x_cur
        e_data = self.net(batch)
        e_cur = self.net(x_cur)
        loss = e_data.mean() - e_cur.mean()
        metrics = {}
        if c.penalty and c.beta > 0:
            gamma = float(torch.rand(()))
            pen_prev = grad_norm_penalty(self.net, x_prev.detach(), lipschitz=None)
            pen_cur = grad_norm_penalty(self.net, x_cur.detach(), lipschitz=None)
            loss = loss + c.beta / 2 * ((1 - gamma) * pen_prev + gamma * pen_cur)
            metrics.update(pen_prev=float(pen_prev.detach()), pen_cur=float(pen_cur.detach()), gamma=gamma)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), **energy_stats(e_data.detach(), e_cur.detach()), **metrics}

    def sample(self, n: int) -> Tensor:
        """[n, *event_shape]: the persistent chains (n <= n_chains)."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if n > self.x.shape[0]:
            raise ValueError(f"n={n} > n_chains={self.x.shape[0]}; raise n_chains")
        return self.x[:n].detach().clone()

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self):
        return {"net": self.opt}

    def extra_state(self):
        return {"chains": self.x}

    def load_extra_state(self, state) -> None:
        self.x = state["chains"].to(self.device, self.dtype)

"""Alternating W-GAN updates of 003's self-adversarial game (an example-only variant, not in the library).

003 §3 derives eq. 12 from a W-GAN whose critic (the energy) and generator (the
energy's noise-free gradient flow) share theta: "after the discriminator is
updated by (9), the generator G is then updated by (10)". For speed the paper
uses one batch of samples and *sums* the two losses into one objective, which
it calls "equivalent" because there is one theta. With plain SGD the sum is
the two updates to first order; with Adam (which 003 uses) it is not: the two
gradients share one per-parameter normaliser, and on the 2-D toys the
generator gradient is 4-20x the critic gradient during noise-free training
(README, "Implementation check"), so the summed update mostly follows the
generator term and drowns the critic signal.

``AlternatingSelfAdversarialTrainer`` instead runs the two W-GAN updates one
after the other, each with its own Adam state (a W-GAN's D and G optimisers),
on the same theta:

    1. critic step  (opt_critic): minimise mean E_theta(x_data) - mean E_theta(sg(G_theta(x0)))
    2. generator step (opt_gen):  minimise mean E_{sg(theta)}(G_theta(x0'))      (003 eq. 11)

with fresh x0' and the chain rebuilt at the updated theta (the two batches of
samples 003 avoided; cheap in 2-D). Same network, chain and learning rate as
the other variants; per iteration it costs one no-graph chain more than eq. 12.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ebmfast.core import as_batch_energy
from ebmfast.trainers.self_adversarial import SelfAdversarialTrainer, frozen, ml_loss


class AlternatingSelfAdversarialTrainer(SelfAdversarialTrainer):
    """Config as :class:`SelfAdversarialTrainer` with ``variant="self-adv"``; ``gen_weight`` is ignored."""

    def build(self) -> None:
        super().build()
        c = self.config
        # self.opt (built by the parent) is the critic's optimiser; the generator gets its own Adam state
        self.opt_gen = torch.optim.Adam(self.energy.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt, "opt_gen": self.opt_gen}

    def _step(self, opt: torch.optim.Optimizer, loss: Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.energy.parameters(), self.config.grad_clip)
        opt.step()

    def train_step(self, batch: Tensor, it: int) -> dict[str, float]:
        if self.config.variant != "self-adv":
            raise ValueError(f"AlternatingSelfAdversarialTrainer needs variant='self-adv', got "
                             f"{self.config.variant!r}")
        b = batch.shape[0]
        # 1. critic (W-GAN eq. 9 with D = -E): samples without graph
        x_neg = self.generate(self.prior(b), create_graph=False)
        loss_c, m = ml_loss(self.energy, batch, x_neg, self.config.alpha)
        self._step(self.opt, loss_c)
        # 2. generator (eq. 11) at the updated theta: differentiate through the chain only
        x_gen = self.generate(self.prior(b), create_graph=True)
        gen = as_batch_energy(frozen(self.energy)(x_gen), x_gen.shape[0]).mean()
        self._step(self.opt_gen, gen)
        return {"loss": float(loss_c.detach()), **m, "gen": float(gen.detach()), "cd": m["e_data"] - m["e_sample"],
                "sample_std": float(x_neg.reshape(b, -1).std(0).mean())}

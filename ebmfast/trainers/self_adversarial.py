"""Noise-free EBM dynamics as a generator, with the self-adversarial loss (paper 003).

Method (003 eq. 3, 7, 12):

- Generator G_theta: K steps from x0 ~ N(0, prior_std^2 I), no persistence,

      x <- x - (eta / 2) grad_x E_theta(x) [+ noise_scale * xi]      (003 eq. 3 / eq. 7)

  or the ODE x' = -grad E on [0, T] solved by torchdiffeq (003 eq. 5; toys:
  dopri5, T = 0.2, tol 1e-5).
- Loss, minimised over theta, by ``variant``:

  * ``"noisy"``      ML with short-run Langevin (noise_scale defaults to
                     sqrt(eta), 003 eq. 3):  mean E(x_data) - mean E(sg(x_K))
  * ``"noise-free"`` the same with noise_scale = 0 (003 eq. 7).
  * ``"self-adv"``   003 eq. 12:
                     mean E_theta(x_data) - mean E_theta(sg(G_theta(x0)))
                     + mean E_{sg(theta)}(G_theta(x0))
                     The third term back-propagates through all K steps (the
                     chain is built with create_graph=True) into theta, while
                     the energy evaluated at the end uses frozen (detached)
                     parameters (``torch.func.functional_call``).

- The generator's density (003 eq. 6) is :meth:`SelfAdversarialTrainer.log_likelihood`
  (reverse ODE, exact trace in low dimension; :mod:`ebmfast.flows.likelihood`).
  For ``sampler="euler"`` the flow time of the ODE is T = K * eta / 2, i.e.
  the likelihood is that of the chain's continuous-time limit (the same
  generator up to Euler's discretisation error; the reproduction scripts
  report the MMD between the two sample sets).

Toy defaults follow 003 App. A.1: 5 fully connected layers (4 hidden of 256),
swish, Adam 1e-3. Memory of ``"self-adv"`` grows linearly with K (every
step's graph is kept for the double backward).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..core import as_batch_energy
from ..flows.likelihood import FIXED_STEP_METHODS, flow_log_likelihood, gradient_flow
from .base import Trainer
from .config import TrainerConfig, param

__all__ = [
    "MLPEnergy", "sampling_chain", "frozen", "self_adversarial_loss", "ml_loss",
    "SelfAdversarialConfig", "SelfAdversarialTrainer",
]

VARIANTS = ("noisy", "noise-free", "self-adv")


# ==================================================================== model
class MLPEnergy(nn.Module):
    """E(x) = MLP(flatten(x)): [B, *S] -> [B].

    ``n_layers`` linear layers (``n_layers - 1`` hidden layers of ``hidden``
    units, each followed by ``activation``); 003 toys: n_layers = 5, hidden
    256, swish (SiLU).
    """

    def __init__(self, dim: int, hidden: int = 256, n_layers: int = 5, activation: str = "silu"):
        super().__init__()
        acts = {"silu": nn.SiLU, "softplus": nn.Softplus, "elu": nn.ELU, "tanh": nn.Tanh}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        layers: list[nn.Module] = []
        d = dim
        for _ in range(n_layers - 1):
            layers += [nn.Linear(d, hidden), acts[activation]()]
            d = hidden
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1)).squeeze(-1)


# ================================================================== sampler
def sampling_chain(energy: Callable[[Tensor], Tensor], x0: Tensor, n_steps: int, eta: float,
                   noise_scale: float = 0.0, create_graph: bool = False, seed: Optional[int] = None,
                   clamp: Optional[tuple] = None, backend: str = "auto") -> Tensor:
    """K steps of ``x <- x - (eta/2) grad E(x) + noise_scale * xi`` (003 eq. 3; eq. 7 when noise_scale = 0).

    Args:
        energy: [B, *S] -> [B].
        x0: [B, *S] starting points (003: N(0, I), no persistence).
        n_steps: K.
        eta: the paper's step size (the drift step is eta / 2).
        noise_scale: std of the Gaussian noise added per step (0 = noise-free).
        create_graph: keep every step's graph so that the output is a
            differentiable function of the energy's parameters (generator loss).
        seed: noise seed (None: torch's global generator).
        clamp: optional (lo, hi) box applied after every step (image practice;
            not part of 003's toy setting).
        backend: passed to ``ebmfast.sample``.
    Returns:
        x_K [B, *S] (detached unless ``create_graph``).

    Equivalent to::

        x = x0
        for _ in range(K):
            x = x - eta / 2 * grad_x E(x) + noise_scale * randn_like(x)   # graph kept if create_graph

    i.e. ``ebmfast.sample(energy, x0, K, step_size=eta/2, noise_scale=noise_scale,
    clamp=clamp, create_graph=create_graph)``, which is what runs.
    """
    import ebmfast

    x = ebmfast.sample(energy, x0, n_steps, step_size=0.5 * eta, noise_scale=noise_scale, clamp=clamp,
                       seed=seed, create_graph=create_graph, backend=backend)
    return x if create_graph else x.detach()


def frozen(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """``E_{sg(theta)}``: the module evaluated with detached parameters and buffers.

    Gradients still flow through the *input*, never into the parameters.
    """
    params = {k: v.detach() for k, v in module.named_parameters()}
    params.update({k: v for k, v in module.named_buffers()})

    def f(x: Tensor) -> Tensor:
        return torch.func.functional_call(module, params, (x,))

    return f


# ==================================================================== losses
def ml_loss(energy: Callable[[Tensor], Tensor], x_data: Tensor, x_sample: Tensor, alpha: float = 0.0):
    """Contrastive ML loss: mean E(x_data) - mean E(sg(x_sample)) [+ alpha * mean(E_d^2 + E_s^2)].

    Returns (loss, metrics dict of floats).
    """
    e_d = as_batch_energy(energy(x_data), x_data.shape[0])
    x_sample = x_sample.detach()
    e_s = as_batch_energy(energy(x_sample), x_sample.shape[0])
    loss = e_d.mean() - e_s.mean()
    if alpha > 0:
        loss = loss + alpha * (e_d.pow(2).mean() + e_s.pow(2).mean())
    return loss, {"e_data": float(e_d.detach().mean()), "e_sample": float(e_s.detach().mean())}


def self_adversarial_loss(energy: nn.Module, x_data: Tensor, x_gen: Tensor, alpha: float = 0.0,
                          gen_weight: float = 1.0):
    """003 eq. 12: E_theta(x_data) - E_theta(sg(G_theta(x0))) + gen_weight * E_{sg(theta)}(G_theta(x0)).

    Args:
        energy: the energy module E_theta ([B, *S] -> [B]).
        x_data: [B, *S] data batch.
        x_gen: [B, *S] generator output G_theta(x0), built with
            ``create_graph=True`` so it depends on theta.
        alpha: optional IGEBM energy-magnitude regulariser (0 in 003).
        gen_weight: weight of the generator term (1 in 003 eq. 12).
    Returns:
        (loss, metrics) where metrics has e_data, e_sample, gen (the third term).

    The third term's parameter gradient is d/dtheta E(G_theta(x0)) taken only
    through G (chain rule via the sampling steps), with the final energy's
    parameters frozen: see :func:`frozen`.
    """
    loss, metrics = ml_loss(energy, x_data, x_gen, alpha)
    gen = as_batch_energy(frozen(energy)(x_gen), x_gen.shape[0])
    loss = loss + gen_weight * gen.mean()
    metrics["gen"] = float(gen.detach().mean())
    return loss, metrics


# ==================================================================== config
@dataclass
class SelfAdversarialConfig(TrainerConfig):
    """Hyper-parameters of :class:`SelfAdversarialTrainer` (defaults: 003 toys)."""

    variant: str = param("self-adv", choices=VARIANTS,
                         doc="noisy = ML + Langevin; noise-free = ML + gradient descent; self-adv = eq. 12")
    hidden: int = param(256, ge=1, doc="hidden units of the energy MLP")
    n_layers: int = param(5, ge=2, doc="linear layers of the energy MLP")
    activation: str = param("silu", choices=("silu", "softplus", "elu", "tanh"), doc="swish = silu")
    lr: float = param(1e-3, gt=0.0, doc="Adam learning rate")
    beta1: float = param(0.9, ge=0.0, lt=1.0, doc="Adam beta1")
    beta2: float = param(0.999, ge=0.0, lt=1.0, doc="Adam beta2")
    sampler: str = param("euler", choices=("euler", "ode"),
                         doc="euler = K-step chain (eq. 3/7); ode = torchdiffeq solve of x' = -grad E")
    n_steps: int = param(20, ge=1, doc="K, chain steps (euler) or fixed-step solver steps (ode)")
    eta: float = param(0.02, gt=0.0, doc="paper step size: x <- x - (eta/2) grad E")
    noise_scale: Optional[float] = param(None, ge=0.0, optional=True, kind=float,
                                         doc="noisy variant: per-step noise std; None = sqrt(eta)")
    ode_T: float = param(0.2, gt=0.0, doc="flow time T of the ODE sampler (003 toys: 0.2)")
    ode_method: str = param("dopri5", doc="torchdiffeq method of the ODE sampler")
    ode_rtol: float = param(1e-5, gt=0.0, doc="ODE relative tolerance")
    ode_atol: float = param(1e-5, gt=0.0, doc="ODE absolute tolerance")
    prior_std: float = param(1.0, gt=0.0, doc="x0 ~ N(0, prior_std^2 I)")
    alpha: float = param(0.0, ge=0.0, doc="energy-magnitude regulariser (0 in 003)")
    gen_weight: float = param(1.0, ge=0.0, doc="weight of the generator term of eq. 12 (1 in 003)")
    grad_clip: Optional[float] = param(None, gt=0.0, optional=True, kind=float,
                                       doc="clip the parameter-gradient norm (None = off)")
    clamp: Optional[tuple] = param(None, optional=True, kind=tuple,
                                   doc="(lo, hi) box applied after each chain step (None = off, as in 003)")

    def validate(self) -> "SelfAdversarialConfig":
        super().validate()
        if self.clamp is not None:
            if len(self.clamp) != 2 or not self.clamp[0] < self.clamp[1]:
                raise ValueError(f"SelfAdversarialConfig.clamp must be (lo, hi) with lo < hi, got {self.clamp!r}")
            if self.sampler == "ode":
                raise ValueError("SelfAdversarialConfig.clamp needs sampler='euler' (the ODE is not clamped)")
        from torchdiffeq._impl.odeint import SOLVERS
        if self.ode_method not in SOLVERS:
            raise ValueError(f"SelfAdversarialConfig.ode_method must be a torchdiffeq solver, one of "
                             f"{sorted(SOLVERS)}; got {self.ode_method!r}")
        if self.variant == "noisy" and self.sampler == "ode":
            raise ValueError("SelfAdversarialConfig: variant='noisy' needs sampler='euler' (an ODE has no "
                             "noise), got sampler='ode'")
        if self.variant != "noisy" and self.noise_scale not in (None, 0, 0.0):
            raise ValueError(f"SelfAdversarialConfig.noise_scale is only used by variant='noisy'; "
                             f"variant={self.variant!r} got noise_scale={self.noise_scale!r}")
        return self

    @property
    def flow_time(self) -> float:
        """T of the flow whose density 003 eq. 6 gives: ode_T, or K * eta / 2 for the Euler chain."""
        return self.ode_T if self.sampler == "ode" else self.n_steps * self.eta / 2.0

    @property
    def effective_noise(self) -> float:
        if self.variant != "noisy":
            return 0.0
        return math.sqrt(self.eta) if self.noise_scale is None else float(self.noise_scale)


# =================================================================== trainer
class SelfAdversarialTrainer(Trainer):
    """EBM trained with noisy / noise-free / self-adversarial dynamics (003).

    Usage::

        tr = SelfAdversarialTrainer({"variant": "self-adv", "n_steps": 20, "eta": 0.02}, dim=2)
        tr.fit(data, n_iters=2000, batch_size=800)
        x = tr.sample(1000)                     # [1000, 2]
        ll = tr.log_likelihood(x_test)          # [N] nats, 003 eq. 6

    Metrics per step: loss, e_data, e_sample, gen (self-adv only), cd
    (= e_data - e_sample), sample_std.
    """

    name = "self-adv"
    Config = SelfAdversarialConfig
    step_size_keys = ("lr", "eta")
    has_chain = True

    def build(self) -> None:
        c = self.config
        self.energy = MLPEnergy(self.dim, c.hidden, c.n_layers, c.activation).to(self.device, self.dtype)
        self.opt = torch.optim.Adam(self.energy.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    # ---------------------------------------------------------------- hooks
    def modules(self) -> dict[str, nn.Module]:
        return {"energy": self.energy}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def prior(self, n: int) -> Tensor:
        """x0 ~ N(0, prior_std^2 I), [n, *event_shape] (global RNG)."""
        return self.config.prior_std * torch.randn(n, *self.event_shape, device=self.device, dtype=self.dtype)

    def init_points(self, n: int) -> Tensor:
        """Fresh chains start from the prior."""
        return self.prior(n)

    def chain(self, x: Tensor, n_steps: int) -> Tensor:
        """``n_steps`` Euler steps of the generator's chain from ``x`` (detached), whatever ``sampler``."""
        c = self.config
        return sampling_chain(self.energy, x, n_steps, c.eta, noise_scale=c.effective_noise, clamp=c.clamp,
                              backend=self.backend).detach()

    def figure_chain_steps(self) -> int:
        return int(self.config.n_steps)

    def generate(self, x0: Tensor, create_graph: bool = False) -> Tensor:
        """G_theta(x0) with the configured sampler and variant ([B, *S] -> [B, *S])."""
        c = self.config
        if c.sampler == "ode":
            return gradient_flow(self.energy, x0, c.ode_T, method=c.ode_method, rtol=c.ode_rtol,
                                 atol=c.ode_atol, n_steps=c.n_steps if c.ode_method in FIXED_STEP_METHODS else None,
                                 create_graph=create_graph)
        return sampling_chain(self.energy, x0, c.n_steps, c.eta, noise_scale=c.effective_noise,
                              create_graph=create_graph, clamp=c.clamp, backend=self.backend)

    def train_step(self, batch: Tensor, it: int) -> dict[str, float]:
        c = self.config
        x0 = self.prior(batch.shape[0])
        if c.variant == "self-adv":
            x_gen = self.generate(x0, create_graph=True)
            loss, m = self_adversarial_loss(self.energy, batch, x_gen, c.alpha, c.gen_weight)
        else:
            x_gen = self.generate(x0, create_graph=False)
            loss, m = ml_loss(self.energy, batch, x_gen, c.alpha)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = None
        if c.grad_clip is not None:
            gnorm = float(torch.nn.utils.clip_grad_norm_(self.energy.parameters(), c.grad_clip))
        self.opt.step()
        out = {"loss": float(loss.detach()), **m, "cd": m["e_data"] - m["e_sample"],
               "sample_std": float(x_gen.detach().reshape(x_gen.shape[0], -1).std(0).mean())}
        if gnorm is not None:
            out["grad_norm"] = gnorm
        return out

    # ------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, batch_size: int = 4096) -> Tensor:
        """``n`` samples of the trained generator (same sampler/variant as training), detached."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        outs = [self.generate(self.prior(min(batch_size, n - i))) for i in range(0, n, batch_size)]
        return torch.cat(outs).detach()

    @torch.no_grad()
    def sample_ode(self, n: int, method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
                   n_steps: Optional[int] = None, max_num_steps: Optional[int] = None) -> Tensor:
        """``n`` samples of the continuous flow x' = -grad E on [0, flow_time] (003 eq. 5)."""
        return gradient_flow(self.energy, self.prior(n), self.config.flow_time, method=method, rtol=rtol,
                             atol=atol, n_steps=n_steps, max_num_steps=max_num_steps)

    def log_likelihood(self, x: Tensor, **kwargs) -> Tensor:
        """log p(x) [B] in nats of the noise-free flow on [0, flow_time] (003 eq. 6).

        kwargs go to :func:`ebmfast.flows.likelihood.flow_log_likelihood`
        (method, rtol, atol, trace, n_probes, batch_size, ...). For
        ``variant="noisy"`` this is the density of the noise-free ODE of the
        same energy (the noisy chain itself is not invertible).
        """
        return flow_log_likelihood(self.energy, x.to(self.device, self.dtype), self.config.flow_time,
                                   prior_std=self.config.prior_std, **kwargs)

"""VPFB: variational potential flow (paper 004).

A time-dependent potential Phi(x, t) (log-density-like: high near data)
moves prior samples x(0) ~ N(0, I) to data along ``dx/dt = grad_x Phi``
(004 eq. 13). Training uses the OT flow-matching path (004 §3.5):

    x_bar ~ data, eps ~ N(0, I), t ~ U(0, t_end), tau = min(t, t_max)
    x = tau * x_bar + (1 - tau) * eps,          v = x_bar - eps          (004 eq. 20)

and the innovation (004 eq. 12 with alpha = 1/(1-t), beta = t/(1-t)^2,
omega = nu = 1, which is what the OT path gives)

    gamma(x, x_bar, tau) = |x|^2 / (1-tau)^2 + (1+tau) |x - x_bar|^2 / (1-tau)^3.

Loss (004 eq. 27 with the official code's weights), minimised:

    w_cov * Cov[Phi(x,t), w(tau) gamma] + w_grad_x * E|grad_x Phi|^2 + w_grad_t * E(d_t Phi)^2
    + poincare * E Phi^2 - w_cos * E cos(grad_x Phi, v),        w(tau) = (1 - tau)^kappa

``centering="batch"`` is eq. 27 literally (covariance over the batch).
``centering="conditional"`` subtracts instead the exact conditional mean
gamma_bar(x_bar, tau) = E_{rho(x|x_bar,tau)} gamma = |x_bar|^2/(1-tau)^2 + 2D/(1-tau), which is
the gamma_bar of 004 eq. 11/16 (the batch covariance replaces it by one global
mean, which adds a source term proportional to |x_bar|^2 - mean |x_bar|^2).

Reading of the scales (the paper's algebra does not close; see the README of
examples/vpfb). For one t, the minimiser of ``w_cov w Cov + w_grad_x E|grad Phi|^2``
is Phi = (w_cov w(t) / w_grad_x) Phi*, where grad Phi* is the marginal
velocity of the path (checked in closed form for one data point: Phi* =
-|x - x_bar|^2 / (2(1-t)) solves 004 eq. 16 exactly). Hence:

- ``scaling="calibrated"`` (default): velocity v_hat = s(tau) grad_x Phi with
  s = w_grad_x / (w_cov w(tau)); ODE on [0, t_max] then one final Euler step
  of length 1 - t_max with the field frozen at t_max (for the OT path that
  step is exactly E[x_bar | x_tmax], the denoised end point); Boltzmann
  log-density from the probability-flow ODE (004 eq. 19), f = -1/t,
  g^2 = 2(1-t)/t at t = t_max:

      log p_B(x) = (2 s Phi(x, t_max) + f |x|^2) / g^2      (= log rho_bar(x, t_max) + const)

- ``scaling="paper"``: dx/dt = grad_x Phi on [0, t_end] and
  Phi_B = (4 Phi(x, t_max) + f |x|^2) / g^2 exactly as printed (004 eq. 13, 22).

Defaults that depart from the printed paper, each measured on 2-D data
(examples/vpfb/README.md has the numbers): kappa = 0 (004: > 1; with the
calibrated velocity w(t)^2 weights the velocity error and kappa > 0 starves
t -> 1), conditional centring with the control variate Phi(tau x_bar, t)
(``baseline``), the (d_t Phi)^2 penalty only on the stationary range t >= t_max
(``grad_t_on``), and an EMA copy of the weights for evaluation (``ema``).
Everything as printed: ``centering="batch", kappa=2, grad_t_on="all",
baseline=False, scaling="paper"`` (two moons: ODE samples 525x the MMD floor).

Sign convention at the boundary: the ebmfast energy of the Boltzmann model is
E_B(x) = -Phi_B(x) (:meth:`VPFBTrainer.boltzmann_energy`); OOD scores are
Phi_B (higher = in-distribution).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from .base import Trainer
from .config import TrainerConfig, param

__all__ = [
    "PotentialMLP", "innovation", "innovation_mean", "vpfb_loss", "velocity_scale",
    "VPFBConfig", "VPFBTrainer", "BoltzmannEnergy",
]


# ==================================================================== model
class PotentialMLP(nn.Module):
    """Phi(x, t): x [B, *S], t [B] -> [B]; input is concat(flatten(x), t).

    With ``t_scale`` (a float t_max) the output is divided by 1 - min(t, t_max):
    the exact potential grows like -|x - E[x_bar|x]|^2 / (2 (1 - t)) as t -> 1,
    so the network only has to represent an O(1) function (a preconditioning,
    like EDM's output scaling; the loss is unchanged).
    """

    def __init__(self, dim: int, hidden: int = 256, n_layers: int = 4, activation: str = "silu",
                 t_scale: Optional[float] = None):
        super().__init__()
        self.t_scale = t_scale
        acts = {"silu": nn.SiLU, "softplus": nn.Softplus, "elu": nn.ELU, "tanh": nn.Tanh}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        layers: list[nn.Module] = []
        d = dim + 1
        for _ in range(n_layers - 1):
            layers += [nn.Linear(d, hidden), acts[activation]()]
            d = hidden
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        out = self.net(torch.cat([x.reshape(x.shape[0], -1), t.reshape(-1, 1).to(x)], 1)).squeeze(-1)
        if self.t_scale is not None:
            out = out / (1 - torch.clamp(t.reshape(-1).to(x), max=self.t_scale))
        return out


# ============================================================ path algebra
def _sq(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).pow(2).sum(1)


def innovation(x: Tensor, x_bar: Tensor, tau: Tensor) -> Tensor:
    """gamma(x, x_bar, tau) of 004 eq. 12 on the OT path: [B, *S], [B, *S], [B] -> [B]."""
    return _sq(x) / (1 - tau) ** 2 + (1 + tau) * _sq(x - x_bar) / (1 - tau) ** 3


def innovation_mean(x_bar: Tensor, tau: Tensor) -> Tensor:
    """E_{x ~ N(tau x_bar, (1-tau)^2 I)} gamma = |x_bar|^2/(1-tau)^2 + 2 D/(1-tau): [B]."""
    d = x_bar[0].numel()
    return _sq(x_bar) / (1 - tau) ** 2 + 2 * d / (1 - tau)


def loss_weight(tau: Tensor, kappa: float) -> Tensor:
    """w(tau) = (1 - tau)^kappa (004 §3.5)."""
    return (1 - tau) ** kappa


def velocity_scale(tau: Tensor, kappa: float, w_cov: float, w_grad_x: float) -> Tensor:
    """s(tau) with v_hat = s grad_x Phi: w_grad_x / (w_cov (1-tau)^kappa) (see module docstring)."""
    return w_grad_x / (w_cov * loss_weight(tau, kappa))


def vpfb_loss(potential: nn.Module, x_data: Tensor, *, t_end: float = 1.0, t_max: float = 0.95,
              kappa: float = 0.0, w_cov: float = 1.0, w_grad_x: float = 0.5, w_grad_t: float = 0.1,
              w_cos: float = 1.0, poincare: float = 0.0, centering: str = "conditional",
              baseline: bool = True, grad_t_on: str = "stationary", eps: Optional[Tensor] = None,
              t: Optional[Tensor] = None):
    """VPFB loss (004 eq. 27) on one batch; returns (loss, metrics of floats).

    Args:
        potential: Phi(x [B, *S], t [B]) -> [B].
        x_data: [B, *S] data batch x_bar.
        t_end, t_max: t ~ U(0, t_end); the kernel time is tau = min(t, t_max)
            (stationarity beyond the cutoff, 004 §3.5). The network sees t.
        kappa: w(tau) = (1 - tau)^kappa on the innovation.
        w_cov, w_grad_x, w_grad_t, w_cos, poincare: term weights (official:
            1, 0.5, 0.1, 1; poincare = eta of 004 eq. 25, small).
        centering: "batch" (eq. 27: batch covariance) or "conditional"
            (gamma - gamma_bar(x_bar, tau), exact for 004 eq. 16).
        baseline: with "conditional", use Phi(tau x_bar, t) as a control
            variate: E[(gamma - gamma_bar) b(x_bar, t)] = 0 for any b that does
            not depend on eps, so the loss and its gradient keep their
            expectation, while the 1/(1 - tau) noise of gamma - gamma_bar is
            multiplied by Phi(x) - Phi(tau x_bar) = O(1 - tau).
        grad_t_on: where the quasi-static penalty (d_t Phi)^2 applies: "all"
            times (eq. 27 as printed) or only the "stationary" range t >= t_max.
        eps, t: optional fixed noise [B, *S] and times [B] (tests).
    Metrics: loss, cov, grad_x, grad_t, cos, phi2.
    """
    if centering not in ("batch", "conditional"):
        raise ValueError(f"centering must be 'batch' or 'conditional', got {centering!r}")
    if grad_t_on not in ("all", "stationary"):
        raise ValueError(f"grad_t_on must be 'all' or 'stationary', got {grad_t_on!r}")
    B = x_data.shape[0]
    if eps is None:
        eps = torch.randn_like(x_data)
    if t is None:
        t = t_end * torch.rand(B, device=x_data.device, dtype=x_data.dtype)
    tau = torch.clamp(t, max=t_max)
    tb = tau.reshape(B, *([1] * (x_data.dim() - 1)))
    x = (tb * x_data + (1 - tb) * eps).detach().requires_grad_(True)
    tt = t.detach().clone().requires_grad_(True)
    v = (x_data - eps).reshape(B, -1)

    phi = potential(x, tt)
    gx, gt = torch.autograd.grad(phi.sum(), (x, tt), create_graph=True)
    gx = gx.reshape(B, -1)

    w = loss_weight(tau, kappa)
    gam = innovation(x.detach(), x_data, tau)
    if centering == "batch":
        wg = w * gam
        cov = ((phi - phi.mean()) * (wg - wg.mean())).mean()
    else:
        centred = phi
        if baseline:
            centred = phi - potential(tb * x_data, tt.detach())
        cov = (centred * w * (gam - innovation_mean(x_data, tau))).mean()
    grad_x = gx.pow(2).sum(1).mean()
    if grad_t_on == "all":
        grad_t = gt.pow(2).mean()
    else:  # mean over the batch of the penalty on the stationary part only (zero elsewhere)
        grad_t = (gt.pow(2) * (t >= t_max).to(gt)).mean()
    cos = torch.nn.functional.cosine_similarity(gx, v, dim=1, eps=1e-8).mean()
    phi2 = phi.pow(2).mean()
    loss = w_cov * cov + w_grad_x * grad_x + w_grad_t * grad_t + poincare * phi2 - w_cos * cos
    metrics = {"loss": loss.detach(), "cov": cov.detach(), "grad_x": grad_x.detach(), "grad_t": grad_t.detach(),
               "cos": cos.detach(), "phi2": phi2.detach()}
    return loss, {k: float(v) for k, v in metrics.items()}


# ==================================================================== config
@dataclass
class VPFBConfig(TrainerConfig):
    """Hyper-parameters of :class:`VPFBTrainer` (2-D toy defaults)."""

    hidden: int = param(256, ge=1, doc="hidden units of the potential MLP")
    n_layers: int = param(4, ge=2, doc="linear layers of the potential MLP")
    activation: str = param("silu", choices=("silu", "softplus", "elu", "tanh"))
    output_scaling: bool = param(False, doc="Phi = net(x, t) / (1 - min(t, t_max)) (preconditioning)")
    lr: float = param(1e-3, gt=0.0, doc="Adam learning rate")
    lr_decay_iters: Optional[int] = param(None, ge=1, optional=True, kind=int,
                                          doc="cosine decay of lr to lr_min over this many iterations (None = off)")
    lr_min: float = param(0.0, ge=0.0, doc="final learning rate of the cosine decay")
    t_end: float = param(1.0, gt=0.0, le=1.0, doc="t ~ U(0, t_end)")
    t_max: float = param(0.95, gt=0.0, lt=1.0, doc="cutoff: kernel time tau = min(t, t_max)")
    kappa: float = param(0.0, ge=0.0, doc="w(t) = (1 - t)^kappa on the innovation (004: > 1; see docstring)")
    w_cov: float = param(1.0, gt=0.0, doc="weight of the covariance term")
    w_grad_x: float = param(0.5, gt=0.0, doc="weight of E|grad_x Phi|^2 (official 0.5)")
    w_grad_t: float = param(0.1, ge=0.0, doc="weight of E(d_t Phi)^2 (official 0.1)")
    w_cos: float = param(1.0, ge=0.0, doc="weight of the cosine alignment term")
    poincare: float = param(1e-4, ge=0.0, doc="eta: weight of E Phi^2 (004 eq. 25, 27)")
    centering: str = param("conditional", choices=("batch", "conditional"),
                           doc="batch = eq. 27 covariance; conditional = exact gamma_bar(x_bar, t)")
    grad_t_on: str = param("stationary", choices=("all", "stationary"),
                           doc="(d_t Phi)^2 penalty on all t (as printed) or only t >= t_max")
    baseline: bool = param(True, doc="control variate Phi(tau x_bar, t) in the conditional covariance")
    ema: float = param(0.999, ge=0.0, lt=1.0, doc="EMA decay of the potential used for sampling (0 = off)")
    scaling: str = param("calibrated", choices=("calibrated", "paper"),
                         doc="velocity / Boltzmann scale: calibrated (derived) or paper (as printed)")
    ode_method: str = param("euler", doc="torchdiffeq method for ODE sampling (004 2-D: Euler)")
    ode_steps: int = param(100, ge=1, doc="fixed-step solver steps on [0, t_max]")
    langevin_steps: int = param(500, ge=0, doc="Langevin steps from the Boltzmann energy")
    langevin_step: float = param(1e-3, gt=0.0, doc="D: x <- x + D grad Phi_B + sqrt(2 D) lambda eps")
    langevin_temp: float = param(1.0, ge=0.0, doc="lambda: noise temperature scale")
    grad_clip: Optional[float] = param(None, gt=0.0, optional=True, kind=float,
                                       doc="clip the parameter-gradient norm (None = off)")

    def validate(self) -> "VPFBConfig":
        super().validate()
        if not self.t_max <= self.t_end:
            raise ValueError(f"VPFBConfig.t_max must be <= t_end (cutoff inside the training range), "
                             f"got t_max={self.t_max}, t_end={self.t_end}")
        from torchdiffeq._impl.odeint import SOLVERS
        if self.ode_method not in SOLVERS:
            raise ValueError(f"VPFBConfig.ode_method must be a torchdiffeq solver, one of {sorted(SOLVERS)}; "
                             f"got {self.ode_method!r}")
        return self


# ================================================================ Boltzmann
class BoltzmannEnergy(nn.Module):
    """ebmfast energy E_B(x) = -Phi_B(x) of a trained VPFB potential (004 eq. 22): [B, *S] -> [B]."""

    def __init__(self, trainer: "VPFBTrainer"):
        super().__init__()
        self.trainer = trainer

    def forward(self, x: Tensor) -> Tensor:
        return -self.trainer.log_density(x)


# =================================================================== trainer
class VPFBTrainer(Trainer):
    """Variational potential flow (004) on [B, *S] data.

    Usage::

        tr = VPFBTrainer({"t_max": 0.95}, dim=2)
        tr.fit(moons, n_iters=3000, batch_size=512)
        x = tr.sample(2000)                       # ODE samples (Euler)
        logp = tr.log_density(grid)               # Phi_B, log p_B up to a constant
        x_l = tr.sample_langevin(2000)            # Langevin on E_B = -Phi_B
        score = tr.ood_score(x_test)              # higher = in-distribution
    """

    name = "vpfb"
    Config = VPFBConfig
    step_size_keys = ("lr", "lr_min")

    def build(self) -> None:
        c = self.config
        self.potential = PotentialMLP(self.dim, c.hidden, c.n_layers, c.activation,
                                      t_scale=c.t_max if c.output_scaling else None).to(self.device, self.dtype)
        self.opt = torch.optim.Adam(self.potential.parameters(), lr=c.lr)
        # EMA copy used by every evaluation method (sampling, Boltzmann density) when ema > 0
        self.potential_ema = None
        if c.ema > 0:
            import copy
            self.potential_ema = copy.deepcopy(self.potential).requires_grad_(False)

    @property
    def eval_potential(self) -> nn.Module:
        """The potential used for sampling / densities: the EMA copy when ``ema > 0``."""
        return self.potential_ema if self.potential_ema is not None else self.potential

    def modules(self) -> dict[str, nn.Module]:
        mods = {"potential": self.potential}
        if self.potential_ema is not None:
            mods["potential_ema"] = self.potential_ema
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def loss(self, batch: Tensor, eps: Optional[Tensor] = None, t: Optional[Tensor] = None):
        """(loss, metrics) of :func:`vpfb_loss` with this trainer's config."""
        c = self.config
        return vpfb_loss(self.potential, batch, t_end=c.t_end, t_max=c.t_max, kappa=c.kappa, w_cov=c.w_cov,
                         w_grad_x=c.w_grad_x, w_grad_t=c.w_grad_t, w_cos=c.w_cos, poincare=c.poincare,
                         centering=c.centering, baseline=c.baseline, grad_t_on=c.grad_t_on, eps=eps, t=t)

    def learning_rate(self, it: int) -> float:
        """lr at iteration ``it``: constant, or cosine from lr to lr_min over lr_decay_iters."""
        c = self.config
        if c.lr_decay_iters is None:
            return c.lr
        frac = min(it, c.lr_decay_iters) / c.lr_decay_iters
        return c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * frac))

    def train_step(self, batch: Tensor, it: int) -> dict[str, float]:
        # the objective's gradient is a noisy Monte-Carlo estimate (the covariance term); a decaying
        # lr (and the EMA copy) is what brings the 2-D ODE samples to the MMD noise floor
        for g in self.opt.param_groups:
            g["lr"] = self.learning_rate(it)
        loss, m = self.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            m["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.potential.parameters(), self.config.grad_clip))
        self.opt.step()
        if self.potential_ema is not None:
            with torch.no_grad():
                d = self.config.ema
                for pe, p in zip(self.potential_ema.parameters(), self.potential.parameters()):
                    pe.mul_(d).add_(p, alpha=1 - d)
        return m

    # ------------------------------------------------------------- velocity
    def _scale(self, tau: float) -> float:
        c = self.config
        if c.scaling == "paper":
            return 1.0
        return float(velocity_scale(torch.tensor(tau, dtype=torch.float64), c.kappa, c.w_cov, c.w_grad_x))

    def velocity(self, x: Tensor, t: float) -> Tensor:
        """Sampling velocity at time t: s(min(t, t_max)) * grad_x Phi(x, t), [B, *S] (detached)."""
        c = self.config
        tau = min(float(t), c.t_max)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            tt = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
            (g,) = torch.autograd.grad(self.eval_potential(xg, tt).sum(), xg)
        return self._scale(tau) * g

    @torch.no_grad()
    def sample_ode(self, n: int, n_steps: Optional[int] = None, method: Optional[str] = None,
                   x0: Optional[Tensor] = None, return_trajectory: bool = False):
        """ODE samples (004 eq. 13) from x(0) ~ N(0, I), [n, *S].

        calibrated: solve on [0, t_max] with ``method`` (default config:
        Euler, ``ode_steps`` steps), then one step of length 1 - t_max with
        the field at t_max. paper: dx/dt = grad_x Phi on [0, t_end].
        """
        from torchdiffeq import odeint

        from ..flows.likelihood import FIXED_STEP_METHODS

        c = self.config
        method = c.ode_method if method is None else method
        n_steps = c.ode_steps if n_steps is None else n_steps
        x = torch.randn(n, *self.event_shape, device=self.device, dtype=self.dtype) if x0 is None else x0
        t1 = c.t_max if c.scaling == "calibrated" else c.t_end
        ts = torch.linspace(0.0, t1, n_steps + 1 if return_trajectory else 2, dtype=self.dtype, device=self.device)
        opts = {"step_size": t1 / n_steps} if method in FIXED_STEP_METHODS else None
        traj = odeint(lambda t, y: self.velocity(y, float(t)), x, ts, method=method, options=opts)
        xT = traj[-1]
        if c.scaling == "calibrated":
            xT = xT + (1.0 - c.t_max) * self.velocity(xT, c.t_max)
        if return_trajectory:
            return xT, traj
        return xT

    def sample(self, n: int) -> Tensor:
        """``n`` ODE samples (the VPFB generator), detached [n, *S]."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        return self.sample_ode(n).detach()

    # ------------------------------------------------------------ Boltzmann
    def log_density(self, x: Tensor) -> Tensor:
        """Phi_B(x) = log p_B(x) + const (004 eq. 22 at t_max), [B]; differentiable in x."""
        c = self.config
        tm = c.t_max
        f, g2 = -1.0 / tm, 2.0 * (1.0 - tm) / tm
        coef = 4.0 if c.scaling == "paper" else 2.0 * self._scale(tm)
        t = torch.full((x.shape[0],), tm, dtype=x.dtype, device=x.device)
        return (coef * self.eval_potential(x, t) + f * x.reshape(x.shape[0], -1).pow(2).sum(1)) / g2

    def boltzmann_energy(self) -> BoltzmannEnergy:
        """E_B = -Phi_B as an ebmfast energy module ([B, *S] -> [B], low = likely)."""
        return BoltzmannEnergy(self)

    def ood_score(self, x: Tensor) -> Tensor:
        """Phi_B(x), higher = more in-distribution (for ``ebmfast.evaluators.auroc``), [B] detached."""
        with torch.no_grad():
            return self.log_density(x.to(self.device, self.dtype)).detach()

    def sample_langevin(self, n: int, n_steps: Optional[int] = None, step: Optional[float] = None,
                        temp: Optional[float] = None, x0: Optional[Tensor] = None,
                        seed: Optional[int] = None) -> Tensor:
        """Langevin samples of p_B: x <- x + D grad Phi_B + sqrt(2 D) lambda eps (004 §4.6), [n, *S].

        Runs ``ebmfast.sample`` on E_B = -Phi_B (step_size = D, noise_scale =
        sqrt(2 D) * lambda) from x0 (default N(0, I)).
        """
        import ebmfast

        c = self.config
        n_steps = c.langevin_steps if n_steps is None else n_steps
        D = c.langevin_step if step is None else step
        lam = c.langevin_temp if temp is None else temp
        x = torch.randn(n, *self.event_shape, device=self.device, dtype=self.dtype) if x0 is None else x0
        return ebmfast.sample(self.boltzmann_energy(), x, n_steps=n_steps, step_size=D,
                              noise_scale=math.sqrt(2 * D) * lam, seed=seed).detach()

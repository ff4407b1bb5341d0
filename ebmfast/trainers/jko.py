"""JKO-Flow: primal-dual Wasserstein gradient flow (paper 002 §3, eq. 8, Alg. 1).

Each JKO step k (step size a) learns a transport map ``T_k`` and sets
``P_{k+1} = T_k # P_k`` where

    T_k = argmin_T max_h  1/(2a) E_{P_k}|X - T(X)|^2 + w * (E_{P_k}[A_h(T X)] - E_{Gamma}[B_h(Z)])

with (A, B, Gamma) from :mod:`ebmfast.flows.functionals` (KL to an
unnormalised target, generalised entropy, JSD to data) and w = ``weight``.
Alg. 1: T warm-starts from T_{k-1}; every JKO step runs ``j1`` outer
iterations of (``j2`` gradient steps on h, ``j3`` on T), each on a batch of
P_k particles and a batch of Gamma. One :meth:`train_step` = one outer
iteration, so a full run is ``fit(data, n_iters=n_jko_steps * j1)``
(``data=None`` except for the JSD functional, whose Gamma is the data).

State kept across steps
    - a pool of ``n_particles`` samples of P_k (pushed through T_k at the end
      of every step), from which batches are drawn;
    - the finished maps ``maps[0..k-1]`` (a pre-allocated ``ModuleList`` of
      ``n_jko_steps`` maps, so checkpoints have a fixed layout);
    - Gamma's parameters (Gaussian fit / box), refit to the pool every step;
    - with ``map_whiten`` (default) the residual map's frame: T_k(x) =
      x + L_k net(L_k^-1 (x - m_k)) with (m_k, L_k) the mean / Cholesky factor
      of the P_k pool, so Adam's step is measured in particle standard
      deviations (an ebmfast addition: without it Bayesian logistic regression
      diverged at JKO step 3; see ``ebmfast.flows.maps.ResidualMLPMap``).

Forward-backward (App. C): with ``interaction=grad_W`` every JKO step is
preceded by the explicit step ``x <- x - a E_{y~P_k} grad W(x - y)`` on the pool.

Usage::

    from ebmfast.data import OUProcess
    ou = OUProcess.random(8)
    tr = JKOTrainer({"functional": "kl", "step_size": 0.05, "n_jko_steps": 18, "j1": 300},
                    dim=8, target=ou)              # target: energy callable or object with .energy
    tr.fit(None, n_iters=tr.total_iters)
    x = tr.sample(10_000)                          # fresh P0 samples pushed through T_1..T_K
    # ICNN maps (map="icnn") also give densities: tr.log_prob(x)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor, nn

from ..flows.functionals import gaussian_fit, make_functional
from ..flows.icnn import ICNNMap
from ..flows.maps import ACTIVATIONS, ResidualMLPMap, make_mlp
from ..flows.transport import forward_interaction_step, push, pushforward_log_prob
from .base import Trainer
from .config import TrainerConfig, param

__all__ = ["JKOConfig", "JKOTrainer"]


@dataclass
class JKOConfig(TrainerConfig):
    """Hyper-parameters of :class:`JKOTrainer` (defaults: paper 002 App. F)."""

    functional: str = param("kl", choices=("kl", "entropy", "jsd"),
                            doc="KL to target energy | generalised entropy | JSD to data")
    step_size: float = param(0.1, gt=0.0, doc="JKO step size a")
    n_jko_steps: int = param(40, ge=1, doc="number of JKO steps K")
    j1: int = param(600, ge=1, doc="outer iterations per JKO step")
    j2: int = param(3, ge=1, doc="h (dual) updates per outer iteration")
    j3: int = param(1, ge=1, doc="T (map) updates per outer iteration")
    batch_size: int = param(100, ge=2, doc="P_k / Gamma batch size M")
    n_particles: int = param(10_000, ge=2, doc="size of the P_k particle pool")
    lr_map: float = param(1e-3, gt=0.0, doc="Adam learning rate of T")
    lr_h: float = param(1e-3, gt=0.0, doc="Adam learning rate of h")
    map: str = param("resmlp", choices=("resmlp", "icnn"), doc="residual MLP or gradient of an ICNN")
    map_whiten: bool = param(True, doc="resmlp only: T_k acts in the whitened frame of the P_k particles")
    map_width: int = param(16, ge=1, doc="hidden width of T")
    map_depth: int = param(4, ge=1, doc="hidden layers of T")
    map_activation: str = param("prelu", choices=tuple(ACTIVATIONS), doc="activation of the residual map")
    icnn_activation: str = param("softplus", choices=("softplus", "celu"), doc="convex activation of the ICNN")
    icnn_strong_convexity: float = param(1e-3, gt=0.0, doc="floor on the Hessian of the ICNN potential")
    h_width: int = param(16, ge=1, doc="hidden width of h")
    h_depth: int = param(3, ge=1, doc="hidden layers of h")
    h_activation: str = param("prelu", choices=tuple(ACTIVATIONS), doc="activation of h")
    m: float = param(2.0, gt=1.0, doc="exponent of the generalised entropy")
    box_scale: float = param(1.4, ge=1.0, doc="enlargement of the entropy's uniform Gamma box")
    weight: float = param(1.0, gt=0.0, doc="multiplier of the functional (e.g. 0.1 for 0.1 G)")
    p0_mean: float = param(0.0, doc="mean (every coordinate) of the default P0 = N(mean, std^2 I)")
    p0_std: float = param(1.0, gt=0.0, doc="std of the default P0")
    lr_decay_step: int = param(None, ge=1, optional=True, kind=int,
                               doc="JKO step from which both lrs are multiplied by lr_decay")
    lr_decay: float = param(0.4, gt=0.0, le=1.0, doc="lr factor after lr_decay_step (002 GMM: 0.4)")

    def validate(self) -> "JKOConfig":
        super().validate()
        if self.batch_size > self.n_particles:
            raise ValueError(f"JKOConfig.batch_size ({self.batch_size}) must be <= n_particles "
                             f"({self.n_particles})")
        return self


def _as_energy(target: Any) -> Optional[Callable[[Tensor], Tensor]]:
    """An energy callable from ``target`` (callable, or an object with ``.energy``)."""
    if target is None:
        return None
    if callable(target):
        return target
    e = getattr(target, "energy", None)
    if callable(e):
        return e
    raise TypeError(f"target must be an energy callable [B, D] -> [B] or an object with .energy, "
                    f"got {type(target).__name__}")


class JKOTrainer(Trainer):
    """Primal-dual JKO scheme (paper 002 Alg. 1). See the module docstring.

    Args (besides the base ``config, dim, device, dtype, seed, backend``):
        target: for ``functional="kl"``: the target as an energy ``E = -log Q + c``
            (callable ``[B, D] -> [B]``, or any object with ``.energy``).
        p0: initial law: a ``torch.distributions.Distribution`` or an object
            with ``sample(n) -> [n, D]`` and ``log_prob(x) -> [n]``. Default
            ``N(p0_mean, p0_std^2 I)``.
        interaction: gradient of an even interaction kernel,
            ``grad_w(diff [..., D]) -> [..., D]``, for the forward-backward scheme.
    """

    name = "jko"
    Config = JKOConfig
    requires_data = False
    step_size_keys = ("lr_map", "lr_h")  # the JKO time step a is part of the flow, not a stability knob
    has_chain = True

    def __init__(self, config: Any = None, dim: int = 2, *, target: Any = None, p0: Any = None,
                 interaction: Optional[Callable[[Tensor], Tensor]] = None, **kwargs):
        self.energy = _as_energy(target)
        self.p0 = p0
        if interaction is not None and not callable(interaction):
            raise TypeError(f"interaction must be a callable grad_w(diff) -> [..., D], got "
                            f"{type(interaction).__name__}")
        self.interaction = interaction
        super().__init__(config, dim, **kwargs)

    # ----------------------------------------------------------------- build
    def _make_map(self) -> nn.Module:
        c = self.config
        if c.map == "icnn":
            T = ICNNMap(self.dim, c.map_width, c.map_depth, c.icnn_activation, c.icnn_strong_convexity)
        else:
            T = ResidualMLPMap(self.dim, c.map_width, c.map_depth, c.map_activation)
        return T.to(self.device, self.dtype)

    def build(self) -> None:
        c = self.config
        if len(self.event_shape) != 1:
            raise ValueError(f"JKOTrainer works on flat vectors: dim must be an int, got event shape "
                             f"{self.event_shape}")
        if c.functional == "kl" and self.energy is None:
            raise ValueError("JKOConfig.functional='kl' needs target= (an energy -log Q up to a constant)")
        if c.functional != "kl" and self.energy is not None:
            raise ValueError(f"target= is only used by functional='kl', got functional={c.functional!r}")
        self.requires_data = c.functional == "jsd"
        self.functional = make_functional(c.functional, energy=self.energy, m=c.m, box_scale=c.box_scale)
        self.T = self._make_map()
        self.h = make_mlp(self.dim, 1, c.h_width, c.h_depth, c.h_activation).to(self.device, self.dtype)
        self.maps = nn.ModuleList([self._make_map() for _ in range(c.n_jko_steps)])
        self.opt_T = torch.optim.Adam(self.T.parameters(), lr=c.lr_map, foreach=True)
        self.opt_h = torch.optim.Adam(self.h.parameters(), lr=c.lr_h, foreach=True)
        self.k = 0          # finished JKO steps
        self.inner = 0      # outer iterations done inside the current step
        self.particles = self._begin_step(self.sample_p0(c.n_particles))

    # ------------------------------------------------------------ run facts
    @classmethod
    def cli_presets(cls, user, *, has_data: bool, has_target: bool) -> dict:
        """``functional``: "kl" with a target and no data, else "jsd" (unless given)."""
        if "functional" in user:
            return {}
        return {"functional": "kl" if has_target and not has_data else "jsd"}

    @classmethod
    def iteration_limit(cls, config) -> tuple[int, str]:
        """A run is at most ``n_jko_steps * j1`` iterations."""
        total = config.n_jko_steps * config.j1
        return total, f"the JKO schedule n_jko_steps * j1 = {config.n_jko_steps} * {config.j1} = {total}"

    def energy_fn(self):
        """None: JKO learns transport maps, not an energy."""
        return None

    def fresh_chain(self, n: int, n_steps: int) -> Tensor:
        """P0 pushed through the first ``n_steps`` maps."""
        return self.sample(n, steps=n_steps)

    def chain_trajectory(self, n: int, n_steps: int, n_frames: int = 8) -> Tensor:
        """The same P0 draw (seed 0, global RNG untouched) pushed through 0, ..., n_steps maps."""
        with torch.random.fork_rng(devices=[]):
            return torch.stack([self.sample(n, seed=0, steps=m) for m in self.frame_marks(n_steps, n_frames)])

    def figure_chain_steps(self) -> int:
        return max(1, self.k)

    @property
    def total_iters(self) -> int:
        """Iterations of a full run: ``n_jko_steps * j1``."""
        return self.config.n_jko_steps * self.config.j1

    @property
    def n_steps_done(self) -> int:
        """Number of finished JKO steps (maps usable by :meth:`sample`)."""
        return self.k

    # ------------------------------------------------------------------- P0
    def sample_p0(self, n: int) -> Tensor:
        """``[n, D]`` draws of P0 (uses the global torch RNG)."""
        if self.p0 is None:
            x = self.config.p0_mean + self.config.p0_std * torch.randn(n, self.dim, dtype=self.dtype)
        elif isinstance(self.p0, torch.distributions.Distribution):
            x = self.p0.sample((n,))
        else:
            x = self.p0.sample(n)
        if tuple(x.shape) != (n, self.dim):
            raise ValueError(f"p0 samples must have shape [{n}, {self.dim}], got {tuple(x.shape)}")
        return x.to(self.device, self.dtype)

    def log_prob_p0(self, x: Tensor) -> Tensor:
        """``log P0(x)``: ``[B, D] -> [B]``."""
        if self.p0 is None:
            z = (x - self.config.p0_mean) / self.config.p0_std
            return -0.5 * (z * z).sum(-1) - self.dim * (math.log(self.config.p0_std) + 0.5 * math.log(2 * math.pi))
        return self.p0.log_prob(x)

    # ------------------------------------------------------------ JKO steps
    def _begin_step(self, particles: Tensor) -> Tensor:
        """Forward interaction step (if any), then refit Gamma to the pool of P_k."""
        if self.interaction is not None:
            particles = forward_interaction_step(particles, self.interaction, self.config.step_size)
        self.functional.fit_gamma(particles)
        if self.config.map_whiten and isinstance(self.T, ResidualMLPMap):
            self.T.set_frame(*gaussian_fit(particles))
        return particles

    def _set_lr(self) -> None:
        c = self.config
        f = c.lr_decay if c.lr_decay_step is not None and self.k >= c.lr_decay_step else 1.0
        for opt, lr in ((self.opt_T, c.lr_map * f), (self.opt_h, c.lr_h * f)):
            for g in opt.param_groups:
                g["lr"] = lr

    def train_step(self, batch: Optional[Tensor], it: int) -> dict[str, float]:
        """One outer iteration of Alg. 1: ``j2`` h-steps then ``j3`` T-steps.

        Args:
            batch: ``[B, D]`` data (samples of Q) for ``functional="jsd"``; None otherwise.
        Returns:
            metrics: ``jko_step`` (k), ``w2`` (1/(2a) E|X - T X|^2), ``primal``
            (w E[A_h(T X)]), ``dual`` (E[A_h] - E[B_h], h's objective) and, at the
            last iteration of a step, ``objective`` (variational estimate of
            F(P_{k+1}); for KL it is KL - log Z of the unnormalised target).
        """
        c = self.config
        if self.k >= c.n_jko_steps:
            raise RuntimeError(f"all {c.n_jko_steps} JKO steps are done (iteration {it}); "
                               f"fit n_iters must be <= n_jko_steps * j1 = {self.total_iters}")
        if c.functional == "jsd" and batch is None:
            raise ValueError("functional='jsd' needs data (samples of Q): call fit(data, ...)")
        self._set_lr()
        idx = torch.randint(self.particles.shape[0], (c.batch_size,), device=self.particles.device)
        x = self.particles[idx]
        z = self.functional.sample_gamma(c.batch_size, batch)
        with torch.no_grad():
            tx = self.T(x)
        for _ in range(c.j2):                       # maximise over h (T fixed)
            self.opt_h.zero_grad(set_to_none=True)
            dual = self.functional.dual_objective(self.h, tx, z)
            (-dual).backward()
            self.opt_h.step()
        t_params = list(self.T.parameters())
        for _ in range(c.j3):                       # minimise over T (h fixed)
            self.opt_T.zero_grad(set_to_none=True)
            tx = self.T(x)
            w2 = (tx - x).pow(2).sum(-1).mean() / (2 * c.step_size)
            primal = c.weight * self.functional.primal_term(self.h, tx)
            (w2 + primal).backward(inputs=t_params)  # no gradient into h here
            self.opt_T.step()
            self.T.project()
        metrics = {"jko_step": float(self.k), "w2": w2.item(), "primal": primal.item(), "dual": dual.item()}
        self.inner += 1
        if self.inner == c.j1:
            with torch.no_grad():
                tx = self.T(x)
            metrics["objective"] = self.functional.value(self.h, tx, z)
            self._finish_step()
        return metrics

    def _finish_step(self) -> None:
        """Store T_k, push the pool to P_{k+1}, start step k+1 (T and h warm-start)."""
        self.maps[self.k].load_state_dict(self.T.state_dict())
        self.particles = push(self.particles, [self.T])
        self.k += 1
        self.inner = 0
        if self.k < self.config.n_jko_steps:
            self.particles = self._begin_step(self.particles)

    # -------------------------------------------------------------- outputs
    @torch.no_grad()
    def sample(self, n: int, seed: Optional[int] = None, steps: Optional[int] = None) -> Tensor:
        """Fresh P0 samples pushed through the finished maps: ``[n, D] ~ P_steps``.

        Args:
            n: number of samples.
            seed: if given, P0 is drawn under ``torch.manual_seed(seed)`` in a
                forked RNG (the global RNG is left untouched).
            steps: how many maps to apply (default: all finished, ``n_steps_done``).
        With an interaction kernel the forward steps use the batch itself as
        the empirical P_k (so n should be a few thousand).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        steps = self.k if steps is None else steps
        if not 0 <= steps <= self.k:
            raise ValueError(f"steps must be in [0, {self.k}] (finished JKO steps), got {steps}")
        if seed is None:
            x0 = self.sample_p0(n)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                x0 = self.sample_p0(n)
        return push(x0, list(self.maps[:steps]), self.interaction, self.config.step_size)

    def log_prob(self, y: Tensor, steps: Optional[int] = None, **inverse_kw) -> Tensor:
        """``log P_steps(y)`` by eq. 18-19 (ICNN maps, no interaction): ``[B, D] -> [B]``."""
        if self.config.map != "icnn":
            raise ValueError("log_prob needs invertible maps: use JKOConfig.map='icnn'")
        if self.interaction is not None:
            raise ValueError("log_prob is not available with the forward-backward scheme "
                             "(the forward step depends on P_k; paper 002 App. D)")
        steps = self.k if steps is None else steps
        if not 0 <= steps <= self.k:
            raise ValueError(f"steps must be in [0, {self.k}] (finished JKO steps), got {steps}")
        return pushforward_log_prob(y.to(self.device, self.dtype), list(self.maps[:steps]),
                                    self.log_prob_p0, **inverse_kw)[0]

    # ----------------------------------------------------------- checkpoint
    def modules(self) -> dict[str, nn.Module]:
        return {"T": self.T, "h": self.h, "maps": self.maps}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"T": self.opt_T, "h": self.opt_h}

    def extra_state(self) -> dict[str, Any]:
        st = {"particles": self.particles, "k": self.k, "inner": self.inner}
        st.update({f"gamma.{k}": v for k, v in self.functional.state().items()})
        return st

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.particles = state["particles"].to(self.device, self.dtype)
        self.k, self.inner = int(state["k"]), int(state["inner"])
        self.functional.load_state({k[len("gamma."):]: v.to(self.device, self.dtype)
                                    for k, v in state.items() if k.startswith("gamma.")})

"""Porous medium equation with JKO-Flow and ICNN maps (paper 002 §5.4): SymKL to Barenblatt.

    PYTHONPATH=. python examples/jko/porous.py              # d = 1, 2, 3 -> results/porous.json (~25 min, 1 core)
    PYTHONPATH=. python examples/jko/porous.py --dims 2 --seed 1 --out porous_s1_d2   # another seed (results/porous_s1_*.json)
    PYTHONPATH=. python examples/jko/porous.py --dims 1 --k 10 --j1 40 --out porous_quick

G(P) = ∫ P^2 (m = 2), a = 5e-4, P0 = Barenblatt profile at t0 = 1e-3, 50 JKO
steps, T = grad of an ICNN (so P_k has a density, eq. 18-19), Gamma uniform
on a box around the particles. Every ``--eval-every`` steps:

    SymKL = E_{x~P_t}[log P_t(x) - log P_k(x)] + E_{y~P_k}[log P_k(y) - log P_t(y)]

with P_t the Barenblatt profile at t = k a, log P_k at P_t's samples by
inverting the maps (Newton, eq. 18) and at P_k's own samples by summing the
log-dets along the forward path. Both laws have compact support; as in the
authors' code, densities are floored at 1e-45 (log = -103.6) where a sample
falls outside the other law's support, and the fraction of such samples is
reported. Each evaluation also records the "exact-JKO floor": the same estimator
between the profile and the exact JKO solution (a dilated Barenblatt profile,
:func:`jko_exact_taus`), i.e. the part of SymKL due to the time discretisation alone.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from _common import setup, write_json
from ebmfast.flows import Barenblatt, pushforward_log_prob
from ebmfast.trainers.jko import JKOTrainer

LOG_FLOOR = math.log(1e-45)


def jko_exact_taus(bb: Barenblatt, a: float, n_steps: int) -> list[float]:
    """Times tau_k (k = 0..n_steps) of the *exact* JKO scheme started at the Barenblatt profile.

    For m = 2 the JKO step of the Barenblatt shape is a dilation x -> (s'/s) x: the
    optimality condition (S(y) - y)/a = grad 2 P_{k+1}(y) is linear in y, giving the
    implicit-Euler recursion s' - s = a (alpha/n) s'^-(n+1) of the continuous scale
    s(tau) = tau^(alpha/n) (ds/dt = (alpha/n) s^-(n+1)). Implicit Euler on a decreasing
    right-hand side lags: s_k < s(t0 + k a) (1.5 % at k = 5), so even a perfect JKO
    solver has a support slightly inside the Barenblatt support (the "exact-JKO floor").
    """
    if bb.m != 2.0:
        raise ValueError(f"jko_exact_taus needs m = 2, got m={bb.m}")
    n, c = bb.dim, bb.alpha / bb.dim
    s, taus = bb.t0 ** c, [bb.t0]
    for _ in range(n_steps):
        sp = s
        for _ in range(100):            # fixed point of sp = s + a c sp^-(n+1) (contraction: a c (n+1) sp^-(n+2) << 1)
            sp = s + a * c * sp ** (-(n + 1))
        s = sp
        taus.append(s ** (1.0 / c))
    return taus


@torch.no_grad()
def floor_symkl(bb: Barenblatt, t: float, tau_jko: float, n: int, seed: int) -> dict:
    """Same SymKL estimator between the continuous profile P(t) and the exact-JKO profile."""
    g = torch.Generator().manual_seed(seed)
    x, y = bb.sample(n, t=t, generator=g).double(), bb.sample(n, t=tau_jko - bb.t0, generator=g).double()
    fl = lambda v: v.clamp(min=LOG_FLOOR)  # noqa: E731
    lq_x = bb.log_prob(x, tau_jko - bb.t0)
    kl1 = float((fl(bb.log_prob(x, t)) - fl(lq_x)).mean())
    kl2 = float((fl(bb.log_prob(y, tau_jko - bb.t0)) - fl(bb.log_prob(y, t))).mean())
    return {"floor_symkl": kl1 + kl2, "floor_frac_gt_outside": float((lq_x == -math.inf).double().mean())}


@torch.no_grad()
def fit_samples_with_log_prob(tr: JKOTrainer, n: int, seed: int):
    """Fresh samples of P_k and their log density, accumulated along the forward path."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        x = tr.sample_p0(n)
    lp = tr.log_prob_p0(x)
    for T in tr.maps[:tr.n_steps_done]:
        lp = lp - T.log_det_jacobian(x)
        x = T(x)
    return x, lp


def symkl(tr: JKOTrainer, bb: Barenblatt, t: float, n: int, seed: int, n_sub: int) -> dict:
    """Monte Carlo SymKL(P(t), P_k) on n samples of each law (and on the first n_sub of them)."""
    gt = bb.sample(n, t=t, generator=torch.Generator().manual_seed(seed)).to(tr.dtype)
    lp_fit_gt, _ = pushforward_log_prob(gt, list(tr.maps[:tr.n_steps_done]), tr.log_prob_p0)
    lp_gt_gt = bb.log_prob(gt, t)
    y, lp_fit_y = fit_samples_with_log_prob(tr, n, seed + 1)
    lp_gt_y = bb.log_prob(y, t)
    fl = lambda v: v.clamp(min=LOG_FLOOR)  # noqa: E731
    d1, d2 = fl(lp_gt_gt) - fl(lp_fit_gt), fl(lp_fit_y) - fl(lp_gt_y)
    kl1, kl2 = float(d1.mean()), float(d2.mean())
    # radius quantiles (fit / Barenblatt): a lagging support shows as q999 < 1 while the bulk (q50) is fine
    rq = lambda v, q: float(torch.quantile(v.double().norm(dim=-1), q))  # noqa: E731
    return {"symkl": kl1 + kl2, "kl_gt_fit": kl1, "kl_fit_gt": kl2,
            f"symkl_first{n_sub}": float(d1[:n_sub].mean() + d2[:n_sub].mean()),
            "frac_gt_outside_fit": float((lp_fit_gt < LOG_FLOOR).float().mean()),
            "frac_fit_outside_gt": float((lp_gt_y < LOG_FLOOR).float().mean()),
            "var_ratio_fit_over_gt": float(y.pow(2).sum(-1).mean() / gt.pow(2).sum(-1).mean()),
            "radius_q50_ratio": rq(y, 0.5) / rq(gt, 0.5), "radius_q999_ratio": rq(y, 0.999) / rq(gt, 0.999)}


def run(dim: int, args) -> dict:
    bb = Barenblatt(dim, m=2.0, t0=args.t0)
    cfg = dict(functional="entropy", m=2.0, step_size=args.a, n_jko_steps=args.k, j1=args.j1, j2=3,
               j3=args.j3, batch_size=args.batch, n_particles=args.particles, map="icnn",
               map_width=args.map_width, map_depth=2, h_width=args.h_width, h_depth=args.h_depth,
               h_activation=args.h_activation,
               lr_map=args.lr_map, lr_h=args.lr_h, box_scale=1.4)
    tr = JKOTrainer(cfg, dim=dim, p0=bb, seed=args.seed)
    taus = jko_exact_taus(bb, args.a, args.k)
    curve, eval_s = [], [0.0]
    n_sub = min(4000, args.n_eval)

    def cb(trainer, it, metrics):
        k = trainer.k
        if trainer.inner == 0 and (k % args.eval_every == 0 or k == args.k):
            te = time.perf_counter()
            # P_k is compared with the profile at tau = t0 + k a (bb.log_prob / sample take t = tau - t0)
            r = symkl(trainer, bb, k * args.a, args.n_eval, args.seed + 10 * k, n_sub)
            r.update(floor_symkl(bb, k * args.a, taus[k], 400_000, args.seed + 10 * k + 5))
            r.update(k=k, t=k * args.a, tau=bb.t0 + k * args.a, tau_exact_jko=taus[k],
                     objective=metrics["objective"], entropy_exact=bb.entropy(k * args.a))
            curve.append(r)
            eval_s[0] += time.perf_counter() - te
            print(f"  d={dim} k={k:2d} SymKL={r['symkl']:.4f} (first {n_sub}: {r[f'symkl_first{n_sub}']:.4f}; "
                  f"exact-JKO floor {r['floor_symkl']:.4f}) outside: gt {r['frac_gt_outside_fit']:.4f} "
                  f"(floor {r['floor_frac_gt_outside']:.4f}), fit {r['frac_fit_outside_gt']:.4f}; radius q50/q99.9 "
                  f"ratio {r['radius_q50_ratio']:.4f}/{r['radius_q999_ratio']:.4f} "
                  f"G est {r['objective']:.3f} exact {r['entropy_exact']:.3f} [{time.perf_counter() - t0:.0f}s]",
                  flush=True)

    t0 = time.perf_counter()
    tr.fit(None, tr.total_iters, callback=cb, log_every=10**9)
    total_s = time.perf_counter() - t0
    worst = max(c["symkl"] for c in curve)
    print(f"d={dim}  max SymKL over k <= {args.k}: {worst:.4f}  ({total_s:.0f}s, of which evaluation "
          f"{eval_s[0]:.0f}s)", flush=True)
    return {"dim": dim, "symkl_max": worst, "symkl_final": curve[-1]["symkl"],
            "floor_symkl_max": max(c["floor_symkl"] for c in curve), "seconds": round(total_s, 1),
            "seconds_eval": round(eval_s[0], 1), "curve": curve, "config": tr.config.to_dict()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--a", type=float, default=5e-4)
    p.add_argument("--t0", type=float, default=1e-3)
    p.add_argument("--k", type=int, default=50)
    # 002 F.5: J1 = 1000, M = 1024, lr 1e-3. J1 = 80 / M = 512 (the old defaults) left the
    # first step 1.2 % short of the exact JKO dilation and P_k ~1 % under-spread throughout,
    # on top of the 1-1.5 % implicit-Euler lag of the exact scheme (see jko_exact_taus).
    p.add_argument("--j1", type=int, default=400)
    p.add_argument("--j3", type=int, default=1)
    # 002 F.5 uses M = 1024. With 1024 the estimate of G(P) = E[P] from the uniform Gamma box is
    # noisy in d = 3 (a ball fills ~1/5 of its enlarged bounding box) and the first steps stop
    # ~2 % short of the Barenblatt radius (SymKL 0.13-0.55 at k = 10); 4096 brings G's estimate
    # to within 1 % and every evaluation below 0.1 (probes of the README settings).
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--particles", type=int, default=10_000)
    p.add_argument("--map-width", type=int, default=32)
    # 002 runs J1 = 1000 iterations per step at lr 1e-3; with 400 iterations lr 1e-3 leaves
    # the first steps 1-2 % short of the exact JKO step (measured), lr 5e-3 reaches it.
    p.add_argument("--h-activation", default="celu", help="activation of the dual h (002: CELU)")
    p.add_argument("--h-width", type=int, default=16)
    p.add_argument("--h-depth", type=int, default=3)
    p.add_argument("--lr-map", type=float, default=5e-3)
    p.add_argument("--lr-h", type=float, default=5e-3)
    # the floored estimator counts Barenblatt samples outside the fitted support (103.6/n each):
    # at n = 4000 that is a Poisson count with mean ~2-4, so 20 000 samples; the SymKL on the
    # first 4000 of them is recorded too.
    p.add_argument("--n-eval", type=int, default=20_000)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="porous")
    args = p.parse_args()
    setup()
    res = [run(d, args) for d in args.dims]
    path = write_json(args.out, {"experiment": "porous medium m=2, paper 002 §5.4",
                                 "target": "SymKL to the Barenblatt profile < 0.1 over 50 steps",
                                 "results": res})
    print("wrote", path)


if __name__ == "__main__":
    main()

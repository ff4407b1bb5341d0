"""Reproduce paper 003 on 2-D toys: noisy vs noise-free vs self-adversarial EBM training.

For each data set (swissroll, grid9) and each variant (noisy / noise-free /
self-adv) this trains an energy with :class:`ebmfast.trainers.SelfAdversarialTrainer`
and reports, on held-out data:

- MMD^2 of the generator's samples vs data, as a multiple of the two-sample
  noise floor (``ebmfast.evaluators.mmd_vs_floor``; same sizes, fixed median
  bandwidth);
- the flow's held-out log-likelihood in nats (003 eq. 6: reverse dopri5 ODE,
  exact Hessian trace), next to a reference: the true mixture density for
  grid9, a cross-validated Gaussian KDE fitted on the training set for swissroll;
- MMD between the Euler-chain samples and the ODE samples of the same
  energy (is the likelihood's flow the same generator?).

Data scale (ebmfast.data.toys): grid9 = 3x3 Gaussians at {-2,0,2}^2, std 0.2;
swissroll = sklearn make_swiss_roll(noise=0.5), (x, z) / 3.5 (about [-3, 4]^2).
Log-likelihoods are per 2-D point, in nats, in these coordinates.

Usage (CPU, about 1-2 min per variant and data set with the defaults)::

    PYTHONPATH=. python examples/self_adversarial/run_toys.py --out examples/self_adversarial/results
    PYTHONPATH=. python examples/self_adversarial/run_toys.py --datasets grid9 --variants self-adv --iters 200
"""
from __future__ import annotations

import json
import math
import time

import torch

from ebmfast.core.io import atomic_write_text
from ebmfast.data import get_mixture, load_dataset
from ebmfast.evaluators import mmd2, mmd_vs_floor
from ebmfast.runs.study import markdown_table, study_dir, study_parser, write_json
from ebmfast.trainers import DivergenceError
from ebmfast.trainers.self_adversarial import SelfAdversarialTrainer

try:  # run as a script (sys.path[0] is this folder) or imported as examples.self_adversarial.run_toys
    from alternating import AlternatingSelfAdversarialTrainer
except ImportError:  # pragma: no cover
    from examples.self_adversarial.alternating import AlternatingSelfAdversarialTrainer

# fixed RBF bandwidths (summed kernels) for every MMD here: the median heuristic (about 3.5 on
# swissroll) is blind to the roll's structure; 0.1 resolves the 0.14-0.2 wide arms and modes.
BANDWIDTHS = [0.1, 0.25, 0.5, 1.0, 2.0]


def kde_reference(train: torch.Tensor, test: torch.Tensor, seed: int = 0) -> dict:
    """Held-out log-likelihood of a Gaussian KDE with the bandwidth chosen by 5-fold CV on train."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KernelDensity

    grid = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": torch.logspace(-1.7, -0.3, 12).tolist()},
                        cv=5)
    grid.fit(train[:4000].numpy())
    kde = grid.best_estimator_
    return {"kde_bandwidth": float(kde.bandwidth), "kde_test_ll": float(kde.score_samples(test.numpy()).mean())}


def parse_variant(spec: str) -> dict:
    """'noisy' | 'noise-free' | 'self-adv' | 'self-adv@W' (generator term weight W instead of 1) |
    'self-adv-alt' (alternating critic / generator Adam steps, alternating.py)."""
    if spec == "self-adv-alt":
        return {"variant": "self-adv"}
    if spec.startswith("self-adv@"):
        return {"variant": "self-adv", "gen_weight": float(spec.split("@", 1)[1])}
    return {"variant": spec}


def run_one(dataset: str, spec: str, args) -> dict:
    train = load_dataset(dataset, n=args.n_train, seed=args.seed)
    test = load_dataset(dataset, n=args.n_test, seed=args.seed + 1000)
    cfg = {**parse_variant(spec), "hidden": args.hidden, "n_layers": 5, "n_steps": args.K, "eta": args.eta,
           "lr": args.lr, "sampler": args.sampler, "ode_T": args.K * args.eta / 2, "ode_method": args.ode_method}
    if cfg["variant"] == "noisy" and args.noise is not None:
        cfg["noise_scale"] = args.noise
    cls = AlternatingSelfAdversarialTrainer if spec == "self-adv-alt" else SelfAdversarialTrainer
    tr = cls(cfg, dim=2, seed=args.seed)
    n_eval = args.n_eval
    ref = test[: 2 * n_eval]
    # MMD of the chain's samples at --eval-fracs of training (default 60/70/80/90/100%, i.e. the last
    # 40%): the self-adversarial game oscillates, so one final snapshot is a noisy summary; the mean
    # over these points is reported next to it.
    eval_at = sorted({max(1, int(round(f * args.iters))) for f in args.eval_fracs})
    trace = []
    eval_s = [0.0]

    def cb(trainer, it, metrics):
        if it + 1 in eval_at:
            te = time.perf_counter()
            with torch.random.fork_rng():
                torch.manual_seed(args.seed + 7)
                x = trainer.sample(n_eval)
            trace.append({"it": it + 1, "ratio": mmd_vs_floor(x, ref, bandwidth=BANDWIDTHS, seed=args.seed)["ratio"],
                          "e_data": metrics["e_data"], "e_sample": metrics["e_sample"]})
            eval_s[0] += time.perf_counter() - te

    t0 = time.perf_counter()
    diverged = None
    try:
        # max_abs_energy=None: runaway (finite) energies are part of what this study measures, so the
        # run goes on and the aggregate counts it as blown up (|E| > 1e4) instead of stopping it
        fit = tr.fit(train, n_iters=args.iters, batch_size=args.batch, log_every=max(1, args.iters // 10),
                     callback=cb, max_abs_energy=None)
    except DivergenceError as e:  # non-finite loss/parameters: record it, the remaining MMD points are missing
        diverged = str(e)
        fit = {"metrics": {}}
    train_s = time.perf_counter() - t0 - eval_s[0]  # training only
    if diverged is not None:
        return {"dataset": dataset, "variant": spec, "config": tr.config.to_dict(), "iters": args.iters,
                "batch": args.batch, "train_s": round(train_s, 1), "diverged": diverged, "final_metrics": {},
                "bandwidths": BANDWIDTHS, "mmd_trace": trace, "mmd_chain": {"ratio": float("nan")},
                "mmd_ratio_mean_last": float("nan")}

    torch.manual_seed(args.seed + 7)
    x_chain = tr.sample(n_eval)
    res = {"dataset": dataset, "variant": spec, "config": tr.config.to_dict(), "iters": args.iters,
           "batch": args.batch, "train_s": round(train_s, 1), "flow_time": tr.config.flow_time,
           "final_metrics": fit["metrics"], "bandwidths": BANDWIDTHS, "mmd_trace": trace,
           "mmd_ratio_mean_last": sum(r["ratio"] for r in trace) / len(trace)}
    m = mmd_vs_floor(x_chain, ref, bandwidth=BANDWIDTHS, seed=args.seed)
    res["mmd_chain"] = {k: m[k] for k in ("mmd2", "floor", "ratio", "n_samples", "n_data")}
    if not args.no_ll:
        t0 = time.perf_counter()
        # dopri5 at tol (003's solver); energies trained with noise can make the flow so stiff that
        # dopri5 stalls (hours for 200 points), so it gets a step budget and rk4 with many fixed
        # steps is the fallback. The solver used is recorded.
        solvers = [dict(method="dopri5", rtol=args.tol, atol=args.tol, max_num_steps=args.max_ode_steps),
                   dict(method="rk4", n_steps=args.fallback_steps)]
        for solver in solvers:
            try:
                torch.manual_seed(args.seed + 8)
                x_ode = tr.sample_ode(n_eval, **solver)
                ll = tr.log_likelihood(test[: args.n_ll], batch_size=1000, **solver)
                res["ode_solver"] = solver
                break
            except RuntimeError as e:
                res.setdefault("ode_failures", []).append(f"{solver['method']}: {e}")
        m2 = mmd_vs_floor(x_ode, ref, bandwidth=BANDWIDTHS, seed=args.seed)
        res["mmd_ode"] = {k: m2[k] for k in ("mmd2", "floor", "ratio")}
        res["mmd2_chain_vs_ode_over_floor"] = mmd2(x_chain, x_ode, bandwidth=BANDWIDTHS) / m["floor"]
        res["test_ll"] = float(ll.mean())
        res["test_ll_se"] = float(ll.std() / math.sqrt(ll.numel()))
        res["test_ll_finite_frac"] = float(torch.isfinite(ll).float().mean())
        res["eval_s"] = round(time.perf_counter() - t0, 1)
    return res


def main() -> None:
    p = study_parser(__doc__, out_help="directory for results.json / .md (default: none written)")
    p.add_argument("--datasets", nargs="+", default=["swissroll", "grid9"])
    p.add_argument("--variants", nargs="+", default=["noisy", "noise-free", "self-adv", "self-adv@0.1"],
                   help="noisy | noise-free | self-adv | self-adv@W (generator term weight W; eq. 12 is W=1)")
    p.add_argument("--iters", type=int, default=1000, help="003 uses 3000; reduced for CPU time")
    p.add_argument("--batch", type=int, default=256, help="003 uses 800; reduced for CPU time")
    p.add_argument("--hidden", type=int, default=128, help="003 uses 256; reduced for CPU time")
    p.add_argument("--K", type=int, default=10, help="chain steps")
    p.add_argument("--eta", type=float, default=0.04, help="x <- x - eta/2 grad E; K*eta/2 = flow time")
    p.add_argument("--sampler", default="euler", choices=["euler", "ode"],
                   help="euler: K-step chain (eq. 7); ode: torchdiffeq solve on [0, K*eta/2] (003 toys: dopri5)")
    p.add_argument("--ode-method", default="dopri5", help="solver for --sampler ode (fixed-step ones use K steps)")
    p.add_argument("--tag", default="", help="suffix of the result files (results<tag>.json/.md)")
    p.add_argument("--noise", type=float, default=None, help="noisy variant noise std (default sqrt(eta))")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--n-eval", type=int, default=2000, help="samples for MMD")
    p.add_argument("--n-ll", type=int, default=2000, help="held-out points for the log-likelihood")
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--max-ode-steps", type=int, default=500, help="dopri5 step budget per solve")
    p.add_argument("--fallback-steps", type=int, default=200, help="rk4 steps when dopri5 runs out")
    p.add_argument("--no-ll", action="store_true")
    p.add_argument("--eval-fracs", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9, 1.0],
                   help="fractions of training at which the MMD is taken and averaged (before 2026-11-22 "
                        "the README's tables used 0.7 0.8 0.9 1.0)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    results = []
    refs = {}
    for ds in args.datasets:
        train = load_dataset(ds, n=args.n_train, seed=args.seed)
        test = load_dataset(ds, n=args.n_test, seed=args.seed + 1000)
        ref = kde_reference(train, test[: args.n_ll], seed=args.seed)
        if ds in ("grid9", "ring8", "grid25"):
            ref["true_test_ll"] = float(get_mixture(ds).log_prob(test[: args.n_ll]).mean())
        refs[ds] = ref
        print(json.dumps({"dataset": ds, **ref}), flush=True)
        for v in args.variants:
            r = run_one(ds, v, args)
            r["reference"] = ref
            results.append(r)
            print(json.dumps({k: r[k] for k in r if k not in ("config", "final_metrics")}), flush=True)

    if args.out:
        out = study_dir(__file__, args)
        write_json(out / f"results{args.tag}.json", {"args": vars(args), "results": results}, indent=1)
        rows = []
        for r in results:
            ref = r["reference"]
            ref_s = (f"true {ref['true_test_ll']:.3f}; " if "true_test_ll" in ref else "") + \
                f"KDE {ref['kde_test_ll']:.3f}"
            ll = f"{r['test_ll']:.3f} ± {r['test_ll_se']:.3f}" if "test_ll" in r else "-"
            if r.get("ode_solver", {}).get("method") == "rk4":
                ll += f" (rk4 x{r['ode_solver']['n_steps']})"
            ode = f"{r['mmd_ode']['ratio']:.1f}" if "mmd_ode" in r else "-"
            cvo = f"{r['mmd2_chain_vs_ode_over_floor']:.1f}" if "mmd2_chain_vs_ode_over_floor" in r else "-"
            rows.append([r["dataset"], r["variant"], f"{r['mmd_chain']['ratio']:.1f} ({r['mmd_ratio_mean_last']:.1f})",
                         ode, cvo, ll, ref_s, r["train_s"]])
        lines = markdown_table(["data", "variant", "MMD/floor final (mean at eval-fracs)", "MMD/floor ODE",
                                "chain-vs-ODE MMD/floor", "test LL (nats)", "reference LL", "train s"], rows)
        atomic_write_text(out / f"results{args.tag}.md", "\n".join(lines) + "\n")
        print("\n".join(lines))


if __name__ == "__main__":
    main()

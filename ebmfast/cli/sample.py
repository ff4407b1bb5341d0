"""``ebmfast sample --run DIR -n N [--steps K] --out FILE``: draw samples from a trained run.

Without ``--steps`` the method's own ``sample(n)`` is used (the persistent particles
for MLE / OT-EBM / w-GCN, so n is at most their number; the generator for self-adv;
P0 pushed through every map for JKO). ``--steps K`` draws n fresh chains of K steps
of the method's sampler instead (JKO: the first K maps). FILE: ``.npy`` / ``.pt``
([n, D], data coordinates) or ``.png`` (an image grid with --image-shape runs, a
scatter over the data for D = 2, a principal-component view otherwise).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..runs.spec import SpecError, parse_value

__all__ = ["add_parser", "run"]

SUFFIXES = (".npy", ".pt", ".png")


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="draw samples from a trained run (.npy, .pt or .png)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="DIR", help="run directory of ebmfast train")
    p.add_argument("-n", "--n", dest="n", required=True, metavar="N", help="number of samples")
    p.add_argument("--steps", default=None, metavar="K", help="fresh chains of K sampler steps")
    p.add_argument("--out", required=True, metavar="FILE", help="output file: .npy, .pt or .png")
    p.add_argument("--seed", default="0", metavar="S", help="seed of the draw (default 0)")
    p.add_argument("--checkpoint", choices=("last", "best"), default="last", help="which checkpoint (default last)")
    p.set_defaults(func=run)


def _pos_int(name: str, text, lo: int) -> int:
    v = parse_value(str(text))
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise SpecError(f"{name} must be an int >= {lo}, got {text!r}")
    return v


def run(args) -> int:
    from ..runs import isolated_rng, load_trained, open_run
    n = _pos_int("-n", args.n, 1)
    steps = None if args.steps is None else _pos_int("--steps", args.steps, 0)
    seed = _pos_int("--seed", args.seed, 0)
    out = Path(args.out)
    if out.suffix.lower() not in SUFFIXES:
        raise SpecError(f"--out {str(out)!r}: the file must end in {', '.join(SUFFIXES)}, got {out.suffix!r}")
    run_ = open_run(args.run, which=args.checkpoint)
    tr, data = load_trained(run_, which=args.checkpoint)
    spec = run_.spec
    if steps is None:
        pool = tr.pool_size()
        if pool is not None and n > pool:
            raise SpecError(f"-n {n} > the run's {pool} particles ({tr.sample_pool_key(tr.config)}); "
                            f"ask for at most {pool}, or pass --steps K to draw fresh chains of K steps")
    elif not tr.has_chain:
        raise SpecError(f"--steps: method {tr.name!r} has no step-by-step chain; sample without --steps")
    with isolated_rng(seed), torch.no_grad():
        if steps is None:
            x = tr.sample(n)
        else:
            try:
                x = tr.fresh_chain(n, steps)
            except ValueError as e:  # e.g. more JKO steps than the run has finished
                raise SpecError(f"--steps {steps}: {e}") from e
    x = x.detach().to("cpu", torch.float32).reshape(x.shape[0], -1) / spec.data_scale
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        from ..runs.io import atomic_save_npy
        atomic_save_npy(out, x.numpy())
    elif suffix == ".pt":
        torch.save(x, out)
    else:
        from .. import plotting as P
        title = f"{tr.name}: {n} samples" + (f" ({steps} steps)" if steps is not None else "")
        if spec.image_shape is not None:
            P.image_grid(x[:256], spec.image_shape, out, title=title)
        else:
            ref = data.train if data is not None else x
            P.data_vs_samples(ref, x, out, title=title)
    print(f"wrote {out} ({x.shape[0]} x {x.shape[1]}; {tr.name}, iteration {tr.iteration}"
          + (f", {steps} fresh steps" if steps is not None else "") + ")", file=sys.stderr)
    return 0

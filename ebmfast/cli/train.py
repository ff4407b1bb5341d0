"""``ebmfast train``: train one method on one data set into a run directory (or resume one).

Every option is validated before anything is created or trained: unknown method or
data name (the valid ones are listed), a data file with the wrong shape or NaNs, an
unknown config key, a wrong type or an out-of-range value: exit code 2 with a
message that names the key and its allowed range. ``ebmfast train`` with no
``--method`` runs the demo (OT-EBM vs MLE side by side, see ``ebmfast demo``).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from ..runs.spec import (DEFAULT_ITERS, RUN_KEYS, RunConfig, SpecError, build_run_config, build_trainer_config,
                         load_config_file, parse_set_args, parse_value, split_file_config)

__all__ = ["add_parser", "run", "add_run_flags", "collect_run_flags"]

#: flags of run options handled specially (booleans)
_BOOL_FLAGS = {"tensorboard": ("--tensorboard", True), "figures": ("--no-figures", False)}
#: run options that --resume may change
RESUME_OK = ("iters", "threads", "figures", "fig_every", "on_divergence", "max_rollbacks", "max_abs_energy")


def _field_help(name: str) -> str:
    f = {f.name: f for f in dataclasses.fields(RunConfig)}[name]
    m = f.metadata["ebmfast"]
    rng = ""
    if m.get("choices"):
        rng = f" {{{','.join(m['choices'])}}}"
    elif any(m.get(k) is not None for k in ("gt", "ge", "lt", "le")):
        from ..trainers.config import range_text
        rng = f" range {range_text(m)}"
    default = "" if f.default is None else f" (default {f.default})"
    return f"{m.get('doc', '')}{rng}{default}"


def add_run_flags(p: argparse.ArgumentParser, skip: tuple = ()) -> None:
    """One flag per RunConfig field (values are parsed and validated later, so errors name the range)."""
    for f in dataclasses.fields(RunConfig):
        if f.name in skip:
            continue
        if f.name in _BOOL_FLAGS:
            flag, const = _BOOL_FLAGS[f.name]
            p.add_argument(flag, dest=f.name, action="store_const", const=const, default=None,
                           help=_field_help(f.name))
            continue
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, metavar="V",
                       help=_field_help(f.name))


def collect_run_flags(args: argparse.Namespace) -> dict:
    """Run options given on the command line, parsed (strings kept for str fields)."""
    out = {}
    kinds = {f.name: f.metadata["ebmfast"]["kind"] for f in dataclasses.fields(RunConfig)}
    for k in RUN_KEYS:
        v = getattr(args, k, None)
        if v is None:
            continue
        out[k] = v if (kinds[k] is str or isinstance(v, bool)) else parse_value(v)
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a method on a data set (no --method: the OT-EBM vs MLE demo)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML or YAML file: run options + a [trainer] table")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="a hyper-parameter of the method (repeatable); see --list-options")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/<method>-<data>-<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("-q", "--quiet", action="store_true", help="plain log lines instead of a progress bar")
    p.add_argument("--list-options", action="store_true", help="print the method's hyper-parameters and exit")
    p.add_argument("--methods", metavar="A,B", help="(demo mode, no --method) methods to compare")
    p.add_argument("--jobs", metavar="N", help="(demo mode) methods trained in parallel processes")
    add_run_flags(p)
    p.set_defaults(func=run)


def _get_trainer(name: str):
    from ..trainers import get_trainer
    try:
        return get_trainer(name)
    except (ValueError, TypeError) as e:
        raise SpecError(f"--method {name!r}: {e}") from e


def _default_out(spec: RunConfig) -> Path:
    data = Path(spec.data).stem if spec.data else (spec.target or "nodata").replace(":", "_")
    return Path("runs") / f"{spec.method}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_trainer(cls, spec: RunConfig, file_trainer: dict, sets: dict):
    """(validated trainer config, presets applied by the CLI). See module docstring of ebmfast.runs.spec."""
    user = {**file_trainer, **sets}
    presets = dict(cls.cli_presets(user, has_data=spec.data is not None, has_target=spec.target is not None))
    cfg = build_trainer_config(cls, {**presets, **user})
    key = cls.sample_pool_key(cfg)
    if key is not None and getattr(cfg, key) < spec.n_samples:
        if key in user:
            raise SpecError(f"{cls.name} option {key}={getattr(cfg, key)} is smaller than --n-samples "
                            f"{spec.n_samples}: sample(n) returns the {key} particles. Raise {key}, lower "
                            "--n-samples, or set sample_steps > 0 (fresh chains)")
        presets[key] = spec.n_samples  # the particles are the samples: keep n_samples of them
        cfg = build_trainer_config(cls, {**presets, **user})
    return cfg, presets


def check_environment(spec: RunConfig, dim: int) -> None:
    """Device, backend, threads, TensorBoard, image shape: all checked before a run starts."""
    import math

    import torch
    try:
        dev = torch.device(spec.device)
    except (RuntimeError, TypeError) as e:
        raise SpecError(f"device (--device) {spec.device!r} is not a torch device: {e}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"device (--device) {spec.device!r}: CUDA is not available here; use --device cpu")
    from ..ops import _dispatch
    from ..runs.rundir import torch_dtype
    if spec.backend != "auto":
        try:
            _dispatch.choose("langevin_step", dev, torch_dtype(spec.dtype), spec.backend)
        except (ValueError, RuntimeError) as e:
            raise SpecError(f"backend (--backend) {spec.backend!r}: {e}") from e
    if spec.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError as e:
            raise SpecError("--tensorboard needs the tensorboard package (pip install tensorboard); "
                            f"it is not importable here ({e})") from e
    if spec.image_shape is not None and math.prod(spec.image_shape) != dim:
        raise SpecError(f"image_shape (--image-shape) {','.join(map(str, spec.image_shape))} has "
                        f"{math.prod(spec.image_shape)} values per image, but the data has D = {dim}")


def set_threads(spec: RunConfig, dim: int) -> int:
    """torch threads: --threads, else 1 for small problems (D <= 16: thread hand-offs cost more than
    they save on a toy MLP, 10-15x slower on a busy 2-core machine), else torch's default."""
    import torch
    n = spec.threads or (1 if dim <= 16 else None)
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def prepare(args, run_values: dict, file_trainer: dict, sets: dict):
    """Everything up to (not including) creating the run directory. Returns (runner, record, presets)."""
    from ..runs import Runner
    from ..runs.data import load_run_data
    from ..runs.loop import resolve_cadence
    from ..runs.rundir import prepare_run_dir
    spec = build_run_config(run_values)
    cls = _get_trainer(spec.method)
    cfg, presets = resolve_trainer(cls, spec, file_trainer, sets)
    data = None
    if spec.data is not None:
        data = load_run_data(spec.data, spec.n_data, spec.seed if spec.data_seed is None else spec.data_seed)
        dim = data.dim
        if spec.dim is not None and spec.dim != dim:
            raise SpecError(f"dim (--dim) {spec.dim} does not match the data's D = {dim}")
    elif spec.target is not None:
        if spec.dim is None:
            raise SpecError("--dim is required with --target and no --data")
        dim = spec.dim
    else:
        raise SpecError("--data is required: a data set name (e.g. grid9, ring8, swissroll) or a .npy/.pt "
                        "file of shape [N, D]")
    iters = spec.iters
    limit = cls.iteration_limit(cfg)
    if limit is not None:
        if iters is None:
            iters = limit[0]
        elif iters > limit[0]:
            raise SpecError(f"iters (--iters) {iters} exceeds {limit[1]}; lengthen it (--set) or lower --iters")
    spec = dataclasses.replace(spec, iters=iters or DEFAULT_ITERS)
    spec = dataclasses.replace(spec, **resolve_cadence(spec, spec.iters)).validate()
    check_environment(spec, dim)
    threads = set_threads(spec, dim)
    out = Path(args.out) if getattr(args, "out", None) else _default_out(spec)
    paths = prepare_run_dir(out, overwrite=getattr(args, "overwrite", False))
    try:
        runner = Runner(paths, spec, cls, cfg, data, dim, quiet=getattr(args, "quiet", False))
    except (ValueError, TypeError) as e:  # the trainer's own checks (e.g. jko 'kl' without a target)
        raise SpecError(f"{cls.name}: {e}") from e
    if data is None and runner.trainer.requires_data:
        raise SpecError(f"method {cls.name!r} with these options needs --data")
    record = _record(spec, cls, runner.trainer.config, presets, data, dim, threads)
    return runner, record, presets


def _record(spec, cls, cfg, presets, data, dim, threads) -> dict:
    import platform

    import torch

    from .. import __version__
    return {
        "ebmfast_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": ["ebmfast", *sys.argv[1:]] if sys.argv and "ebmfast" in sys.argv[0] else None,
        "method": cls.name, "run": spec.to_dict(), "trainer": cfg.to_dict(), "trainer_config_class": type(cfg).__name__,
        "presets": presets, "data": data.describe() if data is not None else None, "dim": dim,
        "torch": torch.__version__, "python": platform.python_version(), "threads": threads, "rollbacks": [],
    }


def run(args) -> int:
    if args.list_options:
        if not args.method:
            from ..trainers import available_trainers
            raise SpecError(f"--list-options needs --method; methods: {', '.join(available_trainers())}")
        from ..runs.methods import describe_config
        print(describe_config(_get_trainer(args.method)))
        return 0
    if args.resume:
        return _resume(args)
    file_run, file_trainer = ({}, {})
    if args.config:
        file_run, file_trainer = split_file_config(load_config_file(args.config), f"--config {args.config}")
    run_values = {**file_run, **collect_run_flags(args)}
    sets = parse_set_args(args.set)
    if run_values.get("method") is None:
        if sets or file_trainer:
            raise SpecError("--set / a [trainer] table need --method (without --method, train runs the demo, "
                            "which trains several methods)")
        from . import demo
        return demo.run_demo(args, run_values)
    if args.methods or args.jobs:
        raise SpecError("--methods/--jobs are demo options; they cannot be combined with --method")
    runner, record, presets = prepare(args, run_values, file_trainer, sets)
    return execute(runner, record, presets, args)


def execute(runner, record: dict, presets: dict, args) -> int:
    from ..runs.io import atomic_write_json
    from ..runs.rundir import create_run_dir
    create_run_dir(runner.paths, overwrite=getattr(args, "overwrite", False))
    atomic_write_json(runner.paths.config, record)
    say = print
    spec = runner.spec
    if presets and not args.quiet:
        say("note: set by the CLI (override with --set): "
            + ", ".join(f"{k}={v}" for k, v in presets.items()), file=sys.stderr)
    say(f"training {runner.cls.name} on {spec.data or spec.target} (D={runner.dim}) for {spec.iters} iterations "
        f"into {runner.paths.root}", file=sys.stderr)
    return _train_and_report(runner)


def _train_and_report(runner) -> int:
    from ..runs.loop import RunDiverged, RunInterrupted
    from .exit_codes import EXIT_DIVERGED, EXIT_INTERRUPTED
    try:
        final = runner.train()
    except RunDiverged as e:
        print(f"ebmfast train: error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except RunInterrupted as e:
        print(f"ebmfast train: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(runner.summary(final))
    print(f"wrote {runner.paths.root}/: config.json metrics.jsonl final.json samples.npy ckpt/"
          + (" best/" if runner.best else "") + (" figures/" if runner.spec.figures else ""))
    return 0


def _resume(args) -> int:
    from ..runs import Runner
    from ..runs.data import load_run_data
    from ..runs.io import atomic_write_json, read_json
    from ..runs.rundir import RunPaths, read_run_config
    rec = read_run_config(args.resume)
    flags = collect_run_flags(args)
    bad = sorted(k for k in flags if k not in RESUME_OK)
    if bad or args.set or args.config or args.out or args.overwrite:
        what = [f"--{k.replace('_', '-')}" for k in bad] + (["--set"] if args.set else []) + \
            (["--config"] if args.config else []) + (["--out"] if args.out else []) + \
            (["--overwrite"] if args.overwrite else [])
        raise SpecError(f"--resume continues the run with the options in {args.resume}/config.json; "
                        f"{', '.join(what)} cannot change them (allowed with --resume: "
                        + ", ".join("--" + k.replace("_", "-") for k in RESUME_OK) + ")")
    run_values = dict(rec["run"])
    run_values.update(flags)
    spec = build_run_config(run_values)
    cls = _get_trainer(spec.method)
    cfg = build_trainer_config(cls, rec["trainer"])
    data = None
    if spec.data is not None:
        data = load_run_data(spec.data, spec.n_data, spec.seed if spec.data_seed is None else spec.data_seed,
                             expect_sha256=(rec.get("data") or {}).get("sha256"))
    dim = data.dim if data is not None else int(rec["dim"])
    limit = cls.iteration_limit(cfg)
    if limit is not None and spec.iters > limit[0]:
        raise SpecError(f"iters (--iters) {spec.iters} exceeds {limit[1]}")
    check_environment(spec, dim)
    set_threads(spec, dim)
    paths = RunPaths(Path(args.resume))
    runner = Runner(paths, spec, cls, cfg, data, dim, quiet=args.quiet)
    it = runner.restore()
    if runner.trainer.iteration > spec.iters:
        raise SpecError(f"iters (--iters) {spec.iters} is below the {runner.trainer.iteration} iterations the run "
                        "has already done")
    if flags:
        record = read_json(paths.config)
        record["run"] = spec.to_dict()
        atomic_write_json(paths.config, record)
    if runner.trainer.iteration >= spec.iters and paths.final.is_file() and paths.samples.is_file():
        final = read_json(paths.final)
        if final.get("iterations") == runner.trainer.iteration:
            print(f"run {paths.root} is already complete ({runner.trainer.iteration} iterations); "
                  "extend it with --resume DIR --iters N")
            print(runner.summary(final))
            return 0
    print(f"resuming {cls.name} in {paths.root} from iteration {it or 0} to {spec.iters}", file=sys.stderr)
    return _train_and_report(runner)

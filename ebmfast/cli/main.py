"""``ebmfast`` command line: train, demo, sample, eval, bench, info.

    ebmfast                      # = ebmfast demo: OT-EBM vs MLE on the 9-grid, figure + summary table
    ebmfast train --method ot-ebm --data grid9 --iters 2000 --seed 0 --out runs/ot
    ebmfast train --method mle --data my.npy --set step_size=0.5 --config opts.toml
    ebmfast train --resume runs/ot [--iters 4000]
    ebmfast sample --run runs/ot -n 5000 --out x.npy          (.npy, .pt or .png)
    ebmfast eval --run runs/ot --metrics mmd,modes,w2
    ebmfast bench --quick
    ebmfast info

Exit codes: 0 ok; 1 a failure at run time (e.g. a benchmark script failed);
2 bad input (unknown method / data / key, value out of range, existing run
directory...) reported before anything runs; 3 training diverged; 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Sequence

from ..runs.spec import SpecError
from .exit_codes import EXIT_DIVERGED, EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAIL", "EXIT_USAGE", "EXIT_DIVERGED", "EXIT_INTERRUPTED"]


def build_parser() -> argparse.ArgumentParser:
    from . import bench, demo, evaluate, info, sample, train
    p = argparse.ArgumentParser(prog="ebmfast", description="ebmfast: energy-based models and Wasserstein gradient flows.",
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Run `ebmfast <command> -h` for the options of a command. With no command: ebmfast demo.")
    sub = p.add_subparsers(dest="command", metavar="{train,demo,sample,eval,bench,info}")
    for mod in (train, demo, sample, evaluate, bench, info):
        mod.add_parser(sub)
    return p


def _on_sigterm(signum, frame):  # noqa: ARG001
    # SIGTERM (kill, CI timeouts) ends a run like Ctrl-C: logs closed, resume hint printed
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ebmfast`` / ``python -m ebmfast``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:tqdm")
    parser = build_parser()
    if not argv:
        argv = ["demo"]
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo", *argv])
    try:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (e.g. called from a test thread)
        old = None
    try:
        return int(args.func(args) or 0)
    except SpecError as e:
        print(f"ebmfast {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"ebmfast {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    raise SystemExit(main())

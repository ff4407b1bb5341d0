"""Fixtures of the CLI tests (helpers: _cli.py)."""
from __future__ import annotations

import pytest
import torch

from _cli import TINY, cli


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="package")
def run2d(tmp_path_factory):
    """One finished OT-EBM run on ring8 with periodic figures, evaluations and checkpoints."""
    out = tmp_path_factory.mktemp("run2d") / "ot"
    p = cli("train", "--method", "ot-ebm", "--data", "ring8", "--iters", 12, "--seed", 1, "--out", out,
            *TINY["ot-ebm"], "--fig-every", 6, "--eval-every", 4, "--ckpt-every", 3, "--keep-last", 2,
            "--log-every", 2, check_rc=0)
    return out, p

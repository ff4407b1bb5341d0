"""Run-level helpers that work for every trainer through its public interface.

Per-method facts (sample pool, step sizes, learned energy, sampling chain) are class
attributes and methods of the trainers (see ``ebmfast.trainers.base.Trainer``); this module
holds no per-method table, so a newly registered trainer works with every command.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["halve_step_sizes", "total_grad_norm", "weight_modules", "describe_config"]


def halve_step_sizes(cls: type, config) -> tuple[dict, dict]:
    """(new config dict, {key: (old, new)}) with every step size of trainer class ``cls`` halved."""
    d = config.to_dict()
    changed = {}
    for k in cls.step_sizes(config):
        old = getattr(config, k)
        d[k] = old * 0.5
        changed[k] = (old, d[k])
    return d, changed


def weight_modules(trainer) -> dict[str, nn.Module]:
    """Modules whose per-layer spectral / gradient norms are tracked (every module of the trainer)."""
    return dict(trainer.modules())


@torch.no_grad()
def total_grad_norm(trainer) -> float:
    """L2 norm of every parameter gradient left by the last step (0 when there is none)."""
    sq = 0.0
    for p in trainer.parameters():
        if p.grad is not None:
            sq += float(p.grad.detach().float().pow(2).sum())
    return sq ** 0.5


def describe_config(cls) -> str:
    """``--list-options`` text of a trainer class."""
    return f"options of method {cls.name!r} ({cls.Config.__name__}; set with --set key=value):\n" + \
        "\n".join("  " + ln for ln in cls.Config.describe().splitlines())

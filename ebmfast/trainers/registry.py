"""The trainer registry: one dict, written out (no import-time discovery).

    TRAINERS["ot-ebm"]            # -> OTEBMTrainer
    get_trainer("ot-ebm")         # the same, with an error that lists the valid names
    register_trainer(MyTrainer)   # add a trainer defined elsewhere (also usable as a decorator)
"""
from __future__ import annotations

import dataclasses

from .base import Trainer
from .config import TrainerConfig
from .jko import JKOTrainer
from .mle import MLETrainer
from .ot_ebm import OTEBMTrainer
from .self_adversarial import SelfAdversarialTrainer
from .vpfb import VPFBTrainer
from .wgcn import WGCNTrainer

__all__ = ["TRAINERS", "register_trainer", "get_trainer", "available_trainers"]

TRAINERS: dict[str, type[Trainer]] = {
    "mle": MLETrainer,
    "ot-ebm": OTEBMTrainer,
    "w-gcn": WGCNTrainer,
    "self-adv": SelfAdversarialTrainer,
    "jko": JKOTrainer,
    "vpfb": VPFBTrainer,
}


def register_trainer(cls: type) -> type:
    """Add a :class:`Trainer` subclass to ``TRAINERS`` under ``cls.name``; returns ``cls``.

    Raises:
        TypeError / ValueError when ``cls`` is not a Trainer with a name and a dataclass Config,
        or when another class already holds the name.
    """
    if not (isinstance(cls, type) and issubclass(cls, Trainer)):
        raise TypeError(f"register_trainer expects a Trainer subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__}.name must be a non-empty str, got {name!r}")
    cfg = getattr(cls, "Config", None)
    if not (isinstance(cfg, type) and issubclass(cfg, TrainerConfig) and dataclasses.is_dataclass(cfg)):
        raise TypeError(f"{cls.__name__}.Config must be a @dataclass subclass of TrainerConfig, got {cfg!r}")
    old = TRAINERS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"trainer name {name!r} already registered by {old.__module__}.{old.__qualname__}")
    TRAINERS[name] = cls
    return cls


def available_trainers() -> list[str]:
    """Sorted names of every registered trainer."""
    return sorted(TRAINERS)


def get_trainer(name: str) -> type[Trainer]:
    """The trainer class registered as ``name`` (e.g. "mle", "ot-ebm", "w-gcn").

    Raises:
        ValueError listing the valid names.
    """
    if not isinstance(name, str):
        raise TypeError(f"get_trainer(name) expects a str, got {type(name).__name__}")
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}; valid names: {', '.join(sorted(TRAINERS)) or '(none)'}")
    return TRAINERS[name]

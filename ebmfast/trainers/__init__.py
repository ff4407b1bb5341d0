"""ebmfast trainers: a common :class:`Trainer` base and a name -> class registry.

    from ebmfast.trainers import get_trainer
    T = get_trainer("ot-ebm")                  # "mle", "ot-ebm", "w-gcn", "self-adv", "jko", "vpfb"
    tr = T({"tau": 20.0}, dim=2, seed=0)       # dict -> T.Config.from_dict (validated)
    tr.fit(data, n_iters=2000, batch_size=200, out_dir="runs/ot")
    x = tr.sample(500)

Modules: ``config`` (validated dataclass configs), ``base`` (Trainer and ``fit``), ``hooks``
(what ``fit`` runs each iteration: divergence guard, log, progress, checkpoints),
``checkpoint`` (atomic, pruned checkpoints), ``jsonl`` (JSON-lines logs), ``rng``,
``particles`` (what the particle-based EBM trainers share), ``registry`` (``TRAINERS``), and one
module per method. A trainer defined elsewhere joins the registry with ``register_trainer``.
"""
from .base import Trainer
from .checkpoint import Checkpointer, latest_checkpoint, load_checkpoint_files
from .config import TrainerConfig, param
from .hooks import DivergenceError, Hook
from .jko import JKOTrainer
from .mle import MLETrainer
from .ot_ebm import OTEBMTrainer
from .registry import TRAINERS, available_trainers, get_trainer, register_trainer
from .rng import seed_everything
from .self_adversarial import SelfAdversarialTrainer
from .vpfb import VPFBTrainer
from .wgcn import WGCNTrainer

__all__ = ["TRAINERS", "Checkpointer", "DivergenceError", "Hook", "Trainer", "TrainerConfig", "available_trainers",
           "get_trainer", "latest_checkpoint", "load_checkpoint_files", "param", "register_trainer",
           "seed_everything", "JKOTrainer", "MLETrainer", "OTEBMTrainer", "SelfAdversarialTrainer", "VPFBTrainer",
           "WGCNTrainer"]

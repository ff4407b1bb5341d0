"""Result types returned by samplers and chain ops."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class SampleResult:
    """Returned when a trajectory or energies are requested.

    x: [B, ...] final state. trajectory: [T, B, ...] states x_0, x_every, ... (x_0 first,
    the final state last). energies: [T, B] energies of those states. stopped_at: step at
    which a non-finite value stopped the chain (on_nonfinite="stop"), else None.
    """

    x: torch.Tensor
    trajectory: Optional[torch.Tensor] = None
    energies: Optional[torch.Tensor] = None
    stopped_at: Optional[int] = None

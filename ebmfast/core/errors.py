"""Errors raised across layers."""
from __future__ import annotations


class NonFiniteError(FloatingPointError):
    """NaN/Inf appeared in the energies or gradients of a chain (the message names the step)."""

    def __init__(self, msg: str, step: int):
        super().__init__(msg)
        self.step = step

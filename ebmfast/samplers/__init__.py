"""Samplers: a small base class, one class per file, and a name registry."""
from ..core import NonFiniteError, SampleResult
from .base import SAMPLERS, Sampler, get_sampler, register_sampler
from .functional import sample
from .gradient_descent import GradientDescent
from .langevin import Langevin
from .reference_langevin import ReferenceLangevin
from .replay_buffer import ReplayBuffer
from .second_order import SecondOrderLangevin

__all__ = [
    "SAMPLERS", "GradientDescent", "Langevin", "NonFiniteError", "ReferenceLangevin", "ReplayBuffer",
    "SampleResult", "Sampler", "SecondOrderLangevin", "get_sampler", "register_sampler", "sample",
]

"""Energy modules: [B, ...] -> [B], low energy = likely.

MLPEnergy (mlp.py) has fused kernels for sampling chains and gradient penalties; it opts in through
the `fused_mlp()` protocol method (ebmfast/ops/mlp_spec.py). ToyEnergy is MLPEnergy at the depth of
the 2-D experiments.
"""
from .mlp import MLPEnergy
from .toy import ToyEnergy

__all__ = ["MLPEnergy", "ToyEnergy"]

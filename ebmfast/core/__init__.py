"""The lowest layer of ebmfast: result types, errors and argument checks shared by every other layer.

Nothing here imports another ebmfast package, so `ops`, `energies`, `samplers`, `trainers` and the
command line can all depend on it.
"""
from .checks import (as_batch_energy, check_every, check_int, check_n_steps, check_on_nonfinite, check_scalar,
                     check_seed, check_x0, energy_values)
from .errors import NonFiniteError
from .results import SampleResult

__all__ = ["NonFiniteError", "SampleResult", "as_batch_energy", "check_every", "check_int", "check_n_steps",
           "check_on_nonfinite", "check_scalar", "check_seed", "check_x0", "energy_values"]

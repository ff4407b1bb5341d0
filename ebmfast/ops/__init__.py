"""ebmfast ops: fused kernels with a PyTorch reference beside each one.

Every op chooses its backend through one dispatcher (`_dispatch.choose`); energies opt into the
fused MLP paths with a `fused_mlp()` method returning an `MLPSpec`.
"""
from .grad_norm_penalty import grad_norm_penalty
from .langevin_step import langevin_step, langevin_step_ref, philox_normal
from .mlp_energy import mlp_energy_grad, mlp_energy_grad_backward_ref, mlp_energy_grad_ref
from .mlp_langevin_chain import mlp_langevin_chain, mlp_langevin_chain_ref
from .mlp_spec import MLPSpec, check_mlp_args
from .philox import philox_normal_ref

__all__ = ["MLPSpec", "check_mlp_args", "grad_norm_penalty", "langevin_step", "langevin_step_ref",
           "mlp_energy_grad", "mlp_energy_grad_backward_ref", "mlp_energy_grad_ref", "mlp_langevin_chain",
           "mlp_langevin_chain_ref", "philox_normal", "philox_normal_ref"]

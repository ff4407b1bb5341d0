// The backend ops are plain kernels: each public op's one autograd registration is a Python
// torch.autograd.Function (ebmfast/ops/*.py) that calls them below the Autograd key. A direct call
// of a differentiable kernel with inputs that require grad gets autograd's "not implemented" node,
// so back-propagating through it raises instead of silently returning no gradient.
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

TORCH_LIBRARY_IMPL(ebmfast, Autograd, m) {
  for (const char* op : {"langevin_step", "langevin_step_", "mlp_energy_grad", "mlp_energy_grad_backward",
                         "mlp_grad_norm_penalty", "mlp_grad_norm_penalty_backward"}) {
    m.impl(op, torch::autograd::autogradNotImplementedFallback());
  }
}

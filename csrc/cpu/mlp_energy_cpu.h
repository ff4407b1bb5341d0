// CPU implementations of the fused MLP energy ops (csrc/cpu/mlp_energy.cpp), callable from the
// other CPU ops without a trip through the dispatcher.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace ebmfast {
namespace mlpk {

// ebmfast::mlp_energy_grad: (E [B], grad_x E [B, D], saved [B, S] or empty).
std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_energy_grad_cpu(const at::Tensor& x, at::TensorList weights,
                                                                   at::TensorList biases, int64_t act, double slope,
                                                                   bool save);

// ebmfast::mlp_energy_grad_backward: (grad x, grad weights, grad biases).
std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> mlp_energy_grad_backward_cpu(
    const at::Tensor& x, at::TensorList weights, at::TensorList biases, int64_t act, double slope,
    const at::Tensor& saved, const at::Tensor& grad_e, const at::Tensor& grad_g);

}  // namespace mlpk
}  // namespace ebmfast

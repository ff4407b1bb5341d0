// Argument checks of the fused MLP ops, shared by the CPU kernels (csrc/cpu/mlp_energy.cpp) and
// the CUDA launchers (csrc/cuda/mlp_launch.h), so that every backend refuses bad input with the
// same message. Host code only.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "ebmfast/mlp_activation.h"  // kNumMLPActs

namespace ebmfast {

// x [B, D] contiguous float32/float64; weights [w_1, D], ..., [1, w_H] of x's dtype and device;
// biases empty or one per weight; act a valid activation code. The CPU kernels read the weights
// in place (contiguous_params = true); the CUDA launchers pack them first.
inline void check_mlp(const char* op, const at::Tensor& x, at::TensorList weights, at::TensorList biases, int64_t act,
                      bool contiguous_params) {
  TORCH_CHECK(x.dim() == 2, op, ": x must have shape [B, D], got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(), op, ": x must be contiguous");
  TORCH_CHECK(!weights.empty(), op, ": weights must hold at least the output layer [1, w]");
  TORCH_CHECK(biases.empty() || biases.size() == weights.size(), op, ": biases must be empty or one per weight (",
              weights.size(), "), got ", biases.size());
  TORCH_CHECK(act >= 0 && act < kNumMLPActs, op, ": act must be an activation code in [0, ", kNumMLPActs,
              "), got ", act, " (relu=0, leaky_relu=1, silu=2, softplus=3, elu=4, tanh=5, gelu=6)");
  int64_t fan_in = x.size(1);
  for (size_t i = 0; i < weights.size(); ++i) {
    const auto& w = weights[i];
    TORCH_CHECK(w.dim() == 2 && w.size(1) == fan_in, op, ": weights[", i, "] must have shape [out, ", fan_in,
                "], got ", w.sizes());
    TORCH_CHECK(w.scalar_type() == x.scalar_type(), op, ": weights[", i, "] dtype ", w.scalar_type(),
                " != x dtype ", x.scalar_type());
    TORCH_CHECK(!contiguous_params || w.is_contiguous(), op, ": weights[", i, "] must be contiguous");
    TORCH_CHECK(w.device() == x.device(), op, ": weights[", i, "] must be on x's device ", x.device(), ", got ",
                w.device());
    if (!biases.empty()) {
      const auto& b = biases[i];
      TORCH_CHECK(b.dim() == 1 && b.size(0) == w.size(0) && b.scalar_type() == x.scalar_type() &&
                      (!contiguous_params || b.is_contiguous()) && b.device() == x.device(),
                  op, ": biases[", i, "] must be a ", contiguous_params ? "contiguous " : "", "[", w.size(0),
                  "] tensor of x's dtype and device, got ", b.sizes(), " ", b.scalar_type(), " on ", b.device());
    }
    fan_in = w.size(0);
  }
  TORCH_CHECK(fan_in == 1, op, ": the last weight must have shape [1, w] (scalar energy), got ",
              weights.back().sizes());
}

}  // namespace ebmfast

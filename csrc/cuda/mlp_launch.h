// Host-side checks shared by the CUDA launchers of the fused MLP ops (mlp_energy.cpp,
// mlp_backward.cpp): the arguments (the CPU kernels' checks, ebmfast/mlp_check.h) plus the CUDA
// kernels' limits, the dtype tag of the raw-pointer kernels, and the launch's return code.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#include <algorithm>

#include "ebmfast/mlp_check.h"
#include "mlp_energy_kernel.cuh"  // DType, MLPNetDesc, include/ebmfast/mlp_cuda_plan.h

namespace ebmfast {

inline DType mlp_dtype(const char* op, at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    default: TORCH_CHECK(false, op, ": x must be float32 or float64, got ", t);
  }
  return DType::kFloat32;  // unreachable
}

// check_mlp + CUDA device + the kernels' limits (1..6 hidden layers, D <= 128, widths <= 128);
// `fallback` names the backends to use instead ("'triton' or 'ref'").
inline MLPNetDesc describe_mlp_cuda(const char* op, const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                                    int64_t act, const char* fallback) {
  TORCH_CHECK(x.is_cuda(), op, " (cuda): x must be a CUDA tensor, got device ", x.device());
  check_mlp(op, x, weights, biases, act, /*contiguous_params=*/false);  // the launchers pack the weights
  MLPNetDesc net{};
  net.B = x.size(0);
  net.D = x.size(1);
  net.NH = static_cast<int64_t>(weights.size()) - 1;
  net.act = act;
  TORCH_CHECK(net.NH >= 1 && net.NH <= kMLPCudaMaxHidden, op, " (cuda): 1..", kMLPCudaMaxHidden,
              " hidden layers supported, got ", net.NH, " (use backend=", fallback, ")");
  TORCH_CHECK(net.D >= 1 && net.D <= kMLPCudaMaxD, op, " (cuda): input dim D in 1..", kMLPCudaMaxD,
              " supported, got ", net.D, " (use backend=", fallback, ")");
  int64_t wmax = 0;
  for (int64_t l = 0; l < net.NH; ++l) {
    net.widths[l] = weights[l].size(0);
    wmax = std::max(wmax, net.widths[l]);
  }
  net.HP = mlp_cuda_padded_width(wmax);
  TORCH_CHECK(net.HP > 0, op, " (cuda): hidden widths <= 128 supported, got ", wmax, " (use backend=", fallback, ")");
  return net;
}

// The raw-pointer launchers' return code: 0, an MLPCudaError, or a cudaError_t.
inline void check_mlp_launch(const char* op, const char* fallback, int err, const char* smem_detail = "") {
  TORCH_CHECK(err != kMLPErrSmem, op, " (cuda): the network does not fit in shared memory (use backend=", fallback,
              ")", smem_detail);
  TORCH_CHECK(err != kMLPErrStatic, op, " (cuda): the kernel's static shared memory exceeds the ",
              kMLPCudaStaticSmemBudget, " bytes its launch plan budgets (include/ebmfast/mlp_cuda_plan.h)");
  TORCH_CHECK(err != kMLPErrShape && err != kMLPErrDType, op, " (cuda): unsupported network (error ", err, ")");
  TORCH_CHECK(err == 0, op, ": CUDA launch failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}

}  // namespace ebmfast

// CUDA launcher of the fused MLP energy ops (schemas: csrc/mlp_schemas.cpp): checks, parameter
// packing, stream; the math is in mlp_energy_kernel.cu (raw pointers).
//
// CUDA covers 1..6 hidden layers, D <= 128, hidden widths <= 128, float32/float64; other nets
// raise here, and ebmfast/ops/mlp_energy.py sends them to the Triton or reference backend.
// mlp_energy_grad_backward (the analytic double backward) has its own launcher: csrc/cuda/mlp_backward.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "mlp_energy_kernel.cuh"
#include "mlp_launch.h"
#include "mlp_pack.h"

namespace ebmfast {
namespace {

constexpr const char* kFallback = "'triton' or 'ref'";

std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_energy_grad_cuda(const at::Tensor& x, at::TensorList weights,
                                                                    at::TensorList biases, int64_t act, double slope,
                                                                    bool save) {
  const char* op = "ebmfast.mlp_energy_grad";
  const MLPNetDesc net = describe_mlp_cuda(op, x, weights, biases, act, kFallback);
  c10::cuda::CUDAGuard guard(x.device());
  at::Tensor e = at::empty({net.B}, x.options());
  at::Tensor g = at::empty({net.B, net.D}, x.options());
  int64_t S = 0;
  for (int64_t l = 0; l < net.NH; ++l) S += 2 * net.widths[l];
  at::Tensor saved = save ? at::empty({net.B, S}, x.options()) : at::empty({0}, x.options());
  if (net.B == 0) return {e, g, saved};
  const at::Tensor params = pack_mlp_params_cuda(x, weights, biases, slope, net);
  check_mlp_launch(op, kFallback, mlp_energy_grad_cuda_launch(mlp_dtype(op, x.scalar_type()), x.const_data_ptr(),
                                               params.const_data_ptr(), e.mutable_data_ptr(), g.mutable_data_ptr(),
                                               save ? saved.mutable_data_ptr() : nullptr, net,
                                               c10::cuda::getCurrentCUDAStream().stream()));
  return {e, g, saved};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlp_langevin_chain_cuda(
    const at::Tensor& x0, at::TensorList weights, at::TensorList biases, int64_t act, double slope, int64_t n_steps,
    double step_size, double noise_scale, double ref_coef, int64_t seed, c10::optional<double> lo,
    c10::optional<double> hi, int64_t clip_mode, double clip_value, int64_t every, bool record_trajectory,
    bool record_energies, bool check_finite) {
  const char* op = "ebmfast.mlp_langevin_chain";
  const MLPNetDesc net = describe_mlp_cuda(op, x0, weights, biases, act, kFallback);
  TORCH_CHECK(n_steps >= 0 && n_steps < INT32_MAX, op, ": n_steps must be in [0, 2^31 - 1), got ", n_steps);
  TORCH_CHECK(every >= 1, op, ": every must be >= 1, got ", every);
  TORCH_CHECK(clip_mode >= 0 && clip_mode <= 2, op, ": clip_mode must be 0, 1 or 2, got ", clip_mode);
  TORCH_CHECK(seed >= 0, op, ": seed must be >= 0");
  c10::cuda::CUDAGuard guard(x0.device());
  const int64_t T_len = (n_steps + every - 1) / every + 1;
  at::Tensor x = at::empty_like(x0);
  at::Tensor traj = record_trajectory ? at::empty({T_len, net.B, net.D}, x0.options()) : at::empty({0}, x0.options());
  at::Tensor ens = record_energies ? at::empty({T_len, net.B}, x0.options()) : at::empty({0}, x0.options());
  at::Tensor bad = at::full({1}, INT32_MAX, x0.options().dtype(at::kInt));
  if (net.B > 0) {
    MLPChainParamsD p;
    p.n_steps = n_steps;
    p.every = every;
    p.step_size = step_size;
    p.noise_scale = noise_scale;
    p.ref_coef = ref_coef;
    p.has_lo = lo.has_value();
    p.has_hi = hi.has_value();
    p.lo = lo.value_or(0.0);
    p.hi = hi.value_or(0.0);
    p.clip_mode = clip_mode;
    p.clip_value = clip_value;
    p.seed = static_cast<uint64_t>(seed);
    p.offset = 0;
    p.record_trajectory = record_trajectory;
    p.record_energies = record_energies;
    p.check_finite = check_finite;
    const at::Tensor params = pack_mlp_params_cuda(x0, weights, biases, slope, net);
    check_mlp_launch(op, kFallback, mlp_chain_cuda_launch(mlp_dtype(op, x0.scalar_type()), x0.const_data_ptr(),
                                           params.const_data_ptr(), x.mutable_data_ptr(),
                                           record_trajectory ? traj.mutable_data_ptr() : nullptr,
                                           record_energies ? ens.mutable_data_ptr() : nullptr,
                                           bad.mutable_data_ptr<int32_t>(), net, p,
                                           c10::cuda::getCurrentCUDAStream().stream()));
  }
  // INT32_MAX (no block saw a non-finite value) -> -1, as the CPU kernel returns
  at::Tensor bad_step = bad.to(at::kLong).reshape({});
  bad_step.masked_fill_(bad_step.eq(INT32_MAX), -1);
  return {x, traj, ens, bad_step};
}

}  // namespace

TORCH_LIBRARY_IMPL(ebmfast, CUDA, m) {
  m.impl("mlp_energy_grad", &mlp_energy_grad_cuda);
  m.impl("mlp_langevin_chain", &mlp_langevin_chain_cuda);
}

}  // namespace ebmfast

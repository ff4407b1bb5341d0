// CUDA launcher of ebmfast::mlp_energy_grad_backward (schema: csrc/mlp_schemas.cpp), the analytic
// double backward of the fused MLP energy: checks, parameter packing, and the reduction of the
// kernel's per-block partial sums; the math is in mlp_backward_kernel.cu (raw pointers).
//
// Same limits as the CUDA forward (mlp_energy.cpp): 1..6 hidden layers, D <= 128, hidden widths
// <= 128, float32/float64, and the block's shared memory; other nets raise here with the reason
// (the Python side sends them to the reference). `saved` may be empty (the kernel recomputes the
// forward) or the [B, 2 * sum(w_l)] tensor of mlp_energy_grad(save=True), as on the CPU.
// Deterministic: no atomics; the weight gradients are a fixed-order sum over per-block rows.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "mlp_backward_kernel.cuh"
#include "mlp_launch.h"
#include "mlp_pack.h"

namespace ebmfast {
namespace {


constexpr const char* kFallback = "'ref'";
constexpr const char* kSmemDetail =
    ": even with one hidden matrix staged at a time the block needs W_1 [HP, D] and one [HP, HP] matrix there";

std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> mlp_energy_grad_backward_cuda(
    const at::Tensor& x, at::TensorList weights, at::TensorList biases, int64_t act, double slope,
    const at::Tensor& saved_in, const at::Tensor& grad_e, const at::Tensor& grad_g) {
  const char* op = "ebmfast.mlp_energy_grad_backward";
  const MLPNetDesc net = describe_mlp_cuda(op, x, weights, biases, act, kFallback);
  const int64_t B = net.B, D = net.D, NH = net.NH, HP = net.HP;
  TORCH_CHECK(grad_e.sizes() == at::IntArrayRef{B} && grad_e.scalar_type() == x.scalar_type() &&
                  grad_e.is_contiguous() && grad_e.device() == x.device(),
              op, ": grad_energy must be a contiguous [", B, "] tensor of x's dtype and device, got ", grad_e.sizes(),
              " ", grad_e.scalar_type(), " on ", grad_e.device());
  TORCH_CHECK(grad_g.sizes() == x.sizes() && grad_g.scalar_type() == x.scalar_type() && grad_g.is_contiguous() &&
                  grad_g.device() == x.device(),
              op, ": grad_grad must be a contiguous tensor shaped like x (", x.sizes(),
              ") of x's dtype and device, got ", grad_g.sizes(), " ", grad_g.scalar_type(), " on ", grad_g.device());
  int64_t S = 0;
  for (int64_t l = 0; l < NH; ++l) S += 2 * net.widths[l];
  // as on the CPU: an empty `saved` means "recompute the forward" (the kernel does it in-block)
  const bool use_saved = !(saved_in.numel() == 0 && !(saved_in.dim() == 2 && saved_in.size(0) == B));
  if (use_saved)
    TORCH_CHECK(saved_in.dim() == 2 && saved_in.size(0) == B && saved_in.size(1) == S && saved_in.is_contiguous() &&
                    saved_in.scalar_type() == x.scalar_type() && saved_in.device() == x.device(),
                op, ": saved must be the [", B, ", ", S,
                "] tensor from mlp_energy_grad(save=True) on x's device (or empty), got ", saved_in.sizes());
  const DType dt = mlp_dtype(op, x.scalar_type());
  c10::cuda::CUDAGuard guard(x.device());

  MLPCudaPlan plan;
  check_mlp_launch(op, kFallback, mlp_backward_cuda_plan(dt, net, &plan), kSmemDetail);
  at::Tensor gx = at::empty_like(x);
  at::Tensor acc;
  if (B > 0) {
    const at::Tensor params = pack_mlp_params_cuda(x, weights, biases, slope, net);
    // every entry is written by the kernel (each block zeroes its own row first)
    at::Tensor partial = at::empty({plan.n_blocks, plan.width}, x.options());
    // the tile state (a_l, g_l) when it does not fit in shared memory next to the weights
    at::Tensor scratch = at::empty({plan.n_blocks * plan.scratch_per_block}, x.options());
    check_mlp_launch(op, kFallback, mlp_energy_grad_backward_cuda_launch(
        dt, x.const_data_ptr(), params.const_data_ptr(), use_saved ? saved_in.const_data_ptr() : nullptr,
        grad_e.const_data_ptr(), grad_g.const_data_ptr(), gx.mutable_data_ptr(), partial.mutable_data_ptr(),
        plan.scratch_per_block > 0 ? scratch.mutable_data_ptr() : nullptr, net, plan,
        c10::cuda::getCurrentCUDAStream().stream()),
                     kSmemDetail);
    acc = partial.sum(0);  // deterministic reduction over the blocks
  } else {
    acc = at::zeros({mlp_backward_partial_width(net)}, x.options());
  }

  // unpack: dW_l^T [K_l][HP] blocks (K_0 = D, else HP), db_l [HP], dw_out [HP], db_out
  std::vector<at::Tensor> gw, gb;
  int64_t fan_in = D;
  for (int64_t l = 0; l < NH; ++l) {
    const int64_t K = l == 0 ? D : HP, off = mlp_backward_offset(net, l), wl = net.widths[l];
    gw.push_back(acc.narrow(0, off, K * HP).view({K, HP}).narrow(0, 0, fan_in).narrow(1, 0, wl).t().contiguous());
    if (!biases.empty()) gb.push_back(acc.narrow(0, off + K * HP, wl).clone());
    fan_in = wl;
  }
  const int64_t off = mlp_backward_offset(net, NH);
  gw.push_back(acc.narrow(0, off, fan_in).view({1, fan_in}).clone());
  if (!biases.empty()) gb.push_back(acc.narrow(0, off + HP, 1).clone());
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(ebmfast, CUDA, m) {
  m.impl("mlp_energy_grad_backward", &mlp_energy_grad_backward_cuda);
}

}  // namespace ebmfast

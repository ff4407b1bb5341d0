// The CUDA MLP kernels' launch plan (include/ebmfast/mlp_cuda_plan.h) as plain integers, for
// Python (ebmfast/ops/_cuda_plan.py). Registered in every build, with or without CUDA: the plan is
// host arithmetic, so a CPU-only build can still say which networks the CUDA kernels take.
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ebmfast/mlp_cuda_plan.h"

namespace ebmfast {
namespace {

MLPKernel kernel_from_name(const std::string& kernel) {
  if (kernel == "forward") return MLPKernel::kForward;
  if (kernel == "chain") return MLPKernel::kChain;
  TORCH_CHECK(kernel == "backward", "ebmfast.mlp_cuda_plan: kernel must be 'forward', 'chain' or 'backward', got '",
              kernel, "'");
  return MLPKernel::kBackward;
}

std::vector<int64_t> mlp_cuda_plan_op(int64_t d, std::vector<int64_t> hidden, int64_t batch, int64_t elem_bytes,
                                      std::string kernel, int64_t smem_optin, int64_t smem_per_sm,
                                      int64_t sm_count) {
  const MLPKernel k = kernel_from_name(kernel);
  const bool widths_ok = !hidden.empty() && *std::min_element(hidden.begin(), hidden.end()) >= 1;
  const int64_t hp = widths_ok ? mlp_cuda_padded_width(*std::max_element(hidden.begin(), hidden.end())) : -1;
  MLPCudaDevice dev;
  dev.smem_optin = smem_optin;
  dev.smem_per_sm = smem_per_sm;
  dev.sms = sm_count;
  const MLPCudaPlan p = mlp_cuda_plan(k, d, static_cast<int64_t>(hidden.size()), hp, batch, elem_bytes, dev);
  return {p.rc,
          static_cast<int64_t>(kMLPCudaWarps) * p.rb,
          p.rb,
          p.resident ? 1 : 0,
          p.state_in_smem ? 1 : 0,
          p.smem,
          kMLPCudaStaticSmemBudget,
          p.smem_min,
          p.n_blocks};
}

std::vector<int64_t> mlp_cuda_limits_op() {
  return {kMLPCudaMaxHidden, kMLPCudaMaxD, kMLPCudaMaxWidth, kMLPCudaThreads, kMLPCudaStaticSmemBudget};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ebmfast, m) {
  // The plan of the CUDA MLP kernel `kernel` ("forward" = mlp_energy_grad, "chain" =
  // mlp_langevin_chain, "backward" = mlp_energy_grad_backward) for x [batch, d] of elem_bytes-byte
  // floats through hidden layers of the given widths, on a device with smem_optin bytes of shared
  // memory per block (opt-in maximum), smem_per_sm per SM and sm_count SMs. Returns
  //   [rc, rows_per_block, rows_per_warp, resident, state_in_smem, dynamic_smem_bytes,
  //    static_smem_bytes, min_smem_bytes, n_blocks]
  // rc: 0 (the rest describes the launch), -2 (a network the kernels do not take), -3 (not even
  // the smallest layout fits: min_smem_bytes, dynamic + static, is more than smem_optin), -4 (not
  // 4 or 8 bytes). The launch needs dynamic + static <= smem_optin.
  m.def(
      "mlp_cuda_plan(int d, int[] hidden, int batch, int elem_bytes, str kernel, int smem_optin, int smem_per_sm, "
      "int sm_count) -> int[]",
      &mlp_cuda_plan_op);
  // [max hidden layers, max input dim D, max hidden width, threads per block, static smem budget]
  m.def("mlp_cuda_limits() -> int[]", &mlp_cuda_limits_op);
}

}  // namespace ebmfast

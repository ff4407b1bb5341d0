// Host-side packing of MLP weights for the CUDA kernels (forward/chain: mlp_energy.cpp, double
// backward: mlp_backward.cpp), in the layout mlp_smem_net.cuh reads. ATen only, no CUDA code.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>

#include "mlp_energy_kernel.cuh"  // MLPNetDesc

namespace ebmfast {

// [W_1: HP x D][W_2..W_NH: (NH-1) x HP x HP][b: NH x HP][w_out: HP][b_out, slope, 0...: HP], zero padded.
inline at::Tensor pack_mlp_params_cuda(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                                       double slope, const MLPNetDesc& net) {
  const int64_t HP = net.HP, D = net.D, NH = net.NH;
  at::Tensor buf = at::zeros({HP * D + (NH - 1) * HP * HP + NH * HP + 2 * HP}, x.options());
  int64_t o = 0;
  buf.narrow(0, o, HP * D).view({HP, D}).narrow(0, 0, weights[0].size(0)).copy_(weights[0]);
  o += HP * D;
  for (int64_t l = 1; l < NH; ++l) {
    buf.narrow(0, o, HP * HP).view({HP, HP}).narrow(0, 0, weights[l].size(0)).narrow(1, 0, weights[l].size(1))
        .copy_(weights[l]);
    o += HP * HP;
  }
  if (!biases.empty())
    for (int64_t l = 0; l < NH; ++l) buf.narrow(0, o + l * HP, biases[l].size(0)).copy_(biases[l]);
  o += NH * HP;
  buf.narrow(0, o, weights[NH].size(1)).copy_(weights[NH].reshape({-1}));
  if (!biases.empty()) buf.narrow(0, o + HP, 1).copy_(biases[NH].reshape({1}));
  buf.narrow(0, o + HP + 1, 1).fill_(slope);
  return buf;
}

}  // namespace ebmfast

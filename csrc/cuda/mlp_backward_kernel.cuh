// Interface between the raw CUDA kernel of the fused MLP energy's analytic double backward
// (mlp_backward_kernel.cu) and its torch launcher (mlp_backward.cpp). No CUDA or torch types.
//
// The op: ebmfast::mlp_energy_grad_backward, the VJP of (E [B], grad_x E [B, D]) with cotangents
// (grad_e [B], grad_g [B, D]) w.r.t. x and every weight and bias (schema: csrc/mlp_schemas.cpp,
// math: the comment above backward_tiles in csrc/cpu/mlp_kernel_impl.h).
//
// Parameters arrive in the packed, zero-padded buffer of mlp_energy_kernel.cuh (same layout,
// same MLPNetDesc). grad_x is written per particle. The weight and bias gradients come back as
// per-block partial sums, one row per block of a [n_blocks, width] buffer (no atomics: the
// caller sums the rows, which keeps the result deterministic). One row:
//   for l = 0..NH-1:  dW_l^T [K_l][HP] (K_0 = D, K_l = HP for l >= 1; entry [i][j] is
//                     dL/dW_l[j][i], j the layer's output unit, i its input), then db_l [HP];
//   then dw_out [HP] and db_out [1].
// Entries of padded units (j >= w_l or i >= w_{l-1}) are meaningless: slice them off.
#pragma once
#include <cstddef>
#include <cstdint>

#include "mlp_energy_kernel.cuh"  // DType, MLPNetDesc, include/ebmfast/mlp_cuda_plan.h

namespace ebmfast {

// Offset of layer l's block (dW_l^T, then db_l) in a partial row; l == NH: dw_out (db_out at + HP).
inline int64_t mlp_backward_offset(const MLPNetDesc& net, int64_t l) {
  return mlp_backward_offset(net.D, net.NH, net.HP, l);
}

// Length of one partial row.
inline int64_t mlp_backward_partial_width(const MLPNetDesc& net) {
  return mlp_backward_partial_width(net.D, net.NH, net.HP);
}

// Fills *plan (include/ebmfast/mlp_cuda_plan.h, kernel kBackward) for this network on the current
// device: rb, resident, state_in_smem, smem, n_blocks (0 when B == 0), width, scratch_per_block.
// Returns 0, a cudaError_t value, or an MLPCudaError (kMLPErrShape: unsupported net, kMLPErrSmem:
// does not fit in shared memory, kMLPErrDType: not float32/float64).
int mlp_backward_cuda_plan(DType dtype, const MLPNetDesc& net, MLPCudaPlan* plan);

// grad_x [B, D] and partial [plan.n_blocks, plan.width] (every entry written; no zeroing needed)
// for x [B, D], params (packed), grad_e [B], grad_g [B, D]. saved: nullptr (the forward is
// recomputed) or the [B, 2 * sum(w_l)] rows of mlp_energy_grad(save=True) (a_l, then dE/dh_l,
// per hidden layer), which skips the forward. scratch: plan.n_blocks * plan.scratch_per_block
// elements of uninitialised work space (nullptr when that is 0). All pointers are device
// pointers of `dtype`.
int mlp_energy_grad_backward_cuda_launch(DType dtype, const void* x, const void* params, const void* saved,
                                         const void* grad_e, const void* grad_g, void* grad_x, void* partial,
                                         void* scratch, const MLPNetDesc& net, const MLPCudaPlan& plan,
                                         void* stream);

}  // namespace ebmfast

// Interface between the raw CUDA kernels of the fused MLP energy (mlp_energy_kernel.cu) and
// the torch launcher (mlp_energy.cpp). No CUDA or torch types.
//
// Parameters arrive packed in ONE device buffer of the data type, zero padded to HP columns
// (HP = 32, 64 or 128, the max hidden width rounded up to a power of two, at least 32):
//   [W_1: HP x D][W_2..W_NH: (NH-1) x HP x HP][b_1..b_NH: NH x HP][w_out: HP][b_out, slope, 0...: HP]
// (the layout of ebmfast/ops/_triton/mlp_energy.py with DP = D). Padded units have zero
// weights in and out, so they never reach the energy or the gradient.
#pragma once
#include <cstdint>

#include "ebmfast/mlp_cuda_plan.h"  // limits, error codes, layouts, the launch plan
#include "langevin_step_kernel.cuh"    // DType

namespace ebmfast {

struct MLPNetDesc {
  int64_t B = 0;                      // particles
  int64_t D = 0;                      // input dim, 1..kMLPCudaMaxD
  int64_t NH = 0;                     // hidden layers, 1..kMLPCudaMaxHidden
  int64_t HP = 0;                     // padded width of the packed buffer: 32, 64 or 128
  int64_t act = 0;                    // activation code (include/ebmfast/mlp_activation.h)
  int64_t widths[kMLPCudaMaxHidden];  // real hidden widths w_1..w_NH (for `saved`)
};

struct MLPChainParamsD {
  int64_t n_steps = 0, every = 1;
  double step_size = 0, noise_scale = 0, ref_coef = 0, lo = 0, hi = 0, clip_value = 0;
  bool has_lo = false, has_hi = false;
  int64_t clip_mode = 0;
  uint64_t seed = 0, offset = 0;
  bool record_trajectory = false, record_energies = false, check_finite = false;
};

// (E [B], grad_x E [B, D], and `saved` [B, 2 * sum(w_l)] when saved != nullptr) for x [B, D],
// with the plan mlp_cuda_plan() picks for the current device. Returns 0, a cudaError_t value, or
// an MLPCudaError.
int mlp_energy_grad_cuda_launch(DType dtype, const void* x, const void* params, void* energy, void* grad,
                                void* saved, const MLPNetDesc& net, void* stream);

// The whole chain in one launch (ebmfast::mlp_langevin_chain): out [B, D], trajectory
// [T, B, D] / energies [T, B] when recorded (else may be nullptr), bad_step: one int32 the
// caller sets to INT32_MAX; blocks atomicMin the first step with a non-finite energy/gradient.
int mlp_chain_cuda_launch(DType dtype, const void* x0, const void* params, void* out, void* trajectory,
                          void* energies, int32_t* bad_step, const MLPNetDesc& net, const MLPChainParamsD& p,
                          void* stream);

}  // namespace ebmfast

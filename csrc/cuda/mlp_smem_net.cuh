// The packed MLP parameters in shared memory: the one copy of this code that the forward/chain
// kernel (mlp_energy_kernel.cu) and the double-backward kernel (mlp_backward_kernel.cu) share.
// Raw pointers, no torch headers (nvcc -c and the CPU emulator of tests/ops/cuda_emu build it).
//
// Packed global layout (ebmfast/ops/_triton_mlp_register.py pack_mlp_params and the launchers):
//   W_1 [HP][D], hidden W_2..W_NH [NH-1][HP][HP], biases [NH][HP], w_out [HP], b_out, slope.
// Shared copy (offsets: mlp_weight_offsets in include/ebmfast/mlp_cuda_plan.h): W_1 rows padded
// to mlp_ld_first(D) (odd, so lanes reading W[j][i] for consecutive j hit distinct banks), hidden
// matrices [HP][HP + 1] either all resident or one staged at a time.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ebmfast/mlp_activation.h"
#include "ebmfast/mlp_cuda_plan.h"

namespace ebmfast {
namespace mlp_smem {

// Real widths w[l] and the offsets soff[l] of a_l in a row of the ops' `saved` tensor
// ([a_1, dE/dh_1, ..., a_NH, dE/dh_NH] per particle); returns the row width S.
template <int MAXNH>
inline int64_t saved_row_offsets(int64_t NH, const int64_t* widths, int64_t (&w)[MAXNH], int64_t (&soff)[MAXNH]) {
  int64_t off = 0;
  for (int l = 0; l < MAXNH; ++l) {
    w[l] = l < NH ? widths[l] : 0;
    soff[l] = off;
    off += 2 * w[l];
  }
  return off;
}

// The current device's limits, for mlp_cuda_plan(). Returns 0 or a cudaError_t value.
inline int current_device(MLPCudaDevice* dev) {
  int id = 0, optin = 0, per_sm = 0, sms = 1;
  cudaError_t err = cudaGetDevice(&id);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, id);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, id);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, id);
  if (err != cudaSuccess) return static_cast<int>(err);
  dev->smem_optin = optin;
  dev->smem_per_sm = per_sm;
  dev->sms = sms;
  return 0;
}

// Before a launch with `smem` bytes of dynamic shared memory: the kernel's static shared memory
// must be within the plan's budget (kMLPErrStatic otherwise: the plan would have overcommitted),
// and the kernel is opted into more than the default 48 KB per block when it needs it.
template <typename K>
inline int prepare_kernel(K kernel, size_t smem) {
  cudaFuncAttributes attr{};
  cudaError_t err = cudaFuncGetAttributes(&attr, kernel);
  if (err != cudaSuccess) return static_cast<int>(err);
  if (static_cast<int64_t>(attr.sharedSizeBytes) > kMLPCudaStaticSmemBudget) return kMLPErrStatic;
  if (smem + attr.sharedSizeBytes <= 48 * 1024) return 0;
  return static_cast<int>(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
}

template <typename T>
struct SmemNet {
  const T* W1;     // [HP][ld1]
  int64_t ld1;
  T* Wh;           // resident: [NH-1][HP][HP+1]; staged: one [HP][HP+1] buffer
  const T* gWh;    // global [NH-1][HP][HP]
  const T* bias;   // [NH][HP]
  const T* wout;   // [HP]
  T bout, slope;
};

// sigma(a), sigma'(a) and, when D2, sigma''(a) into *d2. `act` is uniform across the block, so
// the switch does not diverge.
template <bool D2, typename T>
__device__ __forceinline__ void act_eval(int64_t act, T a, T slope, T& h, T& d1, T* d2) {
  switch (act) {
    case kActRelu: mlp_act<kActRelu, D2, T>(a, slope, &h, &d1, d2); break;
    case kActLeakyRelu: mlp_act<kActLeakyRelu, D2, T>(a, slope, &h, &d1, d2); break;
    case kActSilu: mlp_act<kActSilu, D2, T>(a, slope, &h, &d1, d2); break;
    case kActSoftplus: mlp_act<kActSoftplus, D2, T>(a, slope, &h, &d1, d2); break;
    case kActElu: mlp_act<kActElu, D2, T>(a, slope, &h, &d1, d2); break;
    case kActTanh: mlp_act<kActTanh, D2, T>(a, slope, &h, &d1, d2); break;
    default: mlp_act<kActGelu, D2, T>(a, slope, &h, &d1, d2); break;
  }
}

// Copies the packed parameters into shared memory (all hidden matrices when kd.resident).
// Layout: any struct with offsets w1, wh, bias, wout (elements of T); Desc: D, NH, resident.
template <typename T, int HP, int NTHREADS, typename Layout, typename Desc>
__device__ SmemNet<T> load_net(T* smem, const Layout& L, const T* __restrict__ params, const Desc& kd) {
  constexpr int LDH = HP + 1;
  const int64_t D = kd.D, NH = kd.NH, ld1 = mlp_ld_first(D);
  const T* gW1 = params;
  const T* gWh = params + HP * D;
  const T* gb = gWh + (NH - 1) * HP * HP;
  const T* gwo = gb + NH * HP;
  for (int64_t i = threadIdx.x; i < HP * D; i += NTHREADS) smem[L.w1 + (i / D) * ld1 + i % D] = gW1[i];
  if (kd.resident) {
    for (int64_t i = threadIdx.x; i < (NH - 1) * HP * HP; i += NTHREADS) {
      const int64_t l = i / (HP * HP), r = (i / HP) % HP, c = i % HP;
      smem[L.wh + l * HP * LDH + r * LDH + c] = gWh[i];
    }
  }
  for (int64_t i = threadIdx.x; i < NH * HP; i += NTHREADS) smem[L.bias + i] = gb[i];
  for (int64_t i = threadIdx.x; i < HP; i += NTHREADS) smem[L.wout + i] = gwo[i];
  SmemNet<T> net;
  net.W1 = smem + L.w1;
  net.ld1 = ld1;
  net.Wh = smem + L.wh;
  net.gWh = gWh;
  net.bias = smem + L.bias;
  net.wout = smem + L.wout;
  net.bout = gwo[HP];
  net.slope = gwo[HP + 1];
  return net;
}

// Hidden matrix of layer L (0-based, L >= 1) in shared memory. Staged mode reloads the one
// buffer; every thread of the block must call this at the same point (block-uniform control
// flow), so the __syncthreads are safe.
template <typename T, int HP, int NTHREADS>
__device__ __forceinline__ const T* layer_weights(const SmemNet<T>& net, bool resident, int& staged, int L) {
  constexpr int LDH = HP + 1;
  if (resident) return net.Wh + static_cast<int64_t>(L - 1) * HP * LDH;
  if (staged != L) {
    __syncthreads();  // every warp is done with the previous matrix
    const T* src = net.gWh + static_cast<int64_t>(L - 1) * HP * HP;
    for (int i = threadIdx.x; i < HP * HP; i += NTHREADS) net.Wh[(i / HP) * LDH + (i % HP)] = src[i];
    __syncthreads();
    staged = L;
  }
  return net.Wh;
}

// ---- one warp's register tile: RB rows x HP units, the lane owning units j = lane + 32c
// (c < HP/32). Both kernels' matmuls go through warp_rows_wt / warp_rows_w.

// acc[r][c] = bias[j] + sum_{i<K} in[r*ldin + i] W[j*ws_j + i*ws_i]   (bias may be nullptr; the
// strides are literals at every call site, so after inlining they fold into the addressing)
template <typename T, int HP, int RB>
__device__ __forceinline__ void warp_rows_times(const T* in, int64_t ldin, int K, const T* W, int64_t ws_j,
                                                int64_t ws_i, const T* bias, T (&acc)[RB][HP / 32]) {
  constexpr int CB = HP / 32;
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int c = 0; c < CB; ++c) {
    const T bj = bias != nullptr ? bias[lane + 32 * c] : T(0);
#pragma unroll
    for (int r = 0; r < RB; ++r) acc[r][c] = bj;
  }
#pragma unroll 4
  for (int i = 0; i < K; ++i) {
    T xv[RB], wv[CB];
#pragma unroll
    for (int r = 0; r < RB; ++r) xv[r] = in[r * ldin + i];
#pragma unroll
    for (int c = 0; c < CB; ++c) wv[c] = W[(lane + 32 * c) * ws_j + i * ws_i];
#pragma unroll
    for (int r = 0; r < RB; ++r)
#pragma unroll
      for (int c = 0; c < CB; ++c) acc[r][c] += xv[r] * wv[c];
  }
}

// rows times W^T, W [HP][ldw] row-major (the forward direction); bias may be nullptr
template <typename T, int HP, int RB>
__device__ __forceinline__ void warp_rows_wt(const T* in, int64_t ldin, int K, const T* W, int64_t ldw,
                                             const T* bias, T (&acc)[RB][HP / 32]) {
  warp_rows_times<T, HP, RB>(in, ldin, K, W, ldw, 1, bias, acc);
}

// rows times W, W [HP][ldw] row-major, K = HP (the backward direction)
template <typename T, int HP, int RB>
__device__ __forceinline__ void warp_rows_w(const T* in, int64_t ldin, const T* W, int64_t ldw,
                                            T (&acc)[RB][HP / 32]) {
  warp_rows_times<T, HP, RB>(in, ldin, HP, W, 1, ldw, nullptr, acc);
}

}  // namespace mlp_smem
}  // namespace ebmfast

// Raw-pointer CUDA kernels of the fused MLP energy (no torch headers: `nvcc -c` checks this file
// on its own). Launched by mlp_energy.cpp; semantics of ebmfast/ops/mlp_energy.py.
//
//   mlp_energy_grad_kernel  E [B] and grad_x E [B, D] (and the `saved` rows) for x [B, D]
//   mlp_chain_kernel        K Langevin steps in ONE launch: every particle stays in shared
//                           memory for all K steps
//
// Work split. A block is 8 warps and owns BB = 8 * RB particles; warp w owns rows
// [w*RB, w*RB + RB) and lane l owns hidden units j = l + 32c (c < CB = HP / 32) of those rows.
// Activations of a warp's rows are only ever read by that warp (a [RB][HP+1] buffer in shared
// memory, __syncwarp between layers), so warps never wait for each other; the block shares
// the weights. act'(a_l) of every layer is kept for the backward in a per-warp shared buffer.
// Each output is a register-blocked RB x CB dot: per k, RB broadcast loads of activations and
// CB weight loads, RB*CB FMAs. Weight rows are padded to HP + 1 so lanes reading W[j][i]
// (forward, consecutive j) and W[j][i] (backward, consecutive i) hit distinct banks.
//
// Weights live in shared memory for the whole launch when they fit ("resident"); otherwise one
// hidden matrix at a time is staged from global memory (L2) per layer and step ("staged").
// Noise: ebmfast's Philox stream (include/ebmfast/philox.h) of the flattened [B, D] state with
// offset = offset0 + step, and the update of include/ebmfast/langevin_step.h: the arithmetic of
// the CPU step kernel (up to nvcc's FMA contraction). Activations: include/ebmfast/mlp_activation.h.
//
// Limits: 1..6 hidden layers, D <= 128, hidden widths <= 128 (padded to HP = 32, 64 or 128),
// float32 / float64, and the block's shared memory (mlp_energy.cpp reports what does not fit).
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "ebmfast/langevin_step.h"
#include "ebmfast/mlp_activation.h"
#include "ebmfast/philox.h"
#include "mlp_energy_kernel.cuh"
#include "mlp_smem_net.cuh"

// `kernel<<<grid, block, smem, stream>>>` behind a macro so that tests/ops/test_mlp_cuda_emulated.py
// can compile this file with g++ and run the kernels on CPU threads.
#ifndef EBMFAST_LAUNCH
#define EBMFAST_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif

namespace ebmfast {
namespace {

constexpr int kThreads = kMLPCudaThreads;
constexpr int kWarps = kMLPCudaWarps;
constexpr int kMaxNH = kMLPCudaMaxHidden;
constexpr unsigned kFull = 0xffffffffu;
using mlp_smem::SmemNet;

// Per-launch description (kernel parameter space).
struct KDesc {
  int64_t B, D, NH, act;
  bool resident;
  int64_t S;               // saved row width 2 * sum(w_l)
  int64_t soff[kMaxNH];    // offset of a_l in a saved row (dE/dh_l follows at + w_l)
  int64_t w[kMaxNH];       // real hidden widths
};

template <typename T>
struct ChainK {
  LangevinParams<T> lp;
  T ref_coef;
  int64_t n_steps, every;
  bool rec_traj, rec_e, check;
};

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ bool finite(T v) {
  return isfinite(v);
}

// One warp: energies e[RB] (in every lane) of its rows xw [RB][D] (shared), and when WANT_GRAD
// grad_x E into gxw [RB][D] (shared). hb: the warp's [RB][HP+1] activation buffer; dw: its
// [NH][RB][HP] buffer of act'(a_l). saved != nullptr: also the op's `saved` rows
// (pre-activations, then dE/dh_l, per hidden layer).
//
// Layers run in a rolled loop and the activation in a rolled loop over the lane's RB*CB
// elements through shared memory: one copy of the 7-way activation code instead of one per
// layer and register (that version took ptxas minutes per instantiation, for no measured gain).
template <typename T, int HP, int RB, bool WANT_GRAD>
__device__ void mlp_rows(const SmemNet<T>& net, const KDesc& kd, int& staged, const T* xw, T* hb, T* dw, T* gxw,
                         T (&e)[RB], T* __restrict__ saved, int64_t row0) {
  constexpr int CB = HP / 32, LDH = HP + 1;
  const int lane = threadIdx.x & 31;
  const int64_t D = kd.D;
  const int NH = static_cast<int>(kd.NH);
  T acc[RB][CB];

  // ---- layer 0: a = x W_1^T + b_1 (K = D, small)
  mlp_smem::warp_rows_wt<T, HP, RB>(xw, D, static_cast<int>(D), net.W1, net.ld1, net.bias, acc);

  // ---- hidden layers: matmul (layers >= 1), then pre-activations -> hb, activation in place
#pragma unroll 1
  for (int L = 0; L < NH; ++L) {
    if (L > 0) {
      const T* W = mlp_smem::layer_weights<T, HP, kThreads>(net, kd.resident, staged, L);
      mlp_smem::warp_rows_wt<T, HP, RB>(hb, LDH, HP, W, LDH, net.bias + L * HP, acc);
    }
    __syncwarp();  // lanes are done reading hb (previous layer)
#pragma unroll
    for (int r = 0; r < RB; ++r)
#pragma unroll
      for (int c = 0; c < CB; ++c) hb[r * LDH + lane + 32 * c] = acc[r][c];
    if (saved != nullptr) {
#pragma unroll
      for (int r = 0; r < RB; ++r) {
        const int64_t row = row0 + r;
#pragma unroll
        for (int c = 0; c < CB; ++c) {
          const int j = lane + 32 * c;
          if (row < kd.B && j < kd.w[L]) saved[row * kd.S + kd.soff[L] + j] = acc[r][c];
        }
      }
    }
    // each lane rewrites only its own elements: no sync needed before this loop
#pragma unroll 1
    for (int q = 0; q < RB * CB; ++q) {
      const int r = q / CB, j = lane + 32 * (q % CB);
      T h, d;
      mlp_smem::act_eval<false, T>(kd.act, hb[r * LDH + j], net.slope, h, d, nullptr);
      hb[r * LDH + j] = h;
      dw[(L * RB + r) * HP + j] = d;
    }
    __syncwarp();
  }

  // ---- energy: h_NH . w_out + b_out, reduced over the warp's lanes
#pragma unroll
  for (int r = 0; r < RB; ++r) {
    T p = T(0);
#pragma unroll
    for (int c = 0; c < CB; ++c) p += hb[r * LDH + lane + 32 * c] * net.wout[lane + 32 * c];
    e[r] = warp_sum(p) + net.bout;
  }
  if constexpr (WANT_GRAD) {
    // ---- backward: g = dE/dh_L in registers, from w_out down to layer 0
    T g[RB][CB];
#pragma unroll
    for (int c = 0; c < CB; ++c) {
      const T wj = net.wout[lane + 32 * c];
#pragma unroll
      for (int r = 0; r < RB; ++r) g[r][c] = wj;
    }
#pragma unroll 1
    for (int L = NH - 1; L >= 0; --L) {
      if (saved != nullptr) {
#pragma unroll
        for (int r = 0; r < RB; ++r) {
          const int64_t row = row0 + r;
#pragma unroll
          for (int c = 0; c < CB; ++c) {
            const int j = lane + 32 * c;
            if (row < kd.B && j < kd.w[L]) saved[row * kd.S + kd.soff[L] + kd.w[L] + j] = g[r][c];
          }
        }
      }
      __syncwarp();  // lanes are done reading hb
#pragma unroll
      for (int r = 0; r < RB; ++r)
#pragma unroll
        for (int c = 0; c < CB; ++c) {
          const int j = lane + 32 * c;
          hb[r * LDH + j] = g[r][c] * dw[(L * RB + r) * HP + j];
        }
      __syncwarp();
      if (L > 0) {
        // dE/dh_{L-1}[i] = sum_j (g d)[j] W[j][i], lane owns i = lane + 32c
        const T* W = mlp_smem::layer_weights<T, HP, kThreads>(net, kd.resident, staged, L);
        mlp_smem::warp_rows_w<T, HP, RB>(hb, LDH, W, LDH, g);
      }
    }
    // ---- layer 0: grad_x[r][m] = sum_j (g d_0)[r][j] W_1[j][m]; lanes over the RB*D outputs
    for (int64_t o = lane; o < RB * D; o += 32) {
      const int64_t r = o / D, m = o % D;
      T s = T(0);
      for (int j = 0; j < HP; ++j) s += hb[r * LDH + j] * net.W1[j * net.ld1 + m];
      gxw[o] = s;
    }
    __syncwarp();
  }
}

template <typename T, int HP, int RB>
__global__ void __launch_bounds__(kThreads) mlp_energy_grad_kernel(const T* __restrict__ x,
                                                                   const T* __restrict__ params, T* e_out,
                                                                   T* g_out, T* saved, KDesc kd) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const MLPFwdLayout L = mlp_fwd_layout(kd.D, kd.NH, HP, RB, kd.resident);
  const SmemNet<T> net = mlp_smem::load_net<T, HP, kThreads>(smem, L, params, kd);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t D = kd.D;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * (kWarps * RB) + warp * RB;
  T* xw = smem + L.xs + warp * RB * D;
  T* gxw = smem + L.gx + warp * RB * D;
  T* hb = smem + L.hbuf + warp * RB * (HP + 1);
  T* dw = smem + L.dbuf + warp * RB * kd.NH * HP;
  for (int64_t o = lane; o < RB * D; o += 32) {
    const int64_t row = row0 + o / D;
    xw[o] = row < kd.B ? x[row * D + o % D] : T(0);
  }
  __syncthreads();
  int staged = -1;
  T e[RB];
  mlp_rows<T, HP, RB, true>(net, kd, staged, xw, hb, dw, gxw, e, saved, row0);
#pragma unroll
  for (int r = 0; r < RB; ++r)
    if (lane == r && row0 + r < kd.B) e_out[row0 + r] = e[r];
  for (int64_t o = lane; o < RB * D; o += 32) {
    const int64_t row = row0 + o / D;
    if (row < kd.B) g_out[row * D + o % D] = gxw[o];
  }
}

template <typename T, int HP, int RB>
__global__ void __launch_bounds__(kThreads) mlp_chain_kernel(const T* __restrict__ x0, const T* __restrict__ params,
                                                             T* out, T* traj, T* ens, int32_t* bad_out, KDesc kd,
                                                             ChainK<T> cp) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const MLPFwdLayout L = mlp_fwd_layout(kd.D, kd.NH, HP, RB, kd.resident);
  const SmemNet<T> net = mlp_smem::load_net<T, HP, kThreads>(smem, L, params, kd);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t B = kd.B, D = kd.D;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * (kWarps * RB) + warp * RB;
  T* xw = smem + L.xs + warp * RB * D;
  T* gxw = smem + L.gx + warp * RB * D;
  T* hb = smem + L.hbuf + warp * RB * (HP + 1);
  T* dw = smem + L.dbuf + warp * RB * kd.NH * HP;
  for (int64_t o = lane; o < RB * D; o += 32) {
    const int64_t row = row0 + o / D;
    xw[o] = row < B ? x0[row * D + o % D] : T(0);
  }
  __syncthreads();
  int staged = -1;
  int64_t bad = cp.n_steps;
  const LangevinParams<T>& lp = cp.lp;
  for (int64_t k = 0; k < cp.n_steps; ++k) {
    T e[RB];
    mlp_rows<T, HP, RB, true>(net, kd, staged, xw, hb, dw, gxw, e, nullptr, row0);
    if (cp.check) {
      bool ok = true;
#pragma unroll
      for (int r = 0; r < RB; ++r) ok = ok && (row0 + r >= B || finite(e[r]));
      // the drift (gradient + reference term), element by element
      for (int64_t o = lane; o < RB * D; o += 32)
        ok = ok && (row0 + o / D >= B || finite(cp.ref_coef != T(0) ? gxw[o] + cp.ref_coef * xw[o] : gxw[o]));
      ok = __all_sync(kFull, ok);
      if (!ok && bad == cp.n_steps) bad = k;
    }
    if ((cp.rec_traj || cp.rec_e) && k % cp.every == 0) {
      const int64_t slot = k / cp.every;
      if (cp.rec_traj) {
        for (int64_t o = lane; o < RB * D; o += 32) {
          const int64_t row = row0 + o / D;
          if (row < B) traj[(slot * B + row) * D + o % D] = xw[o];
        }
      }
      if (cp.rec_e) {
#pragma unroll
        for (int r = 0; r < RB; ++r)
          if (lane == r && row0 + r < B) ens[slot * B + row0 + r] = e[r];
      }
    }
    // The finiteness check and the trajectory read xw[o] in lane o % 32, the step below writes
    // xw[r * D + m] in lane m % 32: with several rows per warp (RB > 1) and D not a multiple of
    // 32 those are different lanes, so every lane's reads must be done before any lane writes.
    __syncwarp();
    // the step of include/ebmfast/langevin_step.h on the drift grad E + ref_coef * x
    for (int r = 0; r < RB; ++r) {
      const int64_t row = row0 + r;
      T scale = T(1);
      if (lp.clip_mode == kClipNorm) {
        T ss = T(0);
        for (int64_t m = lane; m < D; m += 32) {
          T ge = gxw[r * D + m];
          if (cp.ref_coef != T(0)) ge += cp.ref_coef * xw[r * D + m];
          ss += ge * ge;
        }
        scale = norm_clip_scale<T>(warp_sum(ss), lp.clip_value);
      }
      for (int64_t m = lane; m < D; m += 32) {
        const T xv = xw[r * D + m];
        T ge = gxw[r * D + m];
        if (cp.ref_coef != T(0)) ge += cp.ref_coef * xv;
        T z = T(0);
        if (lp.noise_scale != T(0)) {
          const uint64_t i = static_cast<uint64_t>(row * D + m);
          T z4[4];
          normal4<T>(i >> 2, lp.offset + static_cast<uint64_t>(k), lp.seed, z4);
          const int q = static_cast<int>(i & 3);
          z = q == 0 ? z4[0] : (q == 1 ? z4[1] : (q == 2 ? z4[2] : z4[3]));
        }
        xw[r * D + m] = langevin_update<T>(xv, ge, z, scale, lp);
      }
    }
    __syncwarp();
  }
  for (int64_t o = lane; o < RB * D; o += 32) {
    const int64_t row = row0 + o / D;
    if (row < B) out[row * D + o % D] = xw[o];
  }
  if (cp.rec_traj || cp.rec_e) {
    const int64_t slot = (cp.n_steps + cp.every - 1) / cp.every;
    if (cp.rec_traj) {
      for (int64_t o = lane; o < RB * D; o += 32) {
        const int64_t row = row0 + o / D;
        if (row < B) traj[(slot * B + row) * D + o % D] = xw[o];
      }
    }
    if (cp.rec_e) {
      T e[RB];
      mlp_rows<T, HP, RB, false>(net, kd, staged, xw, hb, dw, gxw, e, nullptr, row0);
#pragma unroll
      for (int r = 0; r < RB; ++r)
        if (lane == r && row0 + r < B) ens[slot * B + row0 + r] = e[r];
    }
  }
  if (cp.check && lane == 0 && bad < cp.n_steps) atomicMin(bad_out, static_cast<int32_t>(bad));
}

// ------------------------------------------------------------------------------ host side
// The plan (include/ebmfast/mlp_cuda_plan.h) for this network on the current device.
int plan_for_device(MLPKernel kernel, size_t elem, const MLPNetDesc& net, MLPCudaPlan* plan) {
  MLPCudaDevice dev;
  if (int err = mlp_smem::current_device(&dev)) return err;
  *plan = mlp_cuda_plan(kernel, net.D, net.NH, net.HP, net.B, static_cast<int64_t>(elem), dev);
  return plan->rc;
}

KDesc make_desc(const MLPNetDesc& net, bool resident) {
  KDesc kd{};
  kd.B = net.B;
  kd.D = net.D;
  kd.NH = net.NH;
  kd.act = net.act;
  kd.resident = resident;
  kd.S = mlp_smem::saved_row_offsets(net.NH, net.widths, kd.w, kd.soff);
  return kd;
}


template <typename T, int HP, int RB>
int launch_energy_grad(const void* x, const void* params, void* e, void* g, void* saved, const KDesc& kd,
                       size_t smem, cudaStream_t stream) {
  auto kernel = mlp_energy_grad_kernel<T, HP, RB>;
  if (int err = mlp_smem::prepare_kernel(kernel, smem)) return err;
  const int64_t blocks = (kd.B + kWarps * RB - 1) / (kWarps * RB);
  EBMFAST_LAUNCH(kernel, static_cast<unsigned>(blocks), kThreads, smem, stream)(
      static_cast<const T*>(x), static_cast<const T*>(params), static_cast<T*>(e), static_cast<T*>(g),
      static_cast<T*>(saved), kd);
  return static_cast<int>(cudaGetLastError());
}

template <typename T, int HP, int RB>
int launch_chain(const void* x0, const void* params, void* out, void* traj, void* ens, int32_t* bad,
                 const KDesc& kd, const ChainK<T>& cp, size_t smem, cudaStream_t stream) {
  auto kernel = mlp_chain_kernel<T, HP, RB>;
  if (int err = mlp_smem::prepare_kernel(kernel, smem)) return err;
  const int64_t blocks = (kd.B + kWarps * RB - 1) / (kWarps * RB);
  EBMFAST_LAUNCH(kernel, static_cast<unsigned>(blocks), kThreads, smem, stream)(
      static_cast<const T*>(x0), static_cast<const T*>(params), static_cast<T*>(out), static_cast<T*>(traj),
      static_cast<T*>(ens), bad, kd, cp);
  return static_cast<int>(cudaGetLastError());
}

// HP x RB dispatch: RB is 4 or 1 for float, 2 or 1 for double.
template <typename T, typename F>
int dispatch(int64_t HP, int rb, F&& f) {
  constexpr int kBig = sizeof(T) == 8 ? 2 : 4;
#define EBMFAST_MLP_CASE(HPV)                                                        \
  case HPV:                                                                          \
    return rb == 1 ? f(std::integral_constant<int, HPV>{}, std::integral_constant<int, 1>{}) \
                   : f(std::integral_constant<int, HPV>{}, std::integral_constant<int, kBig>{});
  switch (HP) {
    EBMFAST_MLP_CASE(32)
    EBMFAST_MLP_CASE(64)
    EBMFAST_MLP_CASE(128)
    default: return kMLPErrShape;
  }
#undef EBMFAST_MLP_CASE
}

bool valid(const MLPNetDesc& net) {
  return mlp_cuda_shape_ok(net.D, net.NH, net.HP, net.B) && net.act >= 0 && net.act < kNumMLPActs;
}

template <typename T>
int energy_grad_typed(const void* x, const void* params, void* e, void* g, void* saved, const MLPNetDesc& net,
                      cudaStream_t stream) {
  MLPCudaPlan plan;
  if (int err = plan_for_device(MLPKernel::kForward, sizeof(T), net, &plan)) return err;
  const KDesc kd = make_desc(net, plan.resident);
  return dispatch<T>(net.HP, plan.rb, [&](auto hp, auto rb) {
    return launch_energy_grad<T, decltype(hp)::value, decltype(rb)::value>(x, params, e, g, saved, kd,
                                                                            static_cast<size_t>(plan.smem), stream);
  });
}

template <typename T>
int chain_typed(const void* x0, const void* params, void* out, void* traj, void* ens, int32_t* bad,
                const MLPNetDesc& net, const MLPChainParamsD& p, cudaStream_t stream) {
  MLPCudaPlan plan;
  if (int err = plan_for_device(MLPKernel::kChain, sizeof(T), net, &plan)) return err;
  const KDesc kd = make_desc(net, plan.resident);
  ChainK<T> cp;
  cp.lp.step_size = static_cast<T>(p.step_size);
  cp.lp.noise_scale = static_cast<T>(p.noise_scale);
  cp.lp.lo = static_cast<T>(p.lo);
  cp.lp.hi = static_cast<T>(p.hi);
  cp.lp.has_lo = p.has_lo;
  cp.lp.has_hi = p.has_hi;
  cp.lp.clip_mode = p.clip_mode;
  cp.lp.clip_value = static_cast<T>(p.clip_value);
  cp.lp.seed = p.seed;
  cp.lp.offset = p.offset;
  cp.ref_coef = static_cast<T>(p.ref_coef);
  cp.n_steps = p.n_steps;
  cp.every = p.every < 1 ? 1 : p.every;
  cp.rec_traj = p.record_trajectory;
  cp.rec_e = p.record_energies;
  cp.check = p.check_finite;
  return dispatch<T>(net.HP, plan.rb, [&](auto hp, auto rb) {
    return launch_chain<T, decltype(hp)::value, decltype(rb)::value>(x0, params, out, traj, ens, bad, kd, cp,
                                                                      static_cast<size_t>(plan.smem), stream);
  });
}

}  // namespace

int mlp_energy_grad_cuda_launch(DType dtype, const void* x, const void* params, void* energy, void* grad,
                                void* saved, const MLPNetDesc& net, void* stream) {
  if (!valid(net)) return kMLPErrShape;
  if (net.B == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32: return energy_grad_typed<float>(x, params, energy, grad, saved, net, s);
    case DType::kFloat64: return energy_grad_typed<double>(x, params, energy, grad, saved, net, s);
    default: return kMLPErrDType;
  }
}

int mlp_chain_cuda_launch(DType dtype, const void* x0, const void* params, void* out, void* trajectory,
                          void* energies, int32_t* bad_step, const MLPNetDesc& net, const MLPChainParamsD& p,
                          void* stream) {
  if (!valid(net) || p.n_steps < 0 || p.n_steps > INT32_MAX) return kMLPErrShape;
  if (net.B == 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32:
      return chain_typed<float>(x0, params, out, trajectory, energies, bad_step, net, p, s);
    case DType::kFloat64:
      return chain_typed<double>(x0, params, out, trajectory, energies, bad_step, net, p, s);
    default: return kMLPErrDType;
  }
}

}  // namespace ebmfast

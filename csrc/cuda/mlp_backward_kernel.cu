// Raw-pointer CUDA kernel of ebmfast::mlp_energy_grad_backward, the analytic double backward of
// the fused MLP energy (no torch headers: `nvcc -c` checks this file on its own). Launched by
// mlp_backward.cpp; interface and partial-sum layout: mlp_backward_kernel.cuh.
//
// Math (per particle; the CPU kernel's, csrc/cpu/mlp_kernel_impl.h backward_tiles):
//   a_l, h_l = sigma(a_l), g_l = dE/dh_l, d_l = g_l sigma'(a_l), g_{l-1} = d_l W_l.
//   v pass (l = 1..H): u_l = v_{l-1} W_l^T, v_l = u_l sigma'(a_l), r_l = u_l g_l sigma''(a_l),
//                      dW_l += d_l^T v_{l-1};   dw_out += v_H + gE h_H, db_out += gE   (v_0 = grad_g)
//   s pass (l = H..1): s_H = r_H + gE w_out sigma'(a_H), dW_l += s_l^T h_{l-1}, db_l += s_l,
//                      s_{l-1} = r_{l-1} + (s_l W_l) sigma'(a_{l-1}),  grad_x = s_1 W_1.
//
// Work split. A block is 8 warps and takes tiles of BB = 8 * RB particles (grid-stride over the
// tiles; the grid is 1-2 blocks per SM). Per-particle work (the matmuls a_l, g_{l-1}, u_l,
// s_{l-1}, the elementwise activation passes, grad_x) is split like mlp_energy_kernel.cu: warp w
// owns rows [w*RB, w*RB + RB) of the tile, lane owns hidden units j = lane + 32c (c < HP / 32),
// each output an RB x CB register-blocked dot. The weight gradients are reductions over the
// tile's particles, so they are block-wide (between __syncthreads): warp w takes input units
// i = 4w .. 4w+3 (+ 32k), lane the output units j, a 4 x CB register block summed over the BB
// rows, added into the block's own row of the partial-sum buffer in global memory (each entry
// is owned by one thread of one block: no atomics, deterministic). The caller sums the rows.
//
// Shared memory: the packed weights (resident, or one hidden matrix staged at a time when they
// do not fit, as in the forward kernel; rows padded to HP + 1 so lanes reading W[j][i] for
// consecutive j hit distinct banks), then per tile x and grad_g [BB][D], grad_e [BB], three
// [BB][HP] work buffers, and the tile state a_l and g_l (-> r_l) [NH][BB][HP] (the op's `saved`
// row layout: loaded from `saved` when the caller has it, else recomputed by a forward and
// backward here). The state is only ever touched element-wise by its owner thread, so when
// shared memory is short it moves to a per-block global scratch slice (L1/L2) before the
// weights are staged. sigma, sigma' and sigma'' are re-evaluated from a_l where needed (O(HP)
// per row against the O(HP^2) matmuls) instead of being stored.
//
// Limits: those of the forward (1..6 hidden layers, D <= 128, widths <= 128 padded to HP = 32, 64
// or 128, float32 / float64) and the block's shared memory (kMLPErrSmem when not even one row
// per warp with staged weights and the state in global memory fits: W_1 [HP][D] and one
// [HP][HP + 1] matrix must, e.g. not float64 with D = 128 and widths > 64, as in the forward).
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "ebmfast/mlp_activation.h"
#include "mlp_backward_kernel.cuh"
#include "mlp_smem_net.cuh"

// `kernel<<<grid, block, smem, stream>>>` behind a macro so that
// tests/ops/test_mlp_cuda_backward_emulated.py can compile this file with g++ and run the kernel
// on CPU threads (tests/ops/cuda_emu/cuda_runtime.h).
#ifndef EBMFAST_LAUNCH
#define EBMFAST_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif

namespace ebmfast {
namespace {

constexpr int kBThreads = kMLPCudaThreads;
constexpr int kBWarps = kMLPCudaWarps;
constexpr int kBMaxNH = kMLPCudaMaxHidden;
constexpr int kOuterMI = 4;  // input units per warp in the weight-gradient register block

// Per-launch description (kernel parameter space).
struct BDesc {
  int64_t B, D, NH, act;
  bool resident, has_saved;
  bool state_smem;             // a_l, g_l in shared memory (else in this block's slice of `scratch`)
  int64_t S;                   // saved row width 2 * sum(w_l)
  int64_t soff[kBMaxNH];       // offset of a_l in a saved row (g_l follows at + w_l)
  int64_t w[kBMaxNH];          // real hidden widths
  int64_t n_tiles, n_blocks;   // tiles of BB rows; grid size
  int64_t width;               // partial row length
  int64_t poff[kBMaxNH + 1];   // mlp_backward_offset(net, l)
};

using mlp_smem::SmemNet;


// out[r*HP + lane + 32c] = acc[r][c]
template <typename T, int HP, int RB>
__device__ __forceinline__ void store_rows(const T (&acc)[RB][HP / 32], T* out) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < RB; ++r)
#pragma unroll
    for (int c = 0; c < HP / 32; ++c) out[r * HP + lane + 32 * c] = acc[r][c];
}

// One warp, its RB rows: out[r][j] = bias[j] + sum_{i<K} in[r*ldin + i] W[j*ldw + i] for the
// lane's units j = lane + 32c (out: ld HP; bias may be nullptr).
template <typename T, int HP, int RB>
__device__ __forceinline__ void rows_times_wt(const T* in, int64_t ldin, int K, const T* W, int64_t ldw,
                                              const T* bias, T* out) {
  T acc[RB][HP / 32];
  mlp_smem::warp_rows_wt<T, HP, RB>(in, ldin, K, W, ldw, bias, acc);
  store_rows<T, HP, RB>(acc, out);
}

// One warp, its RB rows: out[r][i] = sum_{j<HP} in[r*HP + j] W[j*(HP+1) + i] for the lane's
// units i = lane + 32c (in, out: ld HP).
template <typename T, int HP, int RB>
__device__ __forceinline__ void rows_times_w(const T* in, const T* W, T* out) {
  T acc[RB][HP / 32];
  mlp_smem::warp_rows_w<T, HP, RB>(in, HP, W, HP + 1, acc);
  store_rows<T, HP, RB>(acc, out);
}

// Whole block: dst[i*HP + j] += sum_{r<BB} P[r*HP + j] Q[r*ldq + i] for i < K, j < HP, and,
// when db != nullptr, db[j] += sum_r P[r*HP + j]. dst/db: this block's partial row (global).
// Warp w takes input units i0 = kOuterMI * (w + 8k) .. + kOuterMI - 1 (Q reads broadcast),
// lane the units j = lane + 32c (P reads and global read-modify-writes coalesced).
template <typename T, int HP, int BB>
__device__ void outer_acc(const T* P, const T* Q, int64_t ldq, int K, T* dst, T* db) {
  constexpr int CB = HP / 32, MI = kOuterMI;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int i0 = warp * MI; i0 < K; i0 += kBWarps * MI) {
    T acc[MI][CB];
#pragma unroll
    for (int m = 0; m < MI; ++m)
#pragma unroll
      for (int c = 0; c < CB; ++c) acc[m][c] = T(0);
#pragma unroll 2
    for (int r = 0; r < BB; ++r) {
      T p[CB], q[MI];
#pragma unroll
      for (int c = 0; c < CB; ++c) p[c] = P[r * HP + lane + 32 * c];
#pragma unroll
      for (int m = 0; m < MI; ++m) q[m] = i0 + m < K ? Q[r * ldq + i0 + m] : T(0);
#pragma unroll
      for (int m = 0; m < MI; ++m)
#pragma unroll
        for (int c = 0; c < CB; ++c) acc[m][c] += q[m] * p[c];
    }
#pragma unroll
    for (int m = 0; m < MI; ++m) {
      if (i0 + m < K) {
#pragma unroll
        for (int c = 0; c < CB; ++c) dst[(i0 + m) * HP + lane + 32 * c] += acc[m][c];
      }
    }
  }
  if (db != nullptr) {
    for (int j = threadIdx.x; j < HP; j += kBThreads) {
      T s = T(0);
      for (int r = 0; r < BB; ++r) s += P[r * HP + j];
      db[j] += s;
    }
  }
}

template <typename T, int HP, int RB>
__global__ void __launch_bounds__(kBThreads) mlp_backward_kernel(const T* __restrict__ x, const T* __restrict__ params,
                                                                 const T* __restrict__ saved,
                                                                 const T* __restrict__ grad_e,
                                                                 const T* __restrict__ grad_g, T* __restrict__ grad_x,
                                                                 T* __restrict__ partial, T* __restrict__ scratch,
                                                                 BDesc kd) {
  constexpr int CB = HP / 32, BB = kBWarps * RB, LDH = HP + 1, TILE = BB * HP;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const MLPBwdLayout L = mlp_bwd_layout(kd.D, kd.NH, HP, RB, kd.resident, kd.state_smem);
  const SmemNet<T> net = mlp_smem::load_net<T, HP, kBThreads>(smem, L, params, kd);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t B = kd.B;
  const int D = static_cast<int>(kd.D), NH = static_cast<int>(kd.NH), wr = warp * RB;
  const T slope = net.slope;

  // this block's partial row: zeroed here, then only read-modify-written by its owner threads
  // (the __syncthreads at the top of the tile loop orders the zeroing before the first add)
  T* part = partial + static_cast<int64_t>(blockIdx.x) * kd.width;
  for (int64_t i = threadIdx.x; i < kd.width; i += kBThreads) part[i] = T(0);

  T* X = smem + L.xs;   // [BB][D] x (= h_0)
  T* V0 = smem + L.vs;  // [BB][D] grad_g (= v_0)
  T* gE = smem + L.ge;  // [BB]
  // [NH][BB][HP] a_l and g_l (r_l after the v pass). Each element is only ever touched by the
  // one thread that owns (row, unit) in the row-split (the `saved` load aside, which is followed
  // by a __syncthreads), so they may live in global memory (L1/L2) when shared memory is short.
  T* const state = kd.state_smem ? nullptr : scratch + static_cast<int64_t>(blockIdx.x) * 2 * kd.NH * TILE;
  T* A = kd.state_smem ? smem + L.a : state;
  T* G = kd.state_smem ? smem + L.g : state + kd.NH * TILE;
  // three [BB][HP] work buffers, addressed by offset (a pointer array would live in local memory)
  T* const work = smem + L.work;
  int staged = -1;

  for (int64_t tile = blockIdx.x; tile < kd.n_tiles; tile += kd.n_blocks) {
    const int64_t row0 = tile * BB;
    __syncthreads();  // the previous tile (or the set-up) is done with every buffer
    // ---- load the tile; rows past B are zero (x, grad_g, grad_e = 0 => they add exactly 0)
    for (int o = threadIdx.x; o < BB * D; o += kBThreads) {
      const int64_t row = row0 + o / D;
      X[o] = row < B ? x[row * D + o % D] : T(0);
      V0[o] = row < B ? grad_g[row * D + o % D] : T(0);
    }
    for (int r = threadIdx.x; r < BB; r += kBThreads) gE[r] = row0 + r < B ? grad_e[row0 + r] : T(0);
    if (kd.has_saved) {
      for (int l = 0; l < NH; ++l) {
        const int64_t wl = kd.w[l];
        for (int o = threadIdx.x; o < TILE; o += kBThreads) {
          const int64_t row = row0 + o / HP, j = o % HP;
          const bool ok = row < B && j < wl;
          const int64_t si = ok ? row * kd.S + kd.soff[l] + j : 0;
          A[l * TILE + o] = ok ? saved[si] : T(0);
          G[l * TILE + o] = ok ? saved[si + wl] : T(0);
        }
      }
    }
    __syncthreads();

    if (!kd.has_saved) {
      // ---- forward: a_l into A, h_l into work buffer 0 (rows of this warp only: __syncwarp suffices)
      T* hb = work + wr * HP;
      for (int l = 0; l < NH; ++l) {
        T* al = A + l * TILE + wr * HP;
        if (l == 0) {
          rows_times_wt<T, HP, RB>(X + wr * D, D, D, net.W1, net.ld1, net.bias, al);
        } else {
          const T* W = mlp_smem::layer_weights<T, HP, kBThreads>(net, kd.resident, staged, l);
          rows_times_wt<T, HP, RB>(hb, HP, HP, W, LDH, net.bias + l * HP, al);
        }
        if (l + 1 < NH) {
          __syncwarp();  // lanes are done reading h_{l-1}
#pragma unroll 1
          for (int q = 0; q < RB * CB; ++q) {
            const int r = q / CB, j = lane + 32 * (q % CB);
            T h, d1, d2;
            mlp_smem::act_eval<false, T>(kd.act, al[r * HP + j], slope, h, d1, &d2);
            hb[r * HP + j] = h;
          }
          __syncwarp();
        }
      }
      __syncwarp();
      // ---- g_l = dE/dh_l: g_H = w_out, g_{l-1} = (g_l sigma'(a_l)) W_l; d_l into work buffer 0
      {
        T* gl = G + (NH - 1) * TILE + wr * HP;
#pragma unroll 1
        for (int q = 0; q < RB * CB; ++q) {
          const int r = q / CB, j = lane + 32 * (q % CB);
          gl[r * HP + j] = net.wout[j];
        }
      }
      for (int l = NH - 1; l >= 1; --l) {
        const T* al = A + l * TILE + wr * HP;
        const T* gl = G + l * TILE + wr * HP;
#pragma unroll 1
        for (int q = 0; q < RB * CB; ++q) {
          const int r = q / CB, j = lane + 32 * (q % CB);
          T h, d1, d2;
          mlp_smem::act_eval<false, T>(kd.act, al[r * HP + j], slope, h, d1, &d2);
          hb[r * HP + j] = gl[r * HP + j] * d1;
        }
        __syncwarp();
        const T* W = mlp_smem::layer_weights<T, HP, kBThreads>(net, kd.resident, staged, l);
        rows_times_w<T, HP, RB>(hb, W, G + (l - 1) * TILE + wr * HP);
        __syncwarp();  // lanes are done reading d_l before the next layer overwrites it
      }
      __syncthreads();
    }

    // ---- v pass: u_l = v_{l-1} W_l^T -> v_l (in place), r_l -> G, d_l -> work buffer 2;
    // dW_l += d_l^T v_{l-1}. v_l alternates between work buffers 0 and 1.
    const T* vin = V0;
    int64_t ldv = D;
    int kin = D;
    T* Dl = work + 2 * TILE;
    for (int l = 0; l < NH; ++l) {
      T* U = work + (l & 1) * TILE;
      const T* W = l == 0 ? net.W1 : mlp_smem::layer_weights<T, HP, kBThreads>(net, kd.resident, staged, l);
      rows_times_wt<T, HP, RB>(vin + wr * ldv, ldv, kin, W, l == 0 ? net.ld1 : LDH, nullptr, U + wr * HP);
      {
        const T* al = A + l * TILE + wr * HP;
        T* gl = G + l * TILE + wr * HP;
        T* uw = U + wr * HP;
        T* dw = Dl + wr * HP;
        // each lane reads and writes only its own elements here: no sync needed before
#pragma unroll 1
        for (int q = 0; q < RB * CB; ++q) {
          const int e = (q / CB) * HP + lane + 32 * (q % CB);
          T h, d1, d2;
          mlp_smem::act_eval<true, T>(kd.act, al[e], slope, h, d1, &d2);
          const T u = uw[e], g = gl[e];
          gl[e] = u * g * d2;  // r_l
          dw[e] = g * d1;      // d_l
          uw[e] = u * d1;      // v_l
        }
      }
      __syncthreads();
      outer_acc<T, HP, BB>(Dl, vin, ldv, kin, part + kd.poff[l], nullptr);
      __syncthreads();  // every warp is done reading v_{l-1} and d_l
      vin = U;
      ldv = HP;
      kin = HP;
    }
    // ---- dw_out += sum_rows v_H + gE h_H, db_out += sum_rows gE  (h_H into work buffer 2)
    {
      const T* al = A + (NH - 1) * TILE + wr * HP;
      T* hw = Dl + wr * HP;
#pragma unroll 1
      for (int q = 0; q < RB * CB; ++q) {
        const int e = (q / CB) * HP + lane + 32 * (q % CB);
        T h, d1, d2;
        mlp_smem::act_eval<false, T>(kd.act, al[e], slope, h, d1, &d2);
        hw[e] = h;
      }
    }
    __syncthreads();
    {
      T* dwo = part + kd.poff[NH];
      for (int j = threadIdx.x; j < HP; j += kBThreads) {
        T s = T(0);
        for (int r = 0; r < BB; ++r) s += vin[r * HP + j] + gE[r] * Dl[r * HP + j];
        dwo[j] += s;
      }
      if (threadIdx.x == kBThreads - 1) {
        T s = T(0);
        for (int r = 0; r < BB; ++r) s += gE[r];
        dwo[HP] += s;
      }
    }
    // ---- s pass. s_H = r_H + gE w_out sigma'(a_H) into the work buffer v_H does not use
    T* Sb = work + (NH & 1) * TILE;
    T* Ub = work + ((NH - 1) & 1) * TILE;
    T* Hb = work + 2 * TILE;
    {
      const T* al = A + (NH - 1) * TILE + wr * HP;
      const T* rl = G + (NH - 1) * TILE + wr * HP;
      T* sw = Sb + wr * HP;
#pragma unroll 1
      for (int q = 0; q < RB * CB; ++q) {
        const int r = q / CB, j = lane + 32 * (q % CB), e = r * HP + j;
        T h, d1, d2;
        mlp_smem::act_eval<false, T>(kd.act, al[e], slope, h, d1, &d2);
        sw[e] = rl[e] + gE[wr + r] * net.wout[j] * d1;
      }
    }
    __syncthreads();  // the dw_out sums are done with v_H (Ub) and h_H (Hb)
    for (int l = NH - 1; l >= 1; --l) {
      // s_{l-1} = r_{l-1} + (s_l W_l) sigma'(a_{l-1}) into Ub; h_{l-1} into Hb
      const T* W = mlp_smem::layer_weights<T, HP, kBThreads>(net, kd.resident, staged, l);
      rows_times_w<T, HP, RB>(Sb + wr * HP, W, Ub + wr * HP);
      {
        const T* al = A + (l - 1) * TILE + wr * HP;
        const T* rl = G + (l - 1) * TILE + wr * HP;
        T* uw = Ub + wr * HP;
        T* hw = Hb + wr * HP;
#pragma unroll 1
        for (int q = 0; q < RB * CB; ++q) {
          const int e = (q / CB) * HP + lane + 32 * (q % CB);
          T h, d1, d2;
          mlp_smem::act_eval<false, T>(kd.act, al[e], slope, h, d1, &d2);
          hw[e] = h;
          uw[e] = rl[e] + uw[e] * d1;
        }
      }
      __syncthreads();
      // dW_l += s_l^T h_{l-1}, db_l += sum_rows s_l
      outer_acc<T, HP, BB>(Sb, Hb, HP, HP, part + kd.poff[l], part + kd.poff[l] + HP * HP);
      __syncthreads();  // every warp is done reading s_l before it is overwritten
      T* t = Sb;
      Sb = Ub;
      Ub = t;
    }
    // ---- layer 1 (0-based 0): dW_1 += s_1^T x, db_1 += sum_rows s_1, grad_x = s_1 W_1
    outer_acc<T, HP, BB>(Sb, X, D, D, part + kd.poff[0], part + kd.poff[0] + static_cast<int64_t>(D) * HP);
    {
      const T* sw = Sb + wr * HP;
      for (int o = lane; o < RB * D; o += 32) {
        const int r = o / D, m = o % D;
        T s = T(0);
        for (int j = 0; j < HP; ++j) s += sw[r * HP + j] * net.W1[j * net.ld1 + m];
        const int64_t row = row0 + wr + r;
        if (row < B) grad_x[row * D + m] = s;
      }
    }
  }
}

// ------------------------------------------------------------------------------ host side
bool valid_net(const MLPNetDesc& net) {
  return mlp_cuda_shape_ok(net.D, net.NH, net.HP, net.B) && net.act >= 0 && net.act < kNumMLPActs;
}

BDesc make_bdesc(const MLPNetDesc& net, const MLPCudaPlan& plan, bool has_saved) {
  BDesc kd{};
  kd.B = net.B;
  kd.D = net.D;
  kd.NH = net.NH;
  kd.act = net.act;
  kd.resident = plan.resident;
  kd.state_smem = plan.state_in_smem;
  kd.has_saved = has_saved;
  kd.S = mlp_smem::saved_row_offsets(net.NH, net.widths, kd.w, kd.soff);
  kd.n_tiles = (net.B + kBWarps * plan.rb - 1) / (kBWarps * plan.rb);
  kd.n_blocks = plan.n_blocks;
  kd.width = plan.width;
  for (int l = 0; l <= kBMaxNH; ++l) kd.poff[l] = l <= net.NH ? mlp_backward_offset(net, l) : 0;
  return kd;
}

template <typename T, int HP, int RB>
int launch_backward(const void* x, const void* params, const void* saved, const void* ge, const void* gg, void* gx,
                    void* partial, void* scratch, const BDesc& kd, size_t smem, cudaStream_t stream) {
  auto kernel = mlp_backward_kernel<T, HP, RB>;
  if (int err = mlp_smem::prepare_kernel(kernel, smem)) return err;
  EBMFAST_LAUNCH(kernel, static_cast<unsigned>(kd.n_blocks), kBThreads, smem, stream)(
      static_cast<const T*>(x), static_cast<const T*>(params), static_cast<const T*>(saved),
      static_cast<const T*>(ge), static_cast<const T*>(gg), static_cast<T*>(gx), static_cast<T*>(partial),
      static_cast<T*>(scratch), kd);
  return static_cast<int>(cudaGetLastError());
}

template <int V>
using IC = std::integral_constant<int, V>;

template <typename T>
int backward_typed(const void* x, const void* params, const void* saved, const void* ge, const void* gg, void* gx,
                   void* partial, void* scratch, const MLPNetDesc& net, const MLPCudaPlan& plan,
                   cudaStream_t stream) {
  constexpr int kBig = sizeof(T) == 8 ? 2 : 4;
  if (plan.rb != 1 && plan.rb != kBig) return kMLPErrShape;
  const BDesc kd = make_bdesc(net, plan, saved != nullptr);
  auto go = [&](auto hp, auto rb) {
    return launch_backward<T, decltype(hp)::value, decltype(rb)::value>(x, params, saved, ge, gg, gx, partial,
                                                                         scratch, kd,
                                                                         static_cast<size_t>(plan.smem), stream);
  };
  const bool one = plan.rb == 1;
  switch (net.HP) {
    case 32: return one ? go(IC<32>{}, IC<1>{}) : go(IC<32>{}, IC<kBig>{});
    case 64: return one ? go(IC<64>{}, IC<1>{}) : go(IC<64>{}, IC<kBig>{});
    case 128: return one ? go(IC<128>{}, IC<1>{}) : go(IC<128>{}, IC<kBig>{});
    default: return kMLPErrShape;
  }
}

}  // namespace

int mlp_backward_cuda_plan(DType dtype, const MLPNetDesc& net, MLPCudaPlan* plan) {
  if (!valid_net(net)) return kMLPErrShape;
  if (dtype != DType::kFloat32 && dtype != DType::kFloat64) return kMLPErrDType;
  *plan = MLPCudaPlan{};
  plan->width = mlp_backward_partial_width(net);
  if (net.B == 0) return 0;  // nothing to launch
  MLPCudaDevice dev;
  if (int err = mlp_smem::current_device(&dev)) return err;
  *plan = mlp_cuda_plan(MLPKernel::kBackward, net.D, net.NH, net.HP, net.B, dtype == DType::kFloat64 ? 8 : 4, dev);
  return plan->rc;
}

int mlp_energy_grad_backward_cuda_launch(DType dtype, const void* x, const void* params, const void* saved,
                                         const void* grad_e, const void* grad_g, void* grad_x, void* partial,
                                         void* scratch, const MLPNetDesc& net, const MLPCudaPlan& plan,
                                         void* stream) {
  if (!valid_net(net)) return kMLPErrShape;
  if (net.B == 0) return 0;
  if (plan.n_blocks < 1 || plan.width != mlp_backward_partial_width(net)) return kMLPErrShape;
  const int64_t state = 2 * net.NH * kBWarps * plan.rb * net.HP;
  if (!plan.state_in_smem && (scratch == nullptr || plan.scratch_per_block != state)) return kMLPErrShape;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kFloat32:
      return backward_typed<float>(x, params, saved, grad_e, grad_g, grad_x, partial, scratch, net, plan, s);
    case DType::kFloat64:
      return backward_typed<double>(x, params, saved, grad_e, grad_g, grad_x, partial, scratch, net, plan, s);
    default: return kMLPErrDType;
  }
}

}  // namespace ebmfast

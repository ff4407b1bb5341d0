// Launch plan of the CUDA MLP kernels (csrc/cuda/mlp_energy_kernel.cu: forward and chain,
// csrc/cuda/mlp_backward_kernel.cu: double backward): the shared-memory layouts of a block, and
// which configuration a network gets on a device (particle rows per warp, hidden weights
// resident in shared memory or staged one matrix at a time, the backward's tile state in shared
// or global memory) with its bytes of shared memory.
//
// One copy for everyone: the kernels address shared memory through the layouts, the launchers
// launch what mlp_cuda_plan() picks, and the CPU op ebmfast::mlp_cuda_plan (csrc/mlp_cuda_plan.cpp,
// built with or without CUDA) reports the same plan to Python (ebmfast/ops/_cuda_plan.py).
// Plain C++: no torch, no CUDA runtime (nvcc sees the layout functions as host + device code).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define EBMFAST_PLAN_HD __host__ __device__ inline
#else
#define EBMFAST_PLAN_HD inline
#endif

namespace ebmfast {

constexpr int kMLPCudaThreads = 256;  // threads per block of every MLP kernel
constexpr int kMLPCudaWarps = kMLPCudaThreads / 32;
constexpr int kMLPCudaMaxHidden = 6;
constexpr int kMLPCudaMaxD = 128;
constexpr int kMLPCudaMaxWidth = 128;
// Static shared memory budgeted per block next to the dynamic buffer: the limit check is
// dynamic + budget <= the device's opt-in maximum per block. The kernels declare none today
// (ptxas reports 0 bytes for sm_80 and sm_90); the launchers refuse to launch a kernel whose
// real static size (cudaFuncGetAttributes) exceeds the budget, so a plan accepted here launches.
constexpr int64_t kMLPCudaStaticSmemBudget = 1024;
// Shared memory the runtime reserves per resident block (sm_80 and newer), for blocks per SM.
constexpr int64_t kMLPCudaReservedSmemPerBlock = 1024;

// Return codes beyond cudaError_t values (which are >= 0).
enum MLPCudaError : int {
  kMLPErrShape = -2,   // a network or argument the kernels do not take
  kMLPErrSmem = -3,    // not even the smallest layout fits in the block's shared memory
  kMLPErrDType = -4,   // not float32 / float64
  kMLPErrStatic = -5,  // a kernel's static shared memory exceeds kMLPCudaStaticSmemBudget
};

enum class MLPKernel : int { kForward = 0, kChain = 1, kBackward = 2 };

// HP, the padded width of the packed weights, for a max hidden width: 32, 64 or 128, or -1 when
// the kernels do not take it.
EBMFAST_PLAN_HD int64_t mlp_cuda_padded_width(int64_t max_width) {
  if (max_width < 1 || max_width > kMLPCudaMaxWidth) return -1;
  return max_width <= 32 ? 32 : (max_width <= 64 ? 64 : 128);
}

// Whether the kernels take x [B, D] through NH hidden layers padded to HP.
EBMFAST_PLAN_HD bool mlp_cuda_shape_ok(int64_t D, int64_t NH, int64_t HP, int64_t B) {
  return D >= 1 && D <= kMLPCudaMaxD && NH >= 1 && NH <= kMLPCudaMaxHidden && B >= 0 && mlp_cuda_padded_width(HP) == HP;
}

// Row stride of W_1 in shared memory: odd, so lanes reading W[j][i] for consecutive j hit
// distinct banks.
EBMFAST_PLAN_HD int64_t mlp_ld_first(int64_t D) { return D % 2 == 0 ? D + 1 : D; }

// Offsets (elements) of the packed weights at the start of a block's shared memory: W_1
// [HP][ld_first(D)], hidden matrices [HP][HP + 1] (all NH - 1 resident, or one staging buffer),
// biases [NH][HP], w_out [HP]; `end` is where the kernel's own buffers begin.
struct MLPWeightOffsets {
  int64_t w1, wh, bias, wout, end;
};

EBMFAST_PLAN_HD MLPWeightOffsets mlp_weight_offsets(int64_t D, int64_t NH, int64_t HP, bool resident) {
  MLPWeightOffsets W{};
  int64_t o = 0;
  W.w1 = o;
  o += HP * mlp_ld_first(D);
  W.wh = o;
  o += (NH > 1 ? (resident ? NH - 1 : 1) : 0) * HP * (HP + 1);
  W.bias = o;
  o += NH * HP;
  W.wout = o;
  o += HP;
  W.end = o;
  return W;
}

// Forward / chain block (8 warps, BB = 8 * RB particles): the weights, then x and grad_x
// [BB][D], the activations [BB][HP + 1] and act'(a_l) [BB][NH][HP]. Elements of T.
struct MLPFwdLayout {
  int64_t w1, wh, bias, wout, xs, gx, hbuf, dbuf, total;
};

EBMFAST_PLAN_HD MLPFwdLayout mlp_fwd_layout(int64_t D, int64_t NH, int64_t HP, int64_t RB, bool resident) {
  MLPFwdLayout L{};
  const int64_t bb = kMLPCudaWarps * RB;
  const MLPWeightOffsets W = mlp_weight_offsets(D, NH, HP, resident);
  L.w1 = W.w1;
  L.wh = W.wh;
  L.bias = W.bias;
  L.wout = W.wout;
  int64_t o = W.end;
  L.xs = o;
  o += bb * D;
  L.gx = o;
  o += bb * D;
  L.hbuf = o;
  o += bb * (HP + 1);
  L.dbuf = o;
  o += bb * NH * HP;
  L.total = o;
  return L;
}

// Double-backward block: the weights, then x and grad_g [BB][D], grad_e [BB], the tile state
// a_l and g_l [NH][BB][HP] each (when state_smem; else in global scratch), three [BB][HP] work
// buffers. Elements of T.
struct MLPBwdLayout {
  int64_t w1, wh, bias, wout, xs, vs, ge, a, g, work, total;
};

EBMFAST_PLAN_HD MLPBwdLayout mlp_bwd_layout(int64_t D, int64_t NH, int64_t HP, int64_t RB, bool resident,
                                            bool state_smem) {
  MLPBwdLayout L{};
  const int64_t bb = kMLPCudaWarps * RB;
  const MLPWeightOffsets W = mlp_weight_offsets(D, NH, HP, resident);
  L.w1 = W.w1;
  L.wh = W.wh;
  L.bias = W.bias;
  L.wout = W.wout;
  int64_t o = W.end;
  L.xs = o;
  o += bb * D;
  L.vs = o;
  o += bb * D;
  L.ge = o;
  o += bb;
  L.a = o;
  o += state_smem ? NH * bb * HP : 0;
  L.g = o;
  o += state_smem ? NH * bb * HP : 0;
  L.work = o;
  o += 3 * bb * HP;
  L.total = o;
  return L;
}

// Offset of layer l's block (dW_l^T [K_l][HP], then db_l [HP]; K_0 = D, else HP) in a row of the
// backward's per-block partial sums; l == NH: dw_out [HP], then db_out.
EBMFAST_PLAN_HD int64_t mlp_backward_offset(int64_t D, int64_t NH, int64_t HP, int64_t l) {
  int64_t o = 0;
  for (int64_t k = 0; k < l && k < NH; ++k) o += ((k == 0 ? D : HP) + 1) * HP;
  return o;
}

EBMFAST_PLAN_HD int64_t mlp_backward_partial_width(int64_t D, int64_t NH, int64_t HP) {
  return mlp_backward_offset(D, NH, HP, NH) + HP + 1;
}

// What the plan needs to know of the device (cudaDevAttr* / torch's device properties).
struct MLPCudaDevice {
  int64_t smem_optin = 0;   // MaxSharedMemoryPerBlockOptin
  int64_t smem_per_sm = 0;  // MaxSharedMemoryPerMultiprocessor
  int64_t sms = 1;          // MultiProcessorCount
};

struct MLPCudaPlan {
  int rc = 0;                     // 0, kMLPErrShape, kMLPErrDType or kMLPErrSmem
  int rb = 0;                     // particle rows per warp; a block holds kMLPCudaWarps * rb particles
  bool resident = false;          // every hidden matrix in shared memory (else one staged at a time)
  bool state_in_smem = false;     // backward: the tile's a_l, g_l in shared memory (else in `scratch`)
  int64_t smem = 0;               // dynamic shared memory per block, bytes
  int64_t smem_min = 0;           // the smallest layout's dynamic + static bytes (what the device must offer)
  int64_t n_blocks = 0;           // grid size (0 when B == 0)
  int64_t width = 0;              // backward: length of a partial-sum row
  int64_t scratch_per_block = 0;  // backward: elements of global scratch per block (0 when state_in_smem)
};

// The plan for x [B, D] of `elem`-byte floats through NH hidden layers padded to HP, on `dev`.
//
// Rows per warp: 4 (float32) / 2 (float64) when the blocks that gives still cover every SM, else
// 1 first (few particles want more, smaller blocks). Then the first layout that fits, with
// kMLPCudaStaticSmemBudget on top: forward/chain: resident weights, else staged; backward:
// resident weights + state in shared memory, resident + state in global scratch, staged + shared
// state, staged + global state (the state is ~2 NH BB HP elements touched once per pass; staging
// reloads NH - 1 HP x HP matrices per pass, so global state is the cheaper concession).
// Backward grid: as many blocks as fit on the device at once (by shared memory, at most 2 per
// SM: ptxas gives these kernels up to 128 registers a thread), at most one per tile of particles,
// and a partial-sum buffer of at most 256 MiB; forward/chain: one block per tile.
inline MLPCudaPlan mlp_cuda_plan(MLPKernel kernel, int64_t D, int64_t NH, int64_t HP, int64_t B, int64_t elem,
                                 const MLPCudaDevice& dev) {
  MLPCudaPlan plan;
  if (!mlp_cuda_shape_ok(D, NH, HP, B)) {
    plan.rc = kMLPErrShape;
    return plan;
  }
  if (elem != 4 && elem != 8) {
    plan.rc = kMLPErrDType;
    return plan;
  }
  const bool bwd = kernel == MLPKernel::kBackward;
  if (bwd) plan.width = mlp_backward_partial_width(D, NH, HP);
  auto bytes = [&](int64_t rb, bool resident, bool state_smem) {
    const int64_t n = bwd ? mlp_bwd_layout(D, NH, HP, rb, resident, state_smem).total
                          : mlp_fwd_layout(D, NH, HP, rb, resident).total;
    return n * elem;
  };
  plan.smem_min = bytes(1, false, false) + kMLPCudaStaticSmemBudget;
  const int64_t big = elem == 8 ? 2 : 4;
  const int64_t sms = dev.sms < 1 ? 1 : dev.sms;
  int64_t order[2] = {big, 1};
  if ((B + kMLPCudaWarps * big - 1) / (kMLPCudaWarps * big) < sms) {
    order[0] = 1;
    order[1] = big;
  }
  constexpr bool kChoices[4][2] = {{true, true}, {true, false}, {false, true}, {false, false}};  // resident, state
  for (int64_t rb : order) {
    for (const auto& ch : kChoices) {
      const bool resident = ch[0], state_smem = ch[1];
      if (!bwd && !state_smem) continue;  // the forward keeps no tile state
      const int64_t need = bytes(rb, resident, state_smem);
      if (need + kMLPCudaStaticSmemBudget > dev.smem_optin) continue;
      const int64_t n_tiles = (B + kMLPCudaWarps * rb - 1) / (kMLPCudaWarps * rb);
      plan.rb = static_cast<int>(rb);
      plan.resident = resident;
      plan.state_in_smem = bwd && state_smem;
      plan.smem = need;
      plan.n_blocks = n_tiles;
      if (bwd) {
        int64_t per_sm = dev.smem_per_sm / (need + kMLPCudaStaticSmemBudget + kMLPCudaReservedSmemPerBlock);
        per_sm = per_sm < 1 ? 1 : (per_sm > 2 ? 2 : per_sm);
        int64_t blocks = sms * per_sm;
        const int64_t cap = (int64_t{256} << 20) / (plan.width * elem);
        if (blocks > cap) blocks = cap < 1 ? 1 : cap;
        plan.n_blocks = blocks < n_tiles ? blocks : n_tiles;
        plan.scratch_per_block = state_smem ? 0 : 2 * NH * kMLPCudaWarps * rb * HP;
      }
      return plan;
    }
  }
  plan.rc = kMLPErrSmem;
  return plan;
}

}  // namespace ebmfast

// CPU kernels of the fused MLP energy ops (schemas: csrc/mlp_schemas.cpp):
//   mlp_energy_grad           E and grad_x E (and the tensors the backward needs) in one pass
//   mlp_energy_grad_backward  the analytic VJP of (E, grad_x E): second-order terms directly
//   mlp_langevin_chain        K Langevin steps, each particle tile kept in cache for all K steps
//
// Work is split over particle tiles with at::parallel_for; the tile kernels (mlp_kernel_impl.h)
// are compiled three times, baseline x86-64, AVX2+FMA and AVX-512, and the best build the CPU
// runs is picked at run time (EBMFAST_MLP_ISA=generic|avx2 caps it, for tests). No -march=native.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EBMFAST_MLP_HAVE_X86 1
#else
#define EBMFAST_MLP_HAVE_X86 0
#endif

#include "ebmfast/langevin_step.h"
#include "ebmfast/mlp_activation.h"
#include "ebmfast/mlp_check.h"
#include "ebmfast/philox.h"
#include "mlp_energy_cpu.h"


namespace ebmfast {
namespace mlpk {

constexpr int64_t kNR = 16;  // output columns per micro-tile: two 8-float AVX2 vectors
constexpr int64_t kMR = 6;   // rows per micro-tile: 12 accumulators + 2 B vectors + 1 broadcast = 15 ymm

inline int64_t pad_nr(int64_t n) { return (n + kNR - 1) / kNR * kNR; }

// The packed network as raw pointers (owned by PackedNet below).
template <typename T>
struct NetView {
  int64_t H = 0, D = 0;          // hidden layers, input dim
  const int64_t* w = nullptr;    // w[0] = D, w[1..H] hidden widths
  const int64_t* pw = nullptr;   // widths padded to kNR
  const T* const* WT = nullptr;  // [H]: [w_{l-1}][pw_l]
  const T* const* Wp = nullptr;  // [H]: [w_l][pw_{l-1}]
  const T* const* b = nullptr;   // [H]: [pw_l] (zeros without bias)
  const T* wout = nullptr;       // [pw_H] (zero padded)
  T bout = 0;
  int64_t act = 0;
  T slope = 0;
  int64_t S = 0;                 // saved row width: 2 * sum(w_l)
  const int64_t* soff = nullptr; // [H]: offset of a_l in a saved row (g_l follows at + w_l)
  int64_t wmax = 0;              // max padded width
};

template <typename T>
struct ChainParams {
  int64_t B = 0, n_steps = 0, every = 1;
  bool check_finite = true;
  T ref_coef = 0;
  LangevinParams<T> lp{};
};

}  // namespace mlpk
}  // namespace ebmfast

// ---- the chain update (noise, clip, clamp) without FMA contraction, twice: see mlp_update_impl.h
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define EBMFAST_MLP_UPD_NS upd_generic
#include "mlp_update_impl.h"
#undef EBMFAST_MLP_UPD_NS
#if EBMFAST_MLP_HAVE_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define EBMFAST_MLP_UPD_NS upd_avx2
#include "mlp_update_impl.h"
#undef EBMFAST_MLP_UPD_NS
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512cd,avx2,fma,bmi,bmi2,prefer-vector-width=512")
#define EBMFAST_MLP_UPD_NS upd_avx512
#include "mlp_update_impl.h"
#undef EBMFAST_MLP_UPD_NS
#pragma GCC pop_options
#endif
#pragma GCC pop_options

// ---- the tile kernels, three times (baseline, AVX2+FMA, AVX-512)
#define EBMFAST_MLP_NS generic
#define EBMFAST_MLP_AVX2 0
#define EBMFAST_MLP_AVX512 0
#define EBMFAST_MLP_UPD_NS upd_generic
#include "mlp_kernel_impl.h"
#undef EBMFAST_MLP_NS
#undef EBMFAST_MLP_AVX2
#undef EBMFAST_MLP_AVX512
#undef EBMFAST_MLP_UPD_NS

#if EBMFAST_MLP_HAVE_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define EBMFAST_MLP_NS avx2
#define EBMFAST_MLP_AVX2 1
#define EBMFAST_MLP_AVX512 0
#define EBMFAST_MLP_UPD_NS upd_avx2
#include "mlp_kernel_impl.h"
#undef EBMFAST_MLP_NS
#undef EBMFAST_MLP_AVX2
#undef EBMFAST_MLP_AVX512
#undef EBMFAST_MLP_UPD_NS
#pragma GCC pop_options

// AVX-512 (x86-64-v4): the activations' element loops run 16 wide (measured 2x faster than
// AVX2 for SiLU on Zen 4) and the matmul block holds 12 rows.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512cd,avx2,fma,bmi,bmi2,prefer-vector-width=512")
#define EBMFAST_MLP_NS avx512
#define EBMFAST_MLP_AVX2 1
#define EBMFAST_MLP_AVX512 1
#define EBMFAST_MLP_UPD_NS upd_avx512
#include "mlp_kernel_impl.h"
#undef EBMFAST_MLP_NS
#undef EBMFAST_MLP_AVX2
#undef EBMFAST_MLP_AVX512
#undef EBMFAST_MLP_UPD_NS
#pragma GCC pop_options
#endif

namespace ebmfast {
namespace mlpk {
namespace {

enum Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

// The best build this CPU runs; EBMFAST_MLP_ISA=generic|avx2 caps it (tests compare builds).
Isa cpu_isa() {
#if EBMFAST_MLP_HAVE_X86
  static const Isa isa = [] {
    __builtin_cpu_init();
    Isa best = kGeneric;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = kAvx2;
    if (best == kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd"))
      best = kAvx512;
    const char* env = std::getenv("EBMFAST_MLP_ISA");
    const std::string cap = env != nullptr ? env : "";
    if (cap == "generic") return kGeneric;
    if (cap == "avx2") return best < kAvx2 ? best : kAvx2;
    return best;
  }();
  return isa;
#else
  return kGeneric;
#endif
}

// Runs F(ns) with the namespace of the best build: EBMFAST_MLP_CALL(fn, args...).
#if EBMFAST_MLP_HAVE_X86
#define EBMFAST_MLP_CALL(FN, ...)                                  \
  do {                                                             \
    switch (cpu_isa()) {                                           \
      case kAvx512: avx512::FN(__VA_ARGS__); break;                \
      case kAvx2: avx2::FN(__VA_ARGS__); break;                    \
      default: generic::FN(__VA_ARGS__); break;                    \
    }                                                              \
  } while (0)
#else
#define EBMFAST_MLP_CALL(FN, ...) generic::FN(__VA_ARGS__)
#endif

// Packs weights once per call (a few hundred KB at most; the kernels then read them from cache
// for every tile and step).
template <typename T>
struct PackedNet {
  std::vector<int64_t> w, pw, soff;
  at::Tensor store;
  std::vector<const T*> WT, Wp, b;
  NetView<T> view;

  PackedNet(const at::Tensor& x, const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
            int64_t act, double slope) {
    const int64_t H = static_cast<int64_t>(weights.size()) - 1;
    w.push_back(x.size(1));
    for (int64_t l = 0; l < H; ++l) w.push_back(weights[l].size(0));
    for (auto v : w) pw.push_back(pad_nr(v));
    // one zero-filled allocation for every packed array (fewer allocator calls per op call)
    int64_t total = pw[H];
    for (int64_t l = 1; l <= H; ++l) total += w[l - 1] * pw[l] + w[l] * pw[l - 1] + pw[l];
    store = at::zeros({total}, x.options());
    T* base = store.mutable_data_ptr<T>();
    int64_t off = 0;
    for (int64_t l = 1; l <= H; ++l) {
      const T* W = weights[l - 1].const_data_ptr<T>();  // [w_l][w_{l-1}]
      T* wtp = base;
      T* wpp = wtp + w[l - 1] * pw[l];
      T* bb = wpp + w[l] * pw[l - 1];
      base = bb + pw[l];
      for (int64_t o = 0; o < w[l]; ++o)
        for (int64_t i = 0; i < w[l - 1]; ++i) {
          wtp[i * pw[l] + o] = W[o * w[l - 1] + i];
          wpp[o * pw[l - 1] + i] = W[o * w[l - 1] + i];
        }
      if (!biases.empty()) std::copy_n(biases[l - 1].const_data_ptr<T>(), w[l], bb);
      WT.push_back(wtp);
      Wp.push_back(wpp);
      b.push_back(bb);
      soff.push_back(off);
      off += 2 * w[l];
    }
    T* wo = base;
    std::copy_n(weights[H].const_data_ptr<T>(), w[H], wo);
    view.H = H;
    view.D = w[0];
    view.w = w.data();
    view.pw = pw.data();
    view.WT = WT.data();
    view.Wp = Wp.data();
    view.b = b.data();
    view.wout = wo;
    view.bout = biases.empty() ? T(0) : biases[H].const_data_ptr<T>()[0];
    view.act = act;
    view.slope = static_cast<T>(slope);
    view.S = off;
    view.soff = soff.data();
    view.wmax = *std::max_element(pw.begin(), pw.end());
  }
};

// Tiles: at most `tmax` rows, a multiple of kMR, and a tile count that is a multiple of the
// thread count so every thread gets the same number of equal tiles.
int64_t tile_rows(int64_t B, int64_t tmax) {
  const int64_t nt = std::max<int64_t>(1, at::get_num_threads());
  const int64_t per = std::max<int64_t>(1, (B + nt - 1) / nt);
  const int64_t chunks = (per + tmax - 1) / tmax;
  const int64_t rows = (per + chunks - 1) / chunks;
  return std::max<int64_t>(kMR, (rows + kMR - 1) / kMR * kMR);
}

// Rows per tile so a tile's buffers (about n_bufs [TP, width] arrays) stay within ~192 KB of L2.
template <typename T>
int64_t tile_cap(const NetView<T>& net, int64_t n_bufs_per_layer, int64_t n_bufs_fixed, int64_t hard_max) {
  int64_t row_bytes = n_bufs_fixed * net.wmax;
  for (int64_t l = 1; l <= net.H; ++l) row_bytes += n_bufs_per_layer * net.pw[l];
  row_bytes *= static_cast<int64_t>(sizeof(T));
  const int64_t cap = (192 * 1024) / std::max<int64_t>(row_bytes, 1);
  return std::min(hard_max, std::max<int64_t>(kMR, cap / kMR * kMR));
}

}  // namespace

// mlp_energy_grad and mlp_energy_grad_backward (declared in mlp_energy_cpu.h: the penalty ops call them too)
std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_energy_grad_cpu(const at::Tensor& x, at::TensorList weights_l,
                                                                   at::TensorList biases_l, int64_t act, double slope,
                                                                   bool save) {
  std::vector<at::Tensor> weights(weights_l.begin(), weights_l.end()), biases(biases_l.begin(), biases_l.end());
  check_mlp("ebmfast.mlp_energy_grad", x, weights, biases, act, true);
  const int64_t B = x.size(0), D = x.size(1);
  at::Tensor e = at::empty({B}, x.options());
  at::Tensor g = at::empty({B, D}, x.options());
  int64_t S = 0;
  for (size_t i = 0; i + 1 < weights.size(); ++i) S += 2 * weights[i].size(0);
  at::Tensor saved = save ? at::empty({B, S}, x.options()) : at::empty({0}, x.options());
  if (B == 0) return {e, g, saved};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlp_energy_grad_cpu", [&] {
    PackedNet<scalar_t> net(x, weights, biases, act, slope);
    const int64_t TP = tile_rows(B, tile_cap(net.view, 1, 6, 96));
    const int64_t n_tiles = (B + TP - 1) / TP;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* ep = e.mutable_data_ptr<scalar_t>();
    scalar_t* gp = g.mutable_data_ptr<scalar_t>();
    scalar_t* sp = save ? saved.mutable_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, n_tiles, 1, [&](int64_t t0, int64_t t1) {
      EBMFAST_MLP_CALL(energy_grad_tiles<scalar_t>, net.view, xp, ep, gp, sp, B, TP, t0, t1);
    });
  });
  return {e, g, saved};
}

std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> mlp_energy_grad_backward_cpu(
    const at::Tensor& x, at::TensorList weights_l, at::TensorList biases_l, int64_t act, double slope,
    const at::Tensor& saved_in, const at::Tensor& grad_e, const at::Tensor& grad_g) {
  std::vector<at::Tensor> weights(weights_l.begin(), weights_l.end()), biases(biases_l.begin(), biases_l.end());
  check_mlp("ebmfast.mlp_energy_grad_backward", x, weights, biases, act, true);
  const int64_t B = x.size(0);
  TORCH_CHECK(grad_e.sizes() == at::IntArrayRef{B} && grad_e.scalar_type() == x.scalar_type() &&
                  grad_e.is_contiguous(),
              "ebmfast.mlp_energy_grad_backward: grad_energy must be a contiguous [", B, "] tensor of x's dtype");
  TORCH_CHECK(grad_g.sizes() == x.sizes() && grad_g.scalar_type() == x.scalar_type() && grad_g.is_contiguous(),
              "ebmfast.mlp_energy_grad_backward: grad_grad must be a contiguous tensor shaped like x");
  int64_t S = 0;
  for (size_t i = 0; i + 1 < weights.size(); ++i) S += 2 * weights[i].size(0);
  at::Tensor saved = saved_in;
  if (saved.numel() == 0 && !(saved.dim() == 2 && saved.size(0) == B)) {
    saved = std::get<2>(mlp_energy_grad_cpu(x, weights_l, biases_l, act, slope, true));  // recompute
  }
  TORCH_CHECK(saved.dim() == 2 && saved.size(0) == B && saved.size(1) == S && saved.is_contiguous() &&
                  saved.scalar_type() == x.scalar_type(),
              "ebmfast.mlp_energy_grad_backward: saved must be the [", B, ", ", S,
              "] tensor from mlp_energy_grad(save=True) (or empty), got ", saved.sizes());
  at::Tensor gx = at::empty_like(x);
  std::vector<at::Tensor> gw, gb;
  const int64_t H = static_cast<int64_t>(weights.size()) - 1;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mlp_energy_grad_backward_cpu", [&] {
    PackedNet<scalar_t> net(x, weights, biases, act, slope);
    const auto& pw = net.pw;
    // accumulator layout: per hidden layer dW_l [pw_l][pw_{l-1}] then db_l [pw_l]; then dw_out, db_out
    std::vector<int64_t> off;
    int64_t total = 0;
    for (int64_t l = 1; l <= H; ++l) {
      off.push_back(total);
      total += pw[l] * pw[l - 1];
      off.push_back(total);
      total += pw[l];
    }
    off.push_back(total);
    total += pw[H];
    off.push_back(total);
    total += 16;
    const int64_t nthreads = std::max<int64_t>(1, at::get_num_threads());
    at::Tensor accs = at::zeros({nthreads, total}, x.options());
    scalar_t* ap = accs.mutable_data_ptr<scalar_t>();
    // tile size barely matters here (12..192 rows within 5% at width 128, measured)
    const int64_t TP = tile_rows(B, tile_cap(net.view, 4, 5, 96));
    const int64_t n_tiles = (B + TP - 1) / TP;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* sp = saved.const_data_ptr<scalar_t>();
    const scalar_t* gep = grad_e.const_data_ptr<scalar_t>();
    const scalar_t* ggp = grad_g.const_data_ptr<scalar_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    if (B > 0) {
      at::parallel_for(0, n_tiles, 1, [&](int64_t t0, int64_t t1) {
        scalar_t* acc = ap + std::min<int64_t>(at::get_thread_num(), nthreads - 1) * total;
        EBMFAST_MLP_CALL(backward_tiles<scalar_t>, net.view, xp, sp, gep, ggp, gxp, acc, off.data(), B, TP, t0, t1);
      });
    }
    // sum the per-thread accumulators straight into the unpadded outputs (fixed thread order:
    // deterministic for a given thread count)
    const auto& w = net.w;
    auto reduce_into = [&](at::Tensor out, int64_t rows, int64_t cols, int64_t src_off, int64_t src_ld) {
      scalar_t* o = out.mutable_data_ptr<scalar_t>();
      for (int64_t r = 0; r < rows; ++r) {
        const scalar_t* a0 = ap + src_off + r * src_ld;
        scalar_t* orow = o + r * cols;
        std::copy_n(a0, cols, orow);
        for (int64_t t = 1; t < nthreads; ++t) {
          const scalar_t* at_ = a0 + t * total;
          for (int64_t c = 0; c < cols; ++c) orow[c] += at_[c];
        }
      }
      return out;
    };
    for (int64_t l = 1; l <= H; ++l) {
      gw.push_back(reduce_into(at::empty({w[l], w[l - 1]}, x.options()), w[l], w[l - 1], off[2 * (l - 1)], pw[l - 1]));
      if (!biases.empty()) gb.push_back(reduce_into(at::empty({w[l]}, x.options()), 1, w[l], off[2 * (l - 1) + 1], 0));
    }
    gw.push_back(reduce_into(at::empty({1, w[H]}, x.options()), 1, w[H], off[2 * H], 0));
    if (!biases.empty()) gb.push_back(reduce_into(at::empty({1}, x.options()), 1, 1, off[2 * H + 1], 0));
  });
  return {gx, gw, gb};
}

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlp_langevin_chain_cpu(
    const at::Tensor& x0, at::TensorList weights_l, at::TensorList biases_l, int64_t act, double slope,
    int64_t n_steps, double step_size, double noise_scale, double ref_coef, int64_t seed,
    c10::optional<double> lo, c10::optional<double> hi, int64_t clip_mode, double clip_value, int64_t every,
    bool record_trajectory, bool record_energies, bool check_finite) {
  std::vector<at::Tensor> weights(weights_l.begin(), weights_l.end()), biases(biases_l.begin(), biases_l.end());
  check_mlp("ebmfast.mlp_langevin_chain", x0, weights, biases, act, true);
  TORCH_CHECK(n_steps >= 0, "ebmfast.mlp_langevin_chain: n_steps must be >= 0, got ", n_steps);
  TORCH_CHECK(every >= 1, "ebmfast.mlp_langevin_chain: every must be >= 1, got ", every);
  TORCH_CHECK(clip_mode >= 0 && clip_mode <= 2, "ebmfast.mlp_langevin_chain: clip_mode must be 0, 1 or 2, got ",
              clip_mode);
  TORCH_CHECK(seed >= 0, "ebmfast.mlp_langevin_chain: seed must be >= 0");
  const int64_t B = x0.size(0), D = x0.size(1);
  const int64_t T_len = (n_steps + every - 1) / every + 1;
  at::Tensor x = at::empty_like(x0);
  at::Tensor traj = record_trajectory ? at::empty({T_len, B, D}, x0.options()) : at::empty({0}, x0.options());
  at::Tensor ens = record_energies ? at::empty({T_len, B}, x0.options()) : at::empty({0}, x0.options());
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  if (B > 0) {
    AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), "mlp_langevin_chain_cpu", [&] {
      using T = scalar_t;
      PackedNet<T> net(x0, weights, biases, act, slope);
      ChainParams<T> cp;
      cp.B = B;
      cp.n_steps = n_steps;
      cp.every = every;
      cp.check_finite = check_finite;
      cp.ref_coef = static_cast<T>(ref_coef);
      cp.lp.step_size = static_cast<T>(step_size);
      cp.lp.noise_scale = static_cast<T>(noise_scale);
      cp.lp.has_lo = lo.has_value();
      cp.lp.has_hi = hi.has_value();
      cp.lp.lo = static_cast<T>(lo.value_or(0.0));
      cp.lp.hi = static_cast<T>(hi.value_or(0.0));
      cp.lp.clip_mode = clip_mode;
      cp.lp.clip_value = static_cast<T>(clip_value);
      cp.lp.seed = static_cast<uint64_t>(seed);
      cp.lp.offset = 0;
      // the chain keeps ~(H + 5) [TP, width] buffers hot for K steps: size tiles to L2
      const int64_t TP = tile_rows(B, tile_cap(net.view, 1, 5, 256));
      const int64_t n_tiles = (B + TP - 1) / TP;
      const T* xp = x0.const_data_ptr<T>();
      T* outp = x.mutable_data_ptr<T>();
      T* trp = record_trajectory ? traj.mutable_data_ptr<T>() : nullptr;
      T* enp = record_energies ? ens.mutable_data_ptr<T>() : nullptr;
      at::parallel_for(0, n_tiles, 1, [&](int64_t t0, int64_t t1) {
        EBMFAST_MLP_CALL(chain_tiles<T>, net.view, cp, xp, outp, trp, enp, TP, t0, t1, first_bad);
      });
    });
  }
  const int64_t fb = first_bad.load();
  at::Tensor bad = at::empty({}, x0.options().dtype(at::kLong));
  bad.mutable_data_ptr<int64_t>()[0] = fb == std::numeric_limits<int64_t>::max() ? -1 : fb;
  return {x, traj, ens, bad};
}

}  // namespace

TORCH_LIBRARY_IMPL(ebmfast, CPU, m) {
  m.impl("mlp_energy_grad", &mlp_energy_grad_cpu);
  m.impl("mlp_energy_grad_backward", &mlp_energy_grad_backward_cpu);
  m.impl("mlp_langevin_chain", &mlp_langevin_chain_cpu);
}

}  // namespace mlpk
}  // namespace ebmfast

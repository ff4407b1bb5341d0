// Tile kernels of the fused MLP energy (CPU). No include guard on purpose: mlp_energy.cpp
// includes this file twice, once as namespace `generic` and once inside
// `#pragma GCC target("avx2,fma")` as namespace `avx2`, and picks one at run time
// (GCC's target_clones cannot clone templates, and these kernels are templates on dtype).
// Everything here is compiled for the including region's ISA; helpers from headers outside the
// region (Philox, Box-Muller, activations) are EBMFAST_HD = always_inline, so GCC inlines and
// vectorises them in either build (plain `inline` ones it declines to inline across the
// target change, and a call in an element loop stops vectorisation: SiLU chains were 5x slower).
//
// Needs, from the includer: EBMFAST_MLP_NS, EBMFAST_MLP_AVX2 (0/1), EBMFAST_MLP_AVX512 (0/1),
// EBMFAST_MLP_UPD_NS (the matching update namespace of mlp_update_impl.h), and mlpk::NetView,
// mlpk::ChainParams, mlpk::kMR, mlpk::kNR (csrc/cpu/mlp_energy.cpp).
//
// Layout. A tile is TP particles (TP a multiple of kMR); each [TP, width] buffer is row-major
// with the width padded to kNR (16) columns. Weights are packed once per call, zero-padded:
//   WT[l] [w_{l-1}][pw_l]: WT[i][o] = W_l[o][i]   (forward:  a_l = h_{l-1} @ WT_l)
//   Wp[l] [w_l][pw_{l-1}]: Wp[o][i] = W_l[o][i]   (backward: g_{l-1} = d_l @ Wp_l)
// so every matmul is C[M, N] = A[M, K] @ B[K, N] with N a multiple of 16: one micro-kernel
// (kMR x 16 register block, broadcast A, two 8-wide B vectors) serves all of them. Padded
// columns stay harmless: padded weights and biases are 0, and K loops run over real widths.
namespace ebmfast {
namespace mlpk {
namespace EBMFAST_MLP_NS {

#define EBMFAST_MLP_ALWAYS_INLINE inline __attribute__((always_inline))

// ----------------------------------------------------------------------------- micro-kernels
// C[r, 0:16] (ACC ? += : =) sum_k A[r*as_m + k*as_k] * B[k*ldb + 0:16] (+ bias[0:16]), r < MR.
#if EBMFAST_MLP_AVX2
template <int MR, bool ACC>
EBMFAST_MLP_ALWAYS_INLINE void micro_f32(const float* A, int64_t as_m, int64_t as_k, const float* B, int64_t ldb,
                                         float* C, int64_t ldc, int64_t K, const float* bias) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    if constexpr (ACC) {
      c0[r] = _mm256_loadu_ps(C + r * ldc);
      c1[r] = _mm256_loadu_ps(C + r * ldc + 8);
    } else if (bias != nullptr) {
      c0[r] = _mm256_loadu_ps(bias);
      c1[r] = _mm256_loadu_ps(bias + 8);
    } else {
      c0[r] = _mm256_setzero_ps();
      c1[r] = _mm256_setzero_ps();
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = _mm256_loadu_ps(B + k * ldb);
    const __m256 b1 = _mm256_loadu_ps(B + k * ldb + 8);
    const float* a = A + k * as_k;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * as_m);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(C + r * ldc, c0[r]);
    _mm256_storeu_ps(C + r * ldc + 8, c1[r]);
  }
}
#endif

#if EBMFAST_MLP_AVX512
// The same register block with one 16-float zmm per row: twice the rows per block (kMR512),
// half the instructions per multiply-add of the AVX2 block. (Zen 4 runs a zmm FMA on both
// 256-bit pipes, so the win there is fewer instructions, not wider arithmetic.)
template <int MR, bool ACC>
EBMFAST_MLP_ALWAYS_INLINE void micro_f32_512(const float* A, int64_t as_m, int64_t as_k, const float* B, int64_t ldb,
                                             float* C, int64_t ldc, int64_t K, const float* bias) {
  __m512 c[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if constexpr (ACC)
      c[r] = _mm512_loadu_ps(C + r * ldc);
    else
      c[r] = bias != nullptr ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    const __m512 b = _mm512_loadu_ps(B + k * ldb);
    const float* a = A + k * as_k;
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) c[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r * as_m]), b, c[r]);
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) _mm512_storeu_ps(C + r * ldc, c[r]);
}
#endif

template <typename T, int MR, bool ACC>
EBMFAST_MLP_ALWAYS_INLINE void micro_generic(const T* A, int64_t as_m, int64_t as_k, const T* B, int64_t ldb, T* C,
                                             int64_t ldc, int64_t K, const T* bias) {
  T c[MR][kNR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < kNR; ++j) c[r][j] = ACC ? C[r * ldc + j] : (bias != nullptr ? bias[j] : T(0));
  for (int64_t k = 0; k < K; ++k) {
    const T* b = B + k * ldb;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const T a = A[r * as_m + k * as_k];
#pragma omp simd
      for (int j = 0; j < kNR; ++j) c[r][j] += a * b[j];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < kNR; ++j) C[r * ldc + j] = c[r][j];
}

template <typename T, int MR, bool ACC>
EBMFAST_MLP_ALWAYS_INLINE void micro(const T* A, int64_t as_m, int64_t as_k, const T* B, int64_t ldb, T* C,
                                     int64_t ldc, int64_t K, const T* bias) {
#if EBMFAST_MLP_AVX512
  if constexpr (std::is_same_v<T, float>) {
    micro_f32_512<MR, ACC>(A, as_m, as_k, B, ldb, C, ldc, K, bias);
    return;
  }
#elif EBMFAST_MLP_AVX2
  if constexpr (std::is_same_v<T, float>) {
    micro_f32<MR, ACC>(A, as_m, as_k, B, ldb, C, ldc, K, bias);
    return;
  }
#endif
  micro_generic<T, MR, ACC>(A, as_m, as_k, B, ldb, C, ldc, K, bias);
}

// Rows per register block: 12 with the zmm float block (12 accumulators of 32 registers),
// else kMR (6: 12 ymm accumulators of 16 registers; the generic block is the same shape).
template <typename T>
constexpr int64_t block_rows() {
#if EBMFAST_MLP_AVX512
  if constexpr (std::is_same_v<T, float>) return 2 * kMR;
#endif
  return kMR;
}

// C[M, N] (ACC ? += : =) A[M, K] @ B[K, N] (+ bias row); N a multiple of kNR. A is strided
// (as_m, as_k) so A^T products (weight gradients, d_l^T v) need no transposed copy.
template <typename T, bool ACC>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t as_m, int64_t as_k, const T* B, int64_t ldb, T* C,
          int64_t ldc, const T* bias) {
  for (int64_t n0 = 0; n0 < N; n0 += kNR) {
    const T* bn = bias != nullptr ? bias + n0 : nullptr;
    constexpr int64_t MB = block_rows<T>();
    int64_t m0 = 0;
    for (; m0 + MB <= M; m0 += MB) micro<T, MB, ACC>(A + m0 * as_m, as_m, as_k, B + n0, ldb, C + m0 * ldc + n0, ldc, K, bn);
    if constexpr (MB > kMR) {
      if (m0 + kMR <= M) {
        micro<T, kMR, ACC>(A + m0 * as_m, as_m, as_k, B + n0, ldb, C + m0 * ldc + n0, ldc, K, bn);
        m0 += kMR;
      }
    }
    const T* a = A + m0 * as_m;
    T* c = C + m0 * ldc + n0;
    switch (M - m0) {
      case 1: micro<T, 1, ACC>(a, as_m, as_k, B + n0, ldb, c, ldc, K, bn); break;
      case 2: micro<T, 2, ACC>(a, as_m, as_k, B + n0, ldb, c, ldc, K, bn); break;
      case 3: micro<T, 3, ACC>(a, as_m, as_k, B + n0, ldb, c, ldc, K, bn); break;
      case 4: micro<T, 4, ACC>(a, as_m, as_k, B + n0, ldb, c, ldc, K, bn); break;
      case 5: micro<T, 5, ACC>(a, as_m, as_k, B + n0, ldb, c, ldc, K, bn); break;
      default: break;
    }
  }
}

#if EBMFAST_MLP_AVX512
// Sixteen dot products at once: acc[r] = A[r, 0:K16] . b, then one transposing add-tree turns the
// 16 accumulators into one vector of 16 sums (~3 shuffles/adds per row instead of a horizontal
// sum each: the energy head and the 2-D input gradient were 14% of a width-32 chain).
// K16 is a multiple of 16 within lda, and b's entries past the real width are 0.
EBMFAST_MLP_ALWAYS_INLINE __m512 dot16_f32_512(const float* A, int64_t lda, const float* b, int64_t K16) {
  __m512 v[16];
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) v[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K16; k += 16) {
    const __m512 bv = _mm512_loadu_ps(b + k);
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) v[r] = _mm512_fmadd_ps(_mm512_loadu_ps(A + r * lda + k), bv, v[r]);
  }
  __m512 w[8], u[4], s[2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)  // rows (2i, 2i+1): 128-bit lanes [2i half A, 2i half B, 2i+1 A, 2i+1 B]
    w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)  // lane L holds row 4i + L (4 partial sums)
    u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
#pragma GCC unroll 2
  for (int j = 0; j < 2; ++j)  // lane L: [row 8j+L, row 8j+4+L, same, same] partials
    s[j] = _mm512_add_ps(_mm512_unpacklo_ps(u[2 * j], u[2 * j + 1]), _mm512_unpackhi_ps(u[2 * j], u[2 * j + 1]));
  // lane L: rows [L, 4 + L, 8 + L, 12 + L]; element 4L + m holds row 4m + L
  const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(s[0], s[1], 0x44), _mm512_shuffle_ps(s[0], s[1], 0xEE));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, t);
}
#endif

// C[m, j] = sum_k A[m, k] * Bt[j, k] for small N (the energy head, input dims < 16): dot products.
// A's columns up to lda and Bt's up to ldbt past K must be finite, and Bt's zero (packed padding).
template <typename T>
void dot_rows(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* Bt, int64_t ldbt, T* C, int64_t ldc,
              T add) {
  int64_t m0 = 0;
#if EBMFAST_MLP_AVX512
  if constexpr (std::is_same_v<T, float>) {
    const int64_t K16 = (K + 15) / 16 * 16;
    if (K16 <= lda && (N == 1 || K16 <= ldbt)) {
      alignas(64) float out[16];
      for (; m0 + 16 <= M; m0 += 16)
        for (int64_t j = 0; j < N; ++j) {
          _mm512_store_ps(out, _mm512_add_ps(dot16_f32_512(A + m0 * lda, lda, Bt + j * ldbt, K16), _mm512_set1_ps(add)));
          for (int r = 0; r < 16; ++r) C[(m0 + r) * ldc + j] = out[r];
        }
    }
  }
#endif
  for (int64_t m = m0; m < M; ++m) {
    const T* a = A + m * lda;
    for (int64_t j = 0; j < N; ++j) {
      const T* b = Bt + j * ldbt;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < K; ++k) s += a[k] * b[k];
      C[m * ldc + j] = s + add;
    }
  }
}

// ----------------------------------------------------------------------------- activations
// Row r, column i < n: H = sigma(A), S1 = sigma'(A) (and S2 = sigma''(A) when D2); A may alias H.
// Rows of A have stride lda, rows of H/S1/S2 stride ld (one row of n when rows == 1).
template <typename T, int64_t ACT, bool D2>
void act_pass_impl(const T* A, int64_t lda, T* Hout, T* S1, T* S2, int64_t ld, int64_t rows, int64_t n, T slope) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* a = A + r * lda;
    T* h = Hout + r * ld;
    T* s1 = S1 + r * ld;
    T* s2 = D2 ? S2 + r * ld : nullptr;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      T hv, d1, d2 = T(0);
      mlp_act<ACT, D2, T>(a[i], slope, &hv, &d1, &d2);
      h[i] = hv;
      s1[i] = d1;
      if constexpr (D2) s2[i] = d2;
    }
  }
}

template <typename T>
void act_rows(int64_t act, const T* A, int64_t lda, T* H, T* S1, T* S2, int64_t ld, int64_t rows, int64_t n, T slope) {
#define EBMFAST_ACT_CASE(CODE)                                                  \
  case CODE:                                                                    \
    if (S2 != nullptr)                                                          \
      act_pass_impl<T, CODE, true>(A, lda, H, S1, S2, ld, rows, n, slope);      \
    else                                                                        \
      act_pass_impl<T, CODE, false>(A, lda, H, S1, S2, ld, rows, n, slope);     \
    break;
  switch (act) {
    EBMFAST_ACT_CASE(kActRelu)
    EBMFAST_ACT_CASE(kActLeakyRelu)
    EBMFAST_ACT_CASE(kActSilu)
    EBMFAST_ACT_CASE(kActSoftplus)
    EBMFAST_ACT_CASE(kActElu)
    EBMFAST_ACT_CASE(kActTanh)
    default: EBMFAST_ACT_CASE(kActGelu)
  }
#undef EBMFAST_ACT_CASE
}

// In place over n contiguous elements: A <- sigma(A), S1 <- sigma'(A) (S2 <- sigma''(A) if given).
template <typename T>
void act_pass(int64_t act, T* A, T* S1, T* S2, int64_t n, T slope) {
  act_rows<T>(act, A, n, A, S1, S2, n, 1, n, slope);
}

// ----------------------------------------------------------------------------- forward + input gradient
// One tile: E[0:TP] and Gx[TP][pw0] from X[TP][pw0]. S1[l] keeps sigma'(a_l) for the backward
// pass; Hb/Gb are ping-pong buffers [TP][wmax]. `save` (nullable) receives a_l and g_l = dE/dh_l
// for the first `rows` rows (row stride net.S). forward_only skips the gradient.
template <typename T>
void fwd_bwd_tile(const NetView<T>& net, int64_t TP, const T* X, T* E, T* Gx, T* const* S1, T* const* Hb,
                  T* const* Gb, T* save, int64_t rows, bool forward_only) {
  const int64_t H = net.H, pw0 = net.pw[0];
  const T* h = X;
  int64_t ldh = pw0;
  for (int64_t l = 1; l <= H; ++l) {
    T* A = Hb[l & 1];
    const int64_t pl = net.pw[l];
    gemm<T, false>(TP, pl, net.w[l - 1], h, ldh, 1, net.WT[l - 1], pl, A, pl, net.b[l - 1]);
    if (save != nullptr)
      for (int64_t t = 0; t < rows; ++t)
        std::copy(A + t * pl, A + t * pl + net.w[l], save + t * net.S + net.soff[l - 1]);
    act_pass<T>(net.act, A, S1[l - 1], nullptr, TP * pl, net.slope);
    h = A;
    ldh = pl;
  }
  dot_rows<T>(TP, 1, net.w[H], h, ldh, net.wout, 0, E, 1, net.bout);
  if (forward_only) return;
  if (H == 0) {
    for (int64_t t = 0; t < TP; ++t) std::copy(net.wout, net.wout + pw0, Gx + t * pw0);
    return;
  }
  // d_H = w_out * sigma'(a_H), then g_{l-1} = d_l @ W_l, d_{l-1} = g_{l-1} * sigma'(a_{l-1})
  T* d = Gb[0];
  {
    const int64_t pl = net.pw[H];
    const T* s1 = S1[H - 1];
    for (int64_t t = 0; t < TP; ++t) {
#pragma omp simd
      for (int64_t o = 0; o < pl; ++o) d[t * pl + o] = net.wout[o] * s1[t * pl + o];
    }
    if (save != nullptr)
      for (int64_t t = 0; t < rows; ++t)
        std::copy(net.wout, net.wout + net.w[H], save + t * net.S + net.soff[H - 1] + net.w[H]);
  }
  for (int64_t l = H; l >= 1; --l) {
    const int64_t pl = net.pw[l];
    if (l > 1) {
      const int64_t pp = net.pw[l - 1];
      T* gp = Gb[(H - l + 1) & 1];
      gemm<T, false>(TP, pp, net.w[l], d, pl, 1, net.Wp[l - 1], pp, gp, pp, nullptr);
      if (save != nullptr)
        for (int64_t t = 0; t < rows; ++t)
          std::copy(gp + t * pp, gp + t * pp + net.w[l - 1], save + t * net.S + net.soff[l - 2] + net.w[l - 1]);
      const T* s1 = S1[l - 2];
#pragma omp simd
      for (int64_t i = 0; i < TP * pp; ++i) gp[i] *= s1[i];
      d = gp;
    } else if (net.D < kNR) {
      dot_rows<T>(TP, net.D, net.w[1], d, pl, net.WT[0], pl, Gx, pw0, T(0));
    } else {
      gemm<T, false>(TP, pw0, net.w[1], d, pl, 1, net.Wp[0], pw0, Gx, pw0, nullptr);
    }
  }
}

// ----------------------------------------------------------------------------- scratch
template <typename T>
struct Scratch {
  std::unique_ptr<T[]> mem;
  int64_t used = 0, cap = 0;
  explicit Scratch(int64_t n) : mem(new T[n + 64]), cap(n + 64) {}
  // 64-byte aligned slice of n elements (zeroed)
  T* take(int64_t n) {
    T* base = mem.get() + used;
    const auto addr = reinterpret_cast<uintptr_t>(base);
    const int64_t pad = static_cast<int64_t>(((64 - addr % 64) % 64) / sizeof(T));
    T* p = base + pad;
    used += pad + n;
    std::fill(p, p + n, T(0));
    return p;
  }
};

template <typename T>
int64_t fwd_scratch_size(const NetView<T>& net, int64_t TP) {
  int64_t n = 2 * TP * net.pw[0] + TP + 16;
  for (int64_t l = 1; l <= net.H; ++l) n += TP * net.pw[l] + 16;
  n += 4 * (TP * net.wmax + 16);
  return n + 64 * (net.H + 8);
}

template <typename T>
struct FwdBufs {
  T *X, *Gx, *E;
  std::vector<T*> S1;
  T* Hb[2];
  T* Gb[2];
  FwdBufs(const NetView<T>& net, int64_t TP, Scratch<T>& s) {
    X = s.take(TP * net.pw[0]);
    Gx = s.take(TP * net.pw[0]);
    E = s.take(TP);
    for (int64_t l = 1; l <= net.H; ++l) S1.push_back(s.take(TP * net.pw[l]));
    if (S1.empty()) S1.push_back(nullptr);
    Hb[0] = s.take(TP * net.wmax);
    Hb[1] = s.take(TP * net.wmax);
    Gb[0] = s.take(TP * net.wmax);
    Gb[1] = s.take(TP * net.wmax);
  }
};

// ----------------------------------------------------------------------------- op 1: energy + grad
template <typename T>
void energy_grad_tiles(const NetView<T>& net, const T* x, T* e, T* g, T* saved, int64_t B, int64_t TP, int64_t t_begin,
                       int64_t t_end) {
  Scratch<T> s(fwd_scratch_size(net, TP));
  FwdBufs<T> buf(net, TP, s);
  const int64_t D = net.D, pw0 = net.pw[0];
  for (int64_t tile = t_begin; tile < t_end; ++tile) {
    const int64_t r0 = tile * TP, rows = std::min(TP, B - r0);
    if (rows <= 0) break;
    for (int64_t t = 0; t < rows; ++t) std::copy(x + (r0 + t) * D, x + (r0 + t + 1) * D, buf.X + t * pw0);
    fwd_bwd_tile<T>(net, TP, buf.X, buf.E, buf.Gx, buf.S1.data(), buf.Hb, buf.Gb,
                    saved != nullptr ? saved + r0 * net.S : nullptr, rows, false);
    std::copy(buf.E, buf.E + rows, e + r0);
    for (int64_t t = 0; t < rows; ++t) std::copy(buf.Gx + t * pw0, buf.Gx + t * pw0 + D, g + (r0 + t) * D);
  }
}

// ----------------------------------------------------------------------------- op 2: the chain
template <typename T>
bool rows_finite(const T* E, const T* Gx, int64_t rows, int64_t D, int64_t ld) {
  T s = 0;
  for (int64_t t = 0; t < rows; ++t) {
    s += E[t];
    for (int64_t j = 0; j < D; ++j) s += Gx[t * ld + j];
  }
  return std::isfinite(s);
}

// Runs the whole chain for particle rows [r0, r0 + rows): the tile's state, activations and
// gradients stay in this thread's cache for all K steps.
template <typename T>
void chain_tile(const NetView<T>& net, const ChainParams<T>& cp, FwdBufs<T>& buf, T* zbuf, T* z, int64_t TP,
                int64_t r0, int64_t rows, const T* x0, T* xout, T* traj, T* ens, std::atomic<int64_t>& first_bad) {
  const int64_t D = net.D, pw0 = net.pw[0], B = cp.B;
  std::fill(buf.X, buf.X + TP * pw0, T(0));
  for (int64_t t = 0; t < rows; ++t) std::copy(x0 + (r0 + t) * D, x0 + (r0 + t + 1) * D, buf.X + t * pw0);
  const LangevinParams<T> p = cp.lp;
  for (int64_t k = 0; k < cp.n_steps; ++k) {
    if (cp.check_finite && k >= first_bad.load(std::memory_order_relaxed)) return;  // outputs are void anyway
    fwd_bwd_tile<T>(net, TP, buf.X, buf.E, buf.Gx, buf.S1.data(), buf.Hb, buf.Gb, nullptr, rows, false);
    if (cp.ref_coef != T(0)) {  // the drift grad E + x / sigma^2; checked below like the sampler loop does
      for (int64_t t = 0; t < rows; ++t) {
#pragma omp simd
        for (int64_t j = 0; j < D; ++j) buf.Gx[t * pw0 + j] += cp.ref_coef * buf.X[t * pw0 + j];
      }
    }
    if (cp.check_finite && !rows_finite(buf.E, buf.Gx, rows, D, pw0)) {
      int64_t cur = first_bad.load();
      while (k < cur && !first_bad.compare_exchange_weak(cur, k)) {
      }
      return;
    }
    if (k % cp.every == 0) {
      const int64_t rec = k / cp.every;
      if (traj != nullptr)
        for (int64_t t = 0; t < rows; ++t)
          std::copy(buf.X + t * pw0, buf.X + t * pw0 + D, traj + (rec * B + r0 + t) * D);
      if (ens != nullptr) std::copy(buf.E, buf.E + rows, ens + rec * B + r0);
    }
    // x <- clamp(x - step * clip(drift) + noise * xi_k), compiled without FMA contraction so
    // that it rounds exactly like ebmfast::langevin_step (csrc/cpu/mlp_update_impl.h)
    ::ebmfast::mlpk::EBMFAST_MLP_UPD_NS::update_rows<T>(p, k, buf.X, buf.Gx, pw0, D, r0, rows, zbuf, z);
  }
  const int64_t last = (cp.n_steps + cp.every - 1) / cp.every;
  if (traj != nullptr)
    for (int64_t t = 0; t < rows; ++t)
      std::copy(buf.X + t * pw0, buf.X + t * pw0 + D, traj + (last * B + r0 + t) * D);
  if (ens != nullptr) {
    fwd_bwd_tile<T>(net, TP, buf.X, buf.E, buf.Gx, buf.S1.data(), buf.Hb, buf.Gb, nullptr, rows, true);
    std::copy(buf.E, buf.E + rows, ens + last * B + r0);
  }
  for (int64_t t = 0; t < rows; ++t) std::copy(buf.X + t * pw0, buf.X + t * pw0 + D, xout + (r0 + t) * D);
}

template <typename T>
void chain_tiles(const NetView<T>& net, const ChainParams<T>& cp, const T* x0, T* xout, T* traj, T* ens, int64_t TP,
                 int64_t t_begin, int64_t t_end, std::atomic<int64_t>& first_bad) {
  const int64_t D = net.D;
  Scratch<T> s(fwd_scratch_size(net, TP) + 2 * (TP * D + 16));
  FwdBufs<T> buf(net, TP, s);
  T* zbuf = s.take(TP * D + 8);
  T* z = s.take(TP * D + 8);
  for (int64_t tile = t_begin; tile < t_end; ++tile) {
    const int64_t r0 = tile * TP, rows = std::min(TP, cp.B - r0);
    if (rows <= 0) break;
    chain_tile<T>(net, cp, buf, zbuf, z, TP, r0, rows, x0, xout, traj, ens, first_bad);
  }
}

// ----------------------------------------------------------------------------- op 3: VJP of (E, grad_x E)
// Notation (per particle): a_l, h_l = sigma(a_l), g_l = dE/dh_l, d_l = g_l * sigma'(a_l),
// g_{l-1} = d_l W_l, grad_x = g_0. Cotangents: gE (on E), v_0 = gG (on g_0).
//   v pass (l = 1..H):  u_l = v_{l-1} W_l^T,  v_l = u_l * sigma'(a_l),  r_l = u_l * g_l * sigma''(a_l),
//                       dW_l += d_l^T v_{l-1};  finally dW_out += sum_t v_H + gE h_H, db_out += sum gE
//   s pass (l = H..1):  s_H = r_H + gE w_out sigma'(a_H),  dW_l += s_l^T h_{l-1},  db_l += sum_t s_l,
//                       s_{l-1} = r_{l-1} + (s_l W_l) * sigma'(a_{l-1}),  grad_x = s_1 W_1.
// `acc` is this thread's gradient accumulator: packed dW_l [pw_l][pw_{l-1}], db_l [pw_l], dw_out [pw_H], db_out.
template <typename T>
void backward_tiles(const NetView<T>& net, const T* x, const T* saved, const T* gE, const T* gG, T* gx, T* acc,
                    const int64_t* acc_off, int64_t B, int64_t TP, int64_t t_begin, int64_t t_end) {
  const int64_t H = net.H, D = net.D, pw0 = net.pw[0];
  int64_t need = 3 * TP * pw0 + TP + 3 * (TP * net.wmax + 16) + 64 * (4 * H + 8);
  for (int64_t l = 1; l <= H; ++l) need += 4 * (TP * net.pw[l] + 16);
  Scratch<T> s(need);
  T* X = s.take(TP * pw0);
  T* V0 = s.take(TP * pw0);
  T* GX = s.take(TP * pw0);
  T* ge = s.take(TP);
  std::vector<T*> Hh(H + 1), S1(H + 1), S2(H + 1), G(H + 1);
  for (int64_t l = 1; l <= H; ++l) {
    const int64_t n = TP * net.pw[l];
    Hh[l] = s.take(n);
    S1[l] = s.take(n);
    S2[l] = s.take(n);
    G[l] = s.take(n);
  }
  T* Vb[2] = {s.take(TP * net.wmax), s.take(TP * net.wmax)};
  T* U = s.take(TP * net.wmax);
  Hh[0] = X;
  T* dwout = acc + acc_off[2 * H];
  T* dbout = acc + acc_off[2 * H + 1];

  for (int64_t tile = t_begin; tile < t_end; ++tile) {
    const int64_t r0 = tile * TP, rows = std::min(TP, B - r0);
    if (rows <= 0) break;
    // load the tile (padded rows and columns zero: they then contribute nothing below)
    std::fill(X, X + TP * pw0, T(0));
    std::fill(V0, V0 + TP * pw0, T(0));
    std::fill(ge, ge + TP, T(0));
    for (int64_t t = 0; t < rows; ++t) {
      std::copy(x + (r0 + t) * D, x + (r0 + t + 1) * D, X + t * pw0);
      std::copy(gG + (r0 + t) * D, gG + (r0 + t + 1) * D, V0 + t * pw0);
    }
    std::copy(gE + r0, gE + r0 + rows, ge);
    // per hidden layer: h, sigma', sigma'' straight from the saved a_l rows, and g_l. Columns past
    // w_l stay 0 from the scratch fill (nothing below writes them non-zero); the rows past `rows`
    // of a last, partial tile are zeroed (stale rows would multiply zero cotangents anyway, but
    // 0 * inf would not be 0).
    for (int64_t l = 1; l <= H; ++l) {
      const int64_t pl = net.pw[l], wl = net.w[l];
      const T* s0 = saved + r0 * net.S + net.soff[l - 1];
      act_rows<T>(net.act, s0, net.S, Hh[l], S1[l], S2[l], pl, rows, wl, net.slope);
      for (int64_t t = 0; t < rows; ++t) std::copy(s0 + t * net.S + wl, s0 + t * net.S + 2 * wl, G[l] + t * pl);
      if (rows < TP)
        for (T* buf : {Hh[l], S1[l], S2[l], G[l]}) std::fill(buf + rows * pl, buf + TP * pl, T(0));
    }
    if (H == 0) {
      for (int64_t t = 0; t < TP; ++t)
        for (int64_t j = 0; j < pw0; ++j) {
          GX[t * pw0 + j] = ge[t] * net.wout[j];
          dwout[j] += V0[t * pw0 + j] + ge[t] * X[t * pw0 + j];
        }
      for (int64_t t = 0; t < TP; ++t) dbout[0] += ge[t];
    } else {
      // v pass
      const T* v = V0;
      for (int64_t l = 1; l <= H; ++l) {
        const int64_t pl = net.pw[l], pp = net.pw[l - 1];
        gemm<T, false>(TP, pl, net.w[l - 1], v, pp, 1, net.WT[l - 1], pl, U, pl, nullptr);
        T* vn = Vb[l & 1];
        T *g = G[l], *s1 = S1[l], *s2 = S2[l];
#pragma omp simd
        for (int64_t i = 0; i < TP * pl; ++i) {
          const T u = U[i], gi = g[i], d1 = s1[i];
          s2[i] = u * gi * s2[i];  // r_l
          g[i] = gi * d1;          // d_l
          vn[i] = u * d1;          // v_l
        }
        gemm<T, true>(pl, pp, TP, g, 1, pl, v, pp, acc + acc_off[2 * (l - 1)], pp, nullptr);  // d_l^T v_{l-1}
        v = vn;
      }
      const int64_t pH = net.pw[H];
      for (int64_t t = 0; t < TP; ++t) {
        const T* vr = v + t * pH;
        const T* hr = Hh[H] + t * pH;
        const T gt = ge[t];
#pragma omp simd
        for (int64_t o = 0; o < pH; ++o) dwout[o] += vr[o] + gt * hr[o];
        dbout[0] += gt;
      }
      // s pass: s_H = r_H + gE w_out sigma'(a_H)
      for (int64_t t = 0; t < TP; ++t) {
        T* sr = S2[H] + t * pH;
        const T* d1 = S1[H] + t * pH;
        const T gt = ge[t];
#pragma omp simd
        for (int64_t o = 0; o < pH; ++o) sr[o] += gt * net.wout[o] * d1[o];
      }
      for (int64_t l = H; l >= 1; --l) {
        const int64_t pl = net.pw[l], pp = net.pw[l - 1];
        const T* sl = S2[l];
        T* db = acc + acc_off[2 * (l - 1) + 1];
        for (int64_t t = 0; t < TP; ++t) {
#pragma omp simd
          for (int64_t o = 0; o < pl; ++o) db[o] += sl[t * pl + o];
        }
        gemm<T, true>(pl, pp, TP, sl, 1, pl, Hh[l - 1], pp, acc + acc_off[2 * (l - 1)], pp, nullptr);  // s_l^T h_{l-1}
        if (l > 1) {
          gemm<T, false>(TP, pp, net.w[l], sl, pl, 1, net.Wp[l - 1], pp, U, pp, nullptr);
          T* sp = S2[l - 1];
          const T* d1 = S1[l - 1];
#pragma omp simd
          for (int64_t i = 0; i < TP * pp; ++i) sp[i] += U[i] * d1[i];
        } else if (D < kNR) {
          dot_rows<T>(TP, D, net.w[1], sl, pl, net.WT[0], pl, GX, pw0, T(0));
        } else {
          gemm<T, false>(TP, pw0, net.w[1], sl, pl, 1, net.Wp[0], pw0, GX, pw0, nullptr);
        }
      }
    }
    for (int64_t t = 0; t < rows; ++t) std::copy(GX + t * pw0, GX + t * pw0 + D, gx + (r0 + t) * D);
  }
}

#undef EBMFAST_MLP_ALWAYS_INLINE

}  // namespace EBMFAST_MLP_NS
}  // namespace mlpk
}  // namespace ebmfast

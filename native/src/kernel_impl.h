// The generic kernels, written once against a SIMD traits type S (simd_<level>.h)
// and instantiated per level: kernels_<level>.cc includes this file inside an
// anonymous namespace, so each level gets private copies compiled with its own
// target flags and no symbol can leak from one level into another.
//
// Contents, in the order the drivers use them:
//   packA / packB   copy operands into the panel layouts the register tile reads
//   tile            THE HOT LOOP: an MR×NR register tile over a K block
//   gemv            dot-product form for 1..4 rows (decode)
//   softmaxCols     causal softmax down the columns of a transposed score block
//   attnChunk       decode attention over a chunk of keys, all heads (attn_chunk_impl.h)
//   attnCombine     merges the chunks' partial results
//   swiglu          silu(gate) · up, elementwise (the MLP between gate/up and down)
//   rmsNormRow, ropeRows, addRows, toF16Rows   the decode step's other elementwise ops (nn/block.ts)
//   argmaxRow       the greedy sampler's pick over the logits (the step plan's last op)
//   fmaLoop         the FMA peak probe the kernel benchmark reports against
// Nothing here allocates, spawns threads or checks arguments (the drivers and the
// TypeScript loader do that).
//
// Every per-level template is reached from here because kernels_<level>.cc must
// instantiate the whole set (the table at the end) from ONE include per level; the
// decode attention kernels sit in attn_chunk_impl.h, included below (not by the levels).

template <class T>
inline T minOf(T a, T b) { return a < b ? a : b; }
template <class T>
inline T maxOf(T a, T b) { return a > b ? a : b; }

constexpr float kNegInf = -__builtin_inff();

// ---------------------------------------------------------------- packing

/** dst[k·MR + i] = x[i·ldx + k] (i < rows), 0 for rows ≤ i < MR. */
template <int MR>
void packA(const float* x, int64_t ldx, int rows, int64_t K, float* dst) {
  constexpr int64_t KB = 16;  // one cache line of each source row per step
  for (int64_t k0 = 0; k0 < K; k0 += KB) {
    const int64_t kb = minOf(KB, K - k0);
    float* d0 = dst + k0 * MR;
    for (int i = 0; i < MR; ++i) {
      float* d = d0 + i;
      if (i < rows) {
        const float* s = x + i * ldx + k0;
        for (int64_t k = 0; k < kb; ++k) d[k * MR] = s[k];
      } else {
        for (int64_t k = 0; k < kb; ++k) d[k * MR] = 0.0f;
      }
    }
  }
}

/**
 * ceil(cols/NR) panels [kc][NR]: dst[p·kc·NR + k·NR + j] = w[(p·NR + j)·ldw + k], 0 past
 * cols. W-row × W-column blocks are transposed in registers (W = S::W).
 */
template <class S, int NR>
void packB(const float* w, int64_t ldw, int64_t cols, int64_t kc, float* dst) {
  using V = typename S::V;
  constexpr int W = S::W;
  static_assert(NR % W == 0, "a panel is whole vectors");
  for (int64_t p0 = 0; p0 < cols; p0 += NR) {
    float* panel = dst + (p0 / NR) * kc * NR;
    for (int j0 = 0; j0 < NR; j0 += W) {
      const int64_t rows = cols - p0 - j0;  // source rows present in this group (may be ≤ 0)
      const float* src = w + (p0 + j0) * ldw;
      for (int64_t k0 = 0; k0 < kc; k0 += W) {
        const int64_t kb = minOf<int64_t>(W, kc - k0);
        const typename S::M km = S::mask(kb);
        V r[W];
        for (int i = 0; i < W; ++i) {
          r[i] = i >= rows ? S::zero() : kb == W ? S::load(src + i * ldw + k0) : S::load(src + i * ldw + k0, km);
        }
        S::transpose(r);
        for (int64_t k = 0; k < kb; ++k) S::store(panel + (k0 + k) * NR + j0, r[k]);
      }
    }
  }
}

// ---------------------------------------------------------------- register tile

/**
 * THE HOT LOOP. C[MRT, nr] (+)= A[MRT, kc] · B[kc, NV·W]: per k, NV vector loads of
 * B, MRT broadcasts of A and MRT·NV FMAs into accumulators that never leave the
 * registers (AVX-512: 12×32 tile = 24 zmm accumulators).
 */
template <class S, int MRT, int NV, bool MASKB>
void tileFixed(const TileArgs& t) {
  using V = typename S::V;
  constexpr int W = S::W;
  V acc[MRT][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MRT; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = S::zero();
  typename S::M mb[NV];
  for (int v = 0; v < NV; ++v) mb[v] = S::mask(t.nr - v * W);

  // C is re-read for every K block: start fetching it now, it is needed at the end.
  for (int i = 0; i < MRT; ++i) {
    __builtin_prefetch(t.c + i * t.ldc, 1);
    __builtin_prefetch(t.c + i * t.ldc + NV * W - 1, 1);
  }

  const float* a = t.a;
  const float* b = t.b;
  const int64_t lda = t.lda, ldb = t.ldb;
  for (int64_t k = t.kc; k > 0; --k) {
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = MASKB ? S::load(b + v * W, mb[v]) : S::load(b + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MRT; ++i) {
      const V ai = S::set1(a[i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
    }
    a += lda;
    b += ldb;
  }

  float* c = t.c;
#pragma GCC unroll 16
  for (int i = 0; i < MRT; ++i, c += t.ldc) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const int64_t n = t.nr - v * W;
      if (n <= 0) break;
      V r = acc[i][v];
      float* cp = c + v * W;
      if (n >= W) {
        if (t.accumulate) r = S::add(r, S::load(cp));
        else if (t.bias) r = S::add(r, S::load(t.bias + v * W));
        S::store(cp, r);
      } else {
        if (t.accumulate) r = S::add(r, S::load(cp, mb[v]));
        else if (t.bias) r = S::add(r, S::load(t.bias + v * W, mb[v]));
        S::store(cp, r, mb[v]);
      }
    }
  }
}

template <class S, int NV, int MRT>
struct TileByRows {
  static void run(const TileArgs& t) {
    if (t.mr == MRT) {
      if (t.maskB && t.nr < NV * S::W) tileFixed<S, MRT, NV, true>(t);
      else tileFixed<S, MRT, NV, false>(t);
    } else {
      TileByRows<S, NV, MRT - 1>::run(t);
    }
  }
};
template <class S, int NV>
struct TileByRows<S, NV, 0> {
  static void run(const TileArgs&) {}
};

template <class S, int MR, int NV>
void tile(const TileArgs& t) { TileByRows<S, NV, MR>::run(t); }

// ---------------------------------------------------------------- gemv (1..4 rows)

/** W rows per step for MT x rows: enough independent FMA chains, no register spills. */
template <class S>
constexpr int gemvNT(int MT) {
  // MT·NT accumulators + MT x vectors + 1 W vector must fit in the registers.
  return S::REGS >= 32 ? (MT == 1 ? 8 : MT == 2 ? 6 : 4) : (MT == 1 ? 6 : MT == 2 ? 4 : MT == 3 ? 3 : 2);
}

template <class S, int MT, int NT>
inline void gemvTile(const GemvArgs& g, int64_t n) {
  using V = typename S::V;
  constexpr int W = S::W;
  const int64_t K = g.k;
  const float* w0 = g.w + n * K;
  V acc[MT][NT];
  for (int m = 0; m < MT; ++m)
    for (int j = 0; j < NT; ++j) acc[m][j] = S::zero();
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    V xv[MT];
    for (int m = 0; m < MT; ++m) xv[m] = S::load(g.x + m * g.ldx + k);
    for (int j = 0; j < NT; ++j) {
      const V wv = S::load(w0 + j * K + k);
      for (int m = 0; m < MT; ++m) acc[m][j] = S::fma(xv[m], wv, acc[m][j]);
    }
  }
  if (k < K) {
    const typename S::M mk = S::mask(K - k);
    V xv[MT];
    for (int m = 0; m < MT; ++m) xv[m] = S::load(g.x + m * g.ldx + k, mk);
    for (int j = 0; j < NT; ++j) {
      const V wv = S::load(w0 + j * K + k, mk);
      for (int m = 0; m < MT; ++m) acc[m][j] = S::fma(xv[m], wv, acc[m][j]);
    }
  }
  for (int m = 0; m < MT; ++m)
    for (int j = 0; j < NT; ++j)
      g.y[m * g.ldy + n + j] = S::hsum(acc[m][j]) + (g.bias ? g.bias[n + j] : 0.0f);
}

template <class S, int MT>
void gemvRows(const GemvArgs& g) {
  constexpr int NT = gemvNT<S>(MT);
  int64_t n = g.n0;
  for (; n + NT <= g.n1; n += NT) gemvTile<S, MT, NT>(g, n);
  for (; n < g.n1; ++n) gemvTile<S, MT, 1>(g, n);
}

template <class S>
void gemv(const GemvArgs& g) {
  switch (g.rows) {
    case 1: gemvRows<S, 1>(g); break;
    case 2: gemvRows<S, 2>(g); break;
    case 3: gemvRows<S, 3>(g); break;
    default: gemvRows<S, 4>(g); break;
  }
}

// ---------------------------------------------------------------- softmax down columns

template <class S, int NV>
void softmaxCols(float* s, int64_t rows, int64_t limit0, float scale, float* invSum) {
  using V = typename S::V;
  constexpr int W = S::W, NR = NV * W;
  V mx[NV];
  for (int v = 0; v < NV; ++v) mx[v] = S::set1(kNegInf);
  for (int64_t j = 0; j < rows; ++j) {
    float* row = s + j * NR;
    const int64_t r = j - limit0;  // columns i < r cannot see key j
    for (int v = 0; v < NV; ++v) {
      V x = S::load(row + v * W);
      if (r > v * W) {
        x = S::fillBelow(x, r - v * W, kNegInf);
        S::store(row + v * W, x);
      }
      mx[v] = S::max(mx[v], x);
    }
  }
  const V sc = S::set1(scale);
  V ms[NV], sum[NV];
  for (int v = 0; v < NV; ++v) {
    ms[v] = S::mul(mx[v], sc);
    sum[v] = S::zero();
  }
  for (int64_t j = 0; j < rows; ++j) {
    float* row = s + j * NR;
    for (int v = 0; v < NV; ++v) {
      const V e = S::exp(S::fms(S::load(row + v * W), sc, ms[v]));
      S::store(row + v * W, e);
      sum[v] = S::add(sum[v], e);
    }
  }
  for (int v = 0; v < NV; ++v) S::store(invSum + v * W, sum[v]);
  for (int i = 0; i < NR; ++i) invSum[i] = 1.0f / invSum[i];
}

// ---------------------------------------------------------------- decode attention

#include "attn_chunk_impl.h"

// ---------------------------------------------------------------- peak probe

/** The machine's FMA peak for this level: more independent chains than FMA latency × pipes. */
template <class S>
double fmaLoop(int64_t iters) {
  using V = typename S::V;
  constexpr int A = S::REGS >= 32 ? 24 : 12;
  V acc[A];
  for (int i = 0; i < A; ++i) acc[i] = S::set1(1e-3f * static_cast<float>(i));
  const V b = S::set1(0.999999f), c = S::set1(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < A; ++i) acc[i] = S::fma(acc[i], b, c);
  }
  V sum = acc[0];
  for (int i = 1; i < A; ++i) sum = S::add(sum, acc[i]);
  volatile float sink = S::hsum(sum);  // keeps the loop alive
  (void)sink;
  return 2.0 * A * S::W * static_cast<double>(iters);
}

// ---------------------------------------------------------------- elementwise

/** g[i] = g[i] / (1 + exp(min(−g[i], 88))) · u[i] (kernels.h). */
template <class S>
void swiglu(float* g, const float* u, int64_t n) {
  using V = typename S::V;
  constexpr int W = S::W;
  const V one = S::set1(1.0f), cap = S::set1(88.0f), zero = S::zero();
  auto f = [&](V x, V y) { return S::mul(S::div(x, S::add(one, S::exp(S::min(S::sub(zero, x), cap)))), y); };
  const int64_t nFull = n / W * W;
  for (int64_t i = 0; i < nFull; i += W) S::store(g + i, f(S::load(g + i), S::load(u + i)));
  if (nFull < n) {
    const typename S::M tm = S::mask(n - nFull);
    S::store(g + nFull, f(S::load(g + nFull, tm), S::load(u + nFull, tm)), tm);
  }
}

/**
 * y[H] = x / sqrt(mean(x²) + eps) · w (kernels.h). The scalar level is nn/block.ts rmsNorm
 * exactly: f64 sum in order, f64 1/rms, x·r rounded to f32, then · w. The SIMD levels sum
 * squares in f32 lanes and scale by the f32 r.
 */
template <class S>
void rmsNormRow(const float* x, const float* w, int64_t H, float eps, float* y) {
  if constexpr (S::W == 1) {
    double ss = 0.0;
    for (int64_t i = 0; i < H; ++i) ss += static_cast<double>(x[i]) * x[i];
    const double r = 1.0 / __builtin_sqrt(ss / static_cast<double>(H) + static_cast<double>(eps));
    for (int64_t i = 0; i < H; ++i) y[i] = static_cast<float>(x[i] * r) * w[i];
  } else {
    using V = typename S::V;
    constexpr int W = S::W;
    V a0 = S::zero(), a1 = S::zero();
    int64_t i = 0;
    for (; i + 2 * W <= H; i += 2 * W) {
      const V v0 = S::load(x + i), v1 = S::load(x + i + W);
      a0 = S::fma(v0, v0, a0);
      a1 = S::fma(v1, v1, a1);
    }
    for (; i < H; i += W) {
      const V v = S::load(x + i, S::mask(H - i));
      a0 = S::fma(v, v, a0);
    }
    const double ss = S::hsum(S::add(a0, a1));
    const V r = S::set1(static_cast<float>(1.0 / __builtin_sqrt(ss / static_cast<double>(H) + static_cast<double>(eps))));
    for (i = 0; i + W <= H; i += W) S::store(y + i, S::mul(S::mul(S::load(x + i), r), S::load(w + i)));
    if (i < H) {
      const typename S::M m = S::mask(H - i);
      S::store(y + i, S::mul(S::mul(S::load(x + i, m), r), S::load(w + i, m)), m);
    }
  }
}

/**
 * RoPE ("rotate_half") of x [T, nHeads·2·half] in place; row t uses cos/sin [t·half ..]
 * (kernels.h). Scalar: f64 products and difference, rounded once (nn/rope.ts exactly);
 * SIMD: x1·c − x2·s with one fused rounding.
 */
template <class S>
void ropeRows(float* x, int64_t T, int64_t nHeads, int64_t half, const float* cos, const float* sin) {
  using V = typename S::V;
  constexpr int W = S::W;
  for (int64_t t = 0; t < T; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int64_t hd = 0; hd < nHeads; ++hd) {
      float* a = x + (t * nHeads + hd) * 2 * half;
      float* b = a + half;
      if constexpr (W == 1) {
        for (int64_t i = 0; i < half; ++i) {
          const double x1 = a[i], x2 = b[i];
          a[i] = static_cast<float>(x1 * c[i] - x2 * s[i]);
          b[i] = static_cast<float>(x2 * c[i] + x1 * s[i]);
        }
      } else {
        for (int64_t i = 0; i < half; i += W) {
          const typename S::M m = S::mask(half - i);
          const V x1 = S::load(a + i, m), x2 = S::load(b + i, m), cv = S::load(c + i, m), sv = S::load(s + i, m);
          S::store(a + i, S::fms(x1, cv, S::mul(x2, sv)), m);
          S::store(b + i, S::fma(x2, cv, S::mul(x1, sv)), m);
        }
      }
    }
  }
}

/** out[i] = a[i] + b[i] (out may be a or b): every level is exact f32 addition. */
template <class S>
void addRows(const float* a, const float* b, float* out, int64_t n) {
  constexpr int W = S::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) S::store(out + i, S::add(S::load(a + i), S::load(b + i)));
  if (i < n) {
    const typename S::M m = S::mask(n - i);
    S::store(out + i, S::add(S::load(a + i, m), S::load(b + i, m)), m);
  }
}

/** dst[i] = src[i] rounded to f16 bits, to nearest even (floatToHalf for the tail and the scalar level). */
template <class S>
void toF16Rows(const float* src, uint16_t* dst, int64_t n) {
  constexpr int W = S::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) S::storeH(dst + i, S::load(src + i));
  for (; i < n; ++i) dst[i] = floatToHalf(src[i]);
}

/**
 * The lowest index of x's largest value, NaNs skipped, 0 when none exceeds −∞ (sampler.ts
 * argmax: a strict > scan from −∞). Blocks of 16·W: a block's max (S::max(x, m) keeps m
 * where x is NaN: vmaxps returns its second operand then; the scalar level's a > b ? a : b
 * too) replaces the best only when strictly larger, so `at` is the first block holding the
 * maximum, and the first equal element inside it is the answer.
 */
template <class S>
int64_t argmaxRow(const float* x, int64_t n) {
  constexpr int W = S::W;
  constexpr int64_t kBlock = 16 * W;
  using V = typename S::V;
  float best = kNegInf;
  int64_t at = -1;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = minOf(n, b + kBlock);
    V m0 = S::set1(kNegInf), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = b;
    for (; i + 4 * W <= e; i += 4 * W) {
      m0 = S::max(S::load(x + i), m0);
      m1 = S::max(S::load(x + i + W), m1);
      m2 = S::max(S::load(x + i + 2 * W), m2);
      m3 = S::max(S::load(x + i + 3 * W), m3);
    }
    for (; i + W <= e; i += W) m0 = S::max(S::load(x + i), m0);
    if (i < e) m1 = S::max(S::fillFrom(S::load(x + i, S::mask(e - i)), e - i, kNegInf), m1);
    const V m = S::max(S::max(m0, m1), S::max(m2, m3));
    if (S::anyGreater(m, best)) {
      best = S::hmax(m);
      at = b;
    }
  }
  if (at < 0) return 0;
  int64_t i = at;
  while (!(x[i] == best)) ++i;
  return i;
}

// ---------------------------------------------------------------- the table

template <class S, int MR, int NV>
constexpr KernelTable makeTable(const char* name, int kc) {
  return KernelTable{name, MR, NV * S::W, kc, &packA<MR>, &packB<S, NV * S::W>, &tile<S, MR, NV>,
                     &gemv<S>, &softmaxCols<S, NV>, &attnChunk<S, float>, &attnChunk<S, uint16_t>, &attnCombine<S>, &swiglu<S>,
                     &rmsNormRow<S>, &ropeRows<S>, &addRows<S>, &toF16Rows<S>, &argmaxRow<S>, &fmaLoop<S>};
}

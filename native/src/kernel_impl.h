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
//   attnRows        attention of one position's heads over the cache (decode)
//   swiglu          silu(gate) · up, elementwise (the MLP between gate/up and down)
//   fmaLoop         the FMA peak probe the kernel benchmark reports against
// Nothing here allocates, spawns threads or checks arguments (the drivers and the
// TypeScript loader do that).
//
// ~465 lines: every per-level template lives here because kernels_<level>.cc must
// instantiate the whole set (the table at the end) from ONE include per level; a split
// would only add a second include each level must remember.

template <class T>
inline T minOf(T a, T b) { return a < b ? a : b; }

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

/** s[j] = scale · q·k_j for j in [j0, j1), four keys per pass over q. */
template <class S>
void scoreRange(const float* q, const float* k, int64_t ks, int d, int64_t j0, int64_t j1, float scale, float* s) {
  using V = typename S::V;
  constexpr int W = S::W;
  const int nv = d / W;
  const int tail = d - nv * W;
  const typename S::M tm = S::mask(tail);
  int64_t j = j0;
  for (; j + 4 <= j1; j += 4) {
    const float* k0 = k + j * ks;
    const float* k1 = k0 + ks;
    const float* k2 = k1 + ks;
    const float* k3 = k2 + ks;
    V a0 = S::zero(), a1 = S::zero(), a2 = S::zero(), a3 = S::zero();
    for (int c = 0; c < nv * W; c += W) {
      const V qv = S::load(q + c);
      a0 = S::fma(qv, S::load(k0 + c), a0);
      a1 = S::fma(qv, S::load(k1 + c), a1);
      a2 = S::fma(qv, S::load(k2 + c), a2);
      a3 = S::fma(qv, S::load(k3 + c), a3);
    }
    if (tail) {
      const int c = nv * W;
      const V qv = S::load(q + c, tm);
      a0 = S::fma(qv, S::load(k0 + c, tm), a0);
      a1 = S::fma(qv, S::load(k1 + c, tm), a1);
      a2 = S::fma(qv, S::load(k2 + c, tm), a2);
      a3 = S::fma(qv, S::load(k3 + c, tm), a3);
    }
    s[j] = S::hsum(a0) * scale;
    s[j + 1] = S::hsum(a1) * scale;
    s[j + 2] = S::hsum(a2) * scale;
    s[j + 3] = S::hsum(a3) * scale;
  }
  for (; j < j1; ++j) {
    const float* kj = k + j * ks;
    V a = S::zero();
    for (int c = 0; c < nv * W; c += W) a = S::fma(S::load(q + c), S::load(kj + c), a);
    if (tail) a = S::fma(S::load(q + nv * W, tm), S::load(kj + nv * W, tm), a);
    s[j] = S::hsum(a) * scale;
  }
}

/** p[j] = exp(s[j] − max) / Σ, in place. */
template <class S>
void softmaxRow(float* s, int64_t n) {
  using V = typename S::V;
  constexpr int W = S::W;
  const int64_t nFull = n / W * W;
  const typename S::M tm = S::mask(n - nFull);
  V mx = S::set1(kNegInf);
  for (int64_t j = 0; j < nFull; j += W) mx = S::max(mx, S::load(s + j));
  float m = S::hmax(mx);
  for (int64_t j = nFull; j < n; ++j) m = s[j] > m ? s[j] : m;
  const V mv = S::set1(m);
  V sum = S::zero();
  for (int64_t j = 0; j < nFull; j += W) {
    const V e = S::exp(S::sub(S::load(s + j), mv));
    S::store(s + j, e);
    sum = S::add(sum, e);
  }
  float total = S::hsum(sum);
  if (nFull < n) {
    S::store(s + nFull, S::exp(S::sub(S::load(s + nFull, tm), mv)), tm);
    for (int64_t j = nFull; j < n; ++j) total += s[j];
  }
  const float inv = 1.0f / total;
  const V iv = S::set1(inv);
  for (int64_t j = 0; j < nFull; j += W) S::store(s + j, S::mul(S::load(s + j), iv));
  for (int64_t j = nFull; j < n; ++j) s[j] *= inv;
}

/** o[c] (+)= Σ_j p[j]·v[j·ks + c] for c < width, NVC vectors (the last one partial when TAIL). */
template <class S, int NVC, bool TAIL>
void pvChunk(const float* p, const float* v, int64_t ks, int64_t nKeys, float* o, bool first, int width) {
  using V = typename S::V;
  constexpr int W = S::W;
  const typename S::M tm = S::mask(width - (NVC - 1) * W);
  V acc[NVC];
  for (int c = 0; c < NVC; ++c) {
    const bool part = TAIL && c == NVC - 1;
    acc[c] = first ? S::zero() : part ? S::load(o + c * W, tm) : S::load(o + c * W);
  }
  for (int64_t j = 0; j < nKeys; ++j) {
    const V pj = S::set1(p[j]);
    const float* vj = v + j * ks;
#pragma GCC unroll 8
    for (int c = 0; c < NVC; ++c) {
      const bool part = TAIL && c == NVC - 1;
      acc[c] = S::fma(pj, part ? S::load(vj + c * W, tm) : S::load(vj + c * W), acc[c]);
    }
  }
  for (int c = 0; c < NVC; ++c) {
    if (TAIL && c == NVC - 1) S::store(o + c * W, acc[c], tm);
    else S::store(o + c * W, acc[c]);
  }
}

template <class S, int NVC>
struct PvByWidth {
  static void run(int nvc, bool tail, const float* p, const float* v, int64_t ks, int64_t nKeys, float* o, bool first, int width) {
    if (nvc == NVC) {
      if (tail) pvChunk<S, NVC, true>(p, v, ks, nKeys, o, first, width);
      else pvChunk<S, NVC, false>(p, v, ks, nKeys, o, first, width);
    } else {
      PvByWidth<S, NVC - 1>::run(nvc, tail, p, v, ks, nKeys, o, first, width);
    }
  }
};
template <class S>
struct PvByWidth<S, 0> {
  static void run(int, bool, const float*, const float*, int64_t, int64_t, float*, bool, int) {}
};

/** dst[j·d + c] = src[j·ks + c]: a block of rows made contiguous. */
inline void copyRows(const float* src, int64_t ks, int64_t rows, int d, float* dst) {
  for (int64_t j = 0; j < rows; ++j) __builtin_memcpy(dst + j * d, src + j * ks, static_cast<size_t>(d) * sizeof(float));
}

/**
 * One query position, the `group` heads of one kv head: scores, softmax, P·V.
 * Keys are visited in blocks; with several heads per kv head the block is first
 * copied to contiguous scratch (in the cache its rows are often 4 KiB apart and
 * would not stay in L1), so every head of the group reads it from L1.
 */
template <class S>
void attnRows(const AttnRowsArgs& a) {
  constexpr int W = S::W;
  constexpr int kMaxVecs = 8;  // d columns per P·V pass (accumulators in registers)
  constexpr int64_t KB = kAttnRowsKeyBlock;
  const int d = a.d;
  const int64_t nk = a.nKeys;
  const bool copy = a.group > 1;
  float* blk = a.scores + a.group * nk;  // [KB, d]
  for (int64_t j0 = 0; j0 < nk; j0 += KB) {
    const int64_t j1 = minOf(nk, j0 + KB);
    const float* kb = a.k + j0 * a.kvStride;
    int64_t ks = a.kvStride;
    if (copy) {
      copyRows(kb, ks, j1 - j0, d, blk);
      kb = blk;
      ks = d;
    }
    for (int h = 0; h < a.group; ++h) scoreRange<S>(a.q + h * d, kb, ks, d, 0, j1 - j0, a.scale, a.scores + h * nk + j0);
  }
  for (int h = 0; h < a.group; ++h) softmaxRow<S>(a.scores + h * nk, nk);
  for (int64_t j0 = 0; j0 < nk; j0 += KB) {
    const int64_t j1 = minOf(nk, j0 + KB);
    const float* vb = a.v + j0 * a.kvStride;
    int64_t ks = a.kvStride;
    if (copy) {
      copyRows(vb, ks, j1 - j0, d, blk);
      vb = blk;
      ks = d;
    }
    for (int h = 0; h < a.group; ++h) {
      for (int c0 = 0; c0 < d; c0 += kMaxVecs * W) {
        const int width = minOf(kMaxVecs * W, d - c0);
        const int nvc = (width + W - 1) / W;
        PvByWidth<S, kMaxVecs>::run(nvc, width % W != 0, a.scores + h * nk + j0, vb + c0, ks, j1 - j0,
                                    a.out + h * d + c0, j0 == 0, width);
      }
    }
  }
}

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

// ---------------------------------------------------------------- the table

template <class S, int MR, int NV>
constexpr KernelTable makeTable(const char* name, int kc) {
  return KernelTable{name, MR, NV * S::W, kc, &packA<MR>, &packB<S, NV * S::W>, &tile<S, MR, NV>,
                     &gemv<S>, &softmaxCols<S, NV>, &attnRows<S>, &swiglu<S>, &fmaLoop<S>};
}

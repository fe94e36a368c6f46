// Decode attention over one chunk of keys, every head at once (kernel attnChunk), and
// the merge of the chunks' partial results (attnCombine). Included by kernel_impl.h
// inside each level's anonymous namespace, so it is instantiated per SIMD level
// like the rest of the table; the scalar level (W = 1) is the reference the tests
// hold the others to.
//
// Why chunks of keys over all heads (measured on the Zen 4 host, TinyLlama shapes:
// 32 heads / 4 kv heads, d 64, 576 keys, 2 threads; the cache streamed from DRAM):
// the former kernel ran one task per kv head, so each task read 256 B of every 1 KiB
// cache row: a strided stream the prefetchers did not follow (6.8 GB/s, 174 µs per
// layer). A chunk of positions is one contiguous run of rows (all kv heads), read
// once for K and once for V. The scores are a small GEMM, Q[group, d] · K_blockᵀ:
// a block of W keys of one kv head is transposed in registers to [d][W], then each
// query head accumulates W scores in one vector (broadcast q · row of Kᵀ), with no
// horizontal sum per (head, key); the transpose is shared by the group's heads.
// Measured (the cache cycled through 75 MB so it streams from DRAM, one call per layer):
// 173–180 µs → 92–100 µs per call on 2 threads; inside a decode step 157 µs
// (eval/reports/profile-decode-576.md, a loaded host). What is left: 4.7 MFLOP per
// call is ~41 µs of one core's FMA peak (114 GFLOP/s measured), and the score and
// P·V loops run at that peak (perf: one FMA per cycle); the 16×16 transposes and the
// exp take ~30% more, so it is compute-bound on f32 as much as bandwidth-bound on the
// 1.18 MB of K and V. Halving the bytes (an f16 cache) does not lift the FMA floor.

/**
 * kt[c·W + jj] = k_jj[c] for c < d, jj < W (keys past nb read as 0): the block of W keys
 * at k (row stride ks) transposed, W×W register blocks at a time.
 */
template <class S>
void transposeKeys(const float* k, int64_t ks, int nb, int d, float* kt) {
  using V = typename S::V;
  constexpr int W = S::W;
  for (int c0 = 0; c0 < d; c0 += W) {
    V r[W];
    if (nb == W && c0 + W <= d) {  // whole block: plain loads, all in registers
      for (int jj = 0; jj < W; ++jj) r[jj] = S::load(k + jj * ks + c0);
    } else {
      const typename S::M m = S::mask(d - c0);
      for (int jj = 0; jj < W; ++jj) r[jj] = jj < nb ? S::load(k + jj * ks + c0, m) : S::zero();
    }
    S::transpose(r);
    // A fixed count when whole: with a variable one GCC turns the stores into a memcpy
    // of r spilled to the stack (rep movsq: a third of the kernel's time, measured).
    if (c0 + W <= d) {
      for (int i = 0; i < W; ++i) S::store(kt + (c0 + i) * W, r[i]);
    } else {
      for (int i = 0; i < d - c0; ++i) S::store(kt + (c0 + i) * W, r[i]);
    }
  }
}

/** s[h·ss .. +W) = scale · Σ_c q[h·d + c] · kt[c·W ..] for h < group: W scores of each head. */
template <class S>
void scoresFromKt(const float* q, const float* kt, int d, int group, float scale, float* s, int64_t ss) {
  using V = typename S::V;
  constexpr int W = S::W;
  const V sc = S::set1(scale);
  int h = 0;
  for (; h + 4 <= group; h += 4) {  // 4 heads × 2 chains (even / odd c): 8 FMAs in flight
    const float* qh = q + h * d;
    V a[4][2];
    for (int i = 0; i < 4; ++i) a[i][0] = a[i][1] = S::zero();
    int c = 0;
    for (; c + 2 <= d; c += 2) {
      const V k0 = S::load(kt + c * W), k1 = S::load(kt + (c + 1) * W);
      for (int i = 0; i < 4; ++i) {
        a[i][0] = S::fma(S::set1(qh[i * d + c]), k0, a[i][0]);
        a[i][1] = S::fma(S::set1(qh[i * d + c + 1]), k1, a[i][1]);
      }
    }
    if (c < d) {
      const V k0 = S::load(kt + c * W);
      for (int i = 0; i < 4; ++i) a[i][0] = S::fma(S::set1(qh[i * d + c]), k0, a[i][0]);
    }
    for (int i = 0; i < 4; ++i) S::store(s + (h + i) * ss, S::mul(S::add(a[i][0], a[i][1]), sc));
  }
  for (; h < group; ++h) {  // one head, 4 chains
    const float* qh = q + h * d;
    V a[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
    int c = 0;
    for (; c + 4 <= d; c += 4) {
      for (int i = 0; i < 4; ++i) a[i] = S::fma(S::set1(qh[c + i]), S::load(kt + (c + i) * W), a[i]);
    }
    for (; c < d; ++c) a[0] = S::fma(S::set1(qh[c]), S::load(kt + c * W), a[0]);
    S::store(s + h * ss, S::mul(S::add(S::add(a[0], a[1]), S::add(a[2], a[3])), sc));
  }
}

/** s[j] = exp(s[j] − m) for j < n, in place; *mOut = m = max_j s[j], *lOut = Σ_j s[j] after. */
template <class S>
void expPartial(float* s, int64_t n, float* mOut, float* lOut) {
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
  *mOut = m;
  *lOut = total;
}

/**
 * o[h·d + c] (+)= Σ_j p[h·ps + j] · v[j·ks + c] for HG heads and NVC vectors of columns
 * (c < width; the last vector masked): the value rows are loaded once for the HG heads.
 */
template <class S, int HG, int NVC, bool TAIL>
void pvHeads(const float* p, int64_t ps, const float* v, int64_t ks, int64_t nKeys, float* o, int d, bool first, int width) {
  using V = typename S::V;
  constexpr int W = S::W;
  const typename S::M tm = S::mask(width - (NVC - 1) * W);
  V acc[HG][NVC];
  for (int h = 0; h < HG; ++h) {
    for (int c = 0; c < NVC; ++c) {
      float* oc = o + h * d + c * W;
      acc[h][c] = first ? S::zero() : TAIL && c == NVC - 1 ? S::load(oc, tm) : S::load(oc);
    }
  }
  for (int64_t j = 0; j < nKeys; ++j) {
    const float* vj = v + j * ks;
    V vv[NVC];
    for (int c = 0; c < NVC; ++c) vv[c] = TAIL && c == NVC - 1 ? S::load(vj + c * W, tm) : S::load(vj + c * W);
    for (int h = 0; h < HG; ++h) {
      const V pj = S::set1(p[h * ps + j]);
      for (int c = 0; c < NVC; ++c) acc[h][c] = S::fma(pj, vv[c], acc[h][c]);
    }
  }
  for (int h = 0; h < HG; ++h) {
    for (int c = 0; c < NVC; ++c) {
      float* oc = o + h * d + c * W;
      if (TAIL && c == NVC - 1) S::store(oc, acc[h][c], tm);
      else S::store(oc, acc[h][c]);
    }
  }
}

template <class S, int HG, int NVC>
void pvHeadsT(const float* p, int64_t ps, const float* v, int64_t ks, int64_t nKeys, float* o, int d, bool first, int width) {
  if (width == NVC * S::W) pvHeads<S, HG, NVC, false>(p, ps, v, ks, nKeys, o, d, first, width);
  else pvHeads<S, HG, NVC, true>(p, ps, v, ks, nKeys, o, d, first, width);
}

/**
 * pvHeads for a run-time vector count nvc ≤ 8. HG·NVC accumulators stay ≤ 16: the caller
 * takes HG = 4 only for nvc ≤ 4 (the HG = 4 cases past that are never called).
 */
template <class S, int HG>
void pvHeadsN(int nvc, const float* p, int64_t ps, const float* v, int64_t ks, int64_t nKeys, float* o, int d, bool first, int width) {
  constexpr int H2 = HG < 3 ? HG : 2;
  switch (nvc) {
    case 1: pvHeadsT<S, HG, 1>(p, ps, v, ks, nKeys, o, d, first, width); break;
    case 2: pvHeadsT<S, HG, 2>(p, ps, v, ks, nKeys, o, d, first, width); break;
    case 3: pvHeadsT<S, HG, 3>(p, ps, v, ks, nKeys, o, d, first, width); break;
    case 4: pvHeadsT<S, HG, 4>(p, ps, v, ks, nKeys, o, d, first, width); break;
    case 5: pvHeadsT<S, H2, 5>(p, ps, v, ks, nKeys, o, d, first, width); break;
    case 6: pvHeadsT<S, H2, 6>(p, ps, v, ks, nKeys, o, d, first, width); break;
    case 7: pvHeadsT<S, H2, 7>(p, ps, v, ks, nKeys, o, d, first, width); break;
    default: pvHeadsT<S, H2, 8>(p, ps, v, ks, nKeys, o, d, first, width); break;
  }
}

/**
 * One query position, keys [0, nKeys) of a chunk, all heads (kernels.h AttnChunkArgs):
 * out[h] = Σ_j exp(s_hj − m_h) v_j (not normalised), m[h] = max_j s_hj, l[h] = Σ_j exp(s_hj − m_h).
 */
/** Prefetches floats [0, width) of rows [j0, j1) at base (row stride ks floats). */
inline void prefetchRows(const float* base, int64_t ks, int64_t j0, int64_t j1, int64_t width) {
  for (int64_t j = j0; j < j1; ++j) {
    const char* r = reinterpret_cast<const char*>(base + j * ks);
    // prefetcht2: into L2, not L1 (the 32 KiB L1 holds the block being read; prefetching
    // into it lost lines before their use: t0 gave no gain, t2 ~25%, measured).
    for (int64_t b = 0; b < width * 4; b += 64) __builtin_prefetch(r + b, 0, 1);
  }
}

template <class S>
void attnChunk(const AttnChunkArgs& a) {
  constexpr int W = S::W;
  constexpr int kMaxVecs = 8;                 // columns per P·V pass
  constexpr int64_t KB = kAttnChunkPvKeys;    // keys per P·V block (its V rows stay in L1)
  const int d = a.d, group = a.group;
  const int nHead = a.nKvHead * group;
  const int64_t nk = a.nKeys, ks = a.kvStride;
  if (nk == 0) {
    for (int h = 0; h < nHead; ++h) {
      a.m[h] = kNegInf;
      a.l[h] = 0.0f;
      for (int c = 0; c < d; ++c) a.out[h * d + c] = 0.0f;
    }
    return;
  }
  const int64_t ss = (nk + W - 1) / W * W;  // score row stride: whole vectors
  float* kt = a.scratch + nHead * ss;       // [d][W]
  // 1. scores, W keys at a time: the block's rows (all kv heads) are one contiguous run.
  const int64_t row = static_cast<int64_t>(a.nKvHead) * d;  // floats of one position, all kv heads
  const int64_t PF = kAttnChunkPrefetchKeys;
  prefetchRows(a.k, ks, 0, minOf(nk, PF), row);
  for (int64_t j0 = 0; j0 < nk; j0 += W) {
    const int nb = static_cast<int>(minOf<int64_t>(W, nk - j0));
    for (int g = 0; g < a.nKvHead; ++g) {
      prefetchRows(a.k + g * d, ks, minOf(nk, j0 + PF), minOf(nk, j0 + PF + W), d);
      transposeKeys<S>(a.k + j0 * ks + g * d, ks, nb, d, kt);
      scoresFromKt<S>(a.q + g * group * d, kt, d, group, a.scale, a.scratch + g * group * ss + j0, ss);
    }
  }
  // 2. exp and the partial sums per head.
  for (int h = 0; h < nHead; ++h) expPartial<S>(a.scratch + h * ss, nk, a.m + h, a.l + h);
  // 3. P·V, KB keys at a time, the group's heads sharing each value row.
  prefetchRows(a.v, ks, 0, minOf(nk, PF), row);
  for (int64_t j0 = 0; j0 < nk; j0 += KB) {
    const int64_t nb = minOf(KB, nk - j0);
    for (int g = 0; g < a.nKvHead; ++g) {
      prefetchRows(a.v + g * d, ks, minOf(nk, j0 + PF), minOf(nk, j0 + PF + KB), d);
      const float* vb = a.v + j0 * ks + g * d;
      for (int c0 = 0; c0 < d; c0 += kMaxVecs * W) {
        const int width = minOf(kMaxVecs * W, d - c0);
        const int nvc = (width + W - 1) / W;
        int h = 0;
        const int hg = nvc <= 4 ? 4 : 2;
        for (; h + hg <= group; h += hg) {
          const int hh = g * group + h;
          if (hg == 4) pvHeadsN<S, 4>(nvc, a.scratch + hh * ss + j0, ss, vb + c0, ks, nb, a.out + hh * d + c0, d, j0 == 0, width);
          else pvHeadsN<S, 2>(nvc, a.scratch + hh * ss + j0, ss, vb + c0, ks, nb, a.out + hh * d + c0, d, j0 == 0, width);
        }
        for (; h < group; ++h) {
          const int hh = g * group + h;
          pvHeadsN<S, 1>(nvc, a.scratch + hh * ss + j0, ss, vb + c0, ks, nb, a.out + hh * d + c0, d, j0 == 0, width);
        }
      }
    }
  }
}

/**
 * out[h] = Σ_c e^(m_c,h − M_h) · part_c[h] / Σ_c e^(m_c,h − M_h) · l_c,h with M_h = max_c m_c,h:
 * the chunks' partial results merged (kernels.h). w is scratch [nChunks + 1][nHead].
 */
template <class S>
void attnCombine(const float* part, const float* m, const float* l, int nChunks, int nHead, int d, float* out, float* w) {
  using V = typename S::V;
  constexpr int W = S::W;
  float* inv = w + nChunks * nHead;
  for (int h0 = 0; h0 < nHead; h0 += W) {
    const typename S::M hm = S::mask(nHead - h0);
    V mx = S::load(m + h0, hm);
    for (int c = 1; c < nChunks; ++c) mx = S::max(mx, S::load(m + c * nHead + h0, hm));
    V sum = S::zero();
    for (int c = 0; c < nChunks; ++c) {
      const V e = S::exp(S::sub(S::load(m + c * nHead + h0, hm), mx));
      S::store(w + c * nHead + h0, e, hm);
      sum = S::fma(e, S::load(l + c * nHead + h0, hm), sum);
    }
    S::store(inv + h0, S::div(S::set1(1.0f), sum), hm);
  }
  const int nFull = d / W * W;
  const typename S::M tm = S::mask(d - nFull);
  for (int h = 0; h < nHead; ++h) {
    for (int c0 = 0; c0 < d; c0 += W) {
      const bool tail = c0 >= nFull;
      V acc = S::zero();
      for (int c = 0; c < nChunks; ++c) {
        const float* pc = part + (static_cast<int64_t>(c) * nHead + h) * d + c0;
        acc = S::fma(S::set1(w[c * nHead + h]), tail ? S::load(pc, tm) : S::load(pc), acc);
      }
      acc = S::mul(acc, S::set1(inv[h]));
      if (tail) S::store(out + h * d + c0, acc, tm);
      else S::store(out + h * d + c0, acc);
    }
  }
}

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
//
// Session 10 (Xeon host, AVX-512, 2 cores; /tmp micro calling attnChunk on one thread,
// 288 keys): one pass over blocks of 32 keys (online softmax, kAttnChunkSlack) instead of
// a K pass then a V pass, so that a thread's chunks are one stream of K and V rows read
// in order (rowsForm gives each thread a contiguous run of chunks, the prefetches running
// on into the next); prefetches a kv head at a time between the products (a whole block's
// burst stalled: 192 vs 167 ns per key cold); scores over 32 keys per q broadcast (the 16-
// key loop was load-bound). Hot 114 → 106 ns per key; DRAM-cold ~210 ns per key with two
// threads streaming, i.e. bound by the bytes (this host's read probe swings 17–32 GB/s).
// Hence attnChunkF16 (E = uint16_t): the same kernel over an f16 cache (KvCache "f16"), the
// rows widened to f32 as loaded (vcvtph2ps; the scalar level through halfToFloat). Micro
// (eval/bench-attention-ab.ts, 576 keys, 2 threads, cold): f32 93 µs → f16 62 µs per call.
//
// Session 11 (same host; the f16 cache is now the CPU default): perf of a hot one-thread loop
// (576 keys, f16) put 29% of the kernel's samples in the transposes (with the widening), 24% in
// the scores, 18% in exp and the softmax bookkeeping, 26% in P·V. Since then P·V runs 8 heads
// per pass over 2 vectors of columns (a value row loaded and widened once per 8 heads, not per
// 4), a block's max is reduced across lanes only when a lane passes m + slack, and the rows
// form's chunks fall on whole 32-key blocks (a chunk of 80 keys cost a 96-key score pass).
// bench-attention-ab, f16 on both sides, 576 keys: hot 1 thread 80.0 → 68.3 µs (1.17×), hot
// 2 threads 1.06×, cold 2 threads 1.10×; f32 cold 1.05× (a busy host: ratios, not times).

/** W elements of a cache row as f32: f32 as is, f16 (IEEE binary16 bits) widened. */
template <class S>
[[gnu::always_inline]] inline typename S::V loadRow(const float* p) { return S::load(p); }
template <class S>
[[gnu::always_inline]] inline typename S::V loadRow(const uint16_t* p) { return S::loadH(p); }
/** The first n < W elements, 0 past them (f16 through a buffer: the level may lack 16-bit masked loads). */
template <class S>
inline typename S::V loadRow(const float* p, int n) { return S::load(p, S::mask(n)); }
template <class S>
inline typename S::V loadRow(const uint16_t* p, int n) {
  alignas(64) float t[S::W];
  for (int i = 0; i < S::W; ++i) t[i] = i < n ? halfToFloat(p[i]) : 0.0f;
  return S::load(t);
}

/**
 * kt[c·ldt + jj] = k_jj[c] for c < d, jj < W (keys past nb read as 0): the block of W keys
 * at k (row stride ks) transposed, W×W register blocks at a time.
 */
template <class S, class E>
[[gnu::always_inline]] inline void transposeKeys(const E* k, int64_t ks, int nb, int d, float* kt, int64_t ldt) {
  using V = typename S::V;
  constexpr int W = S::W;
  for (int c0 = 0; c0 < d; c0 += W) {
    V r[W];
    if (nb == W && c0 + W <= d) {  // whole block: plain loads, all in registers
      for (int jj = 0; jj < W; ++jj) r[jj] = loadRow<S>(k + jj * ks + c0);
    } else {
      const int n = minOf(W, d - c0);
      for (int jj = 0; jj < W; ++jj) r[jj] = jj < nb ? loadRow<S>(k + jj * ks + c0, n) : S::zero();
    }
    S::transpose(r);
    // A fixed count when whole: with a variable one GCC turns the stores into a memcpy
    // of r spilled to the stack (rep movsq: a third of the kernel's time, measured).
    if (c0 + W <= d) {
      for (int i = 0; i < W; ++i) S::store(kt + (c0 + i) * ldt, r[i]);
    } else {
      for (int i = 0; i < d - c0; ++i) S::store(kt + (c0 + i) * ldt, r[i]);
    }
  }
}

/**
 * s[h·ss + j] = scale · Σ_c q_h[c] · kt[c·NV·W + j] for h < HG, j < NV·W: the scores of HG heads
 * over a block of NV·W transposed keys (kt f32 from transposeKeys, or f16 from a blocked key cache,
 * widened as loaded). q_h[c] is q[h·d + c], or with QT (queries transposed, [d][qs]) q[c·qs + h]:
 * the HG broadcasts of a column then sit at fixed offsets from one pointer (with a pointer per
 * head GCC spilled them, 5 stack loads per column at HG = 8). Each q element is broadcast once
 * for the NV vectors (with one vector per broadcast the loop was load-bound: 10 loads per 8 FMAs).
 */
template <class S, int HG, int NV, bool QT, class E>
[[gnu::always_inline]] inline void scoresHeads(const float* q, int qs, const E* kt, int d, float scale, float* s, int64_t ss,
                                               const char* pf = nullptr, int pfLines = 0) {
  using V = typename S::V;
  constexpr int W = S::W;
  V a[HG][NV];
  for (int h = 0; h < HG; ++h) {
    for (int n = 0; n < NV; ++n) a[h][n] = S::zero();
  }
  for (int c = 0; c < d; ++c) {
    V kv[NV];
    for (int n = 0; n < NV; ++n) kv[n] = loadRow<S>(kt + (c * NV + n) * W);  // f16: widened as loaded
    if (c < pfLines) __builtin_prefetch(pf + 64 * c, 0, kAttnChunkPrefetchLocality);
    for (int h = 0; h < HG; ++h) {
      const V qb = S::set1(QT ? q[c * qs + h] : q[h * d + c]);
      for (int n = 0; n < NV; ++n) a[h][n] = S::fma(qb, kv[n], a[h][n]);
    }
  }
  const V sc = S::set1(scale);
  for (int h = 0; h < HG; ++h) {
    for (int n = 0; n < NV; ++n) S::store(s + h * ss + n * W, S::mul(a[h][n], sc));
  }
}

/**
 * The f16 form of transposeKeys + scoresHeads at W = 16 (d a multiple of 32, a whole block of
 * 16 keys): the keys are transposed as 32-bit PAIRS of f16 elements (one 16×16 transpose per
 * 32 columns, half the shuffles of widening first and transposing f32: the shuffles share the
 * FMA port), to kt16 [d/2 pairs][16 keys][2]. Widened as loaded, a vector of kt16 holds 8 keys ×
 * 2 columns (lane 2m + t: key m, column 2i + t), multiplied by q's columns 2i, 2i + 1 broadcast
 * as a pair; the two partial sums of a key (even and odd columns) are added at the end.
 */
template <class S>
[[gnu::always_inline]] inline void transposePairs(const uint16_t* k, int64_t ks, int d, uint16_t* kt16) {
  using V = typename S::V;
  for (int c0 = 0; c0 < d; c0 += 32) {
    V r[16];
    for (int jj = 0; jj < 16; ++jj) r[jj] = S::load(reinterpret_cast<const float*>(k + jj * ks + c0));
    S::transpose(r);  // r[i]: pair c0/2 + i of keys 0..15 (bits moved, never computed on)
    for (int i = 0; i < 16; ++i) S::store(reinterpret_cast<float*>(kt16 + (c0 / 2 + i) * 32), r[i]);
  }
}

/** s[h·ss + jj] = scale · q_h · k_jj for HG heads, jj < 16, from transposePairs' kt16. */
template <class S, int HG>
[[gnu::always_inline]] inline void scoresPairs(const float* q, const uint16_t* kt16, int d, float scale, float* s, int64_t ss) {
  using V = typename S::V;
  V a[HG][2];
  for (int h = 0; h < HG; ++h) a[h][0] = a[h][1] = S::zero();
  for (int i = 0; i < d / 2; ++i) {
    const V k0 = S::loadH(kt16 + i * 32), k1 = S::loadH(kt16 + i * 32 + 16);  // keys 0..7, 8..15
    for (int h = 0; h < HG; ++h) {
      const V qb = S::bcast2(q + h * d + 2 * i);
      a[h][0] = S::fma(qb, k0, a[h][0]);
      a[h][1] = S::fma(qb, k1, a[h][1]);
    }
  }
  const V sc = S::set1(scale);
  for (int h = 0; h < HG; ++h) S::store(s + h * ss, S::mul(S::pairSum(a[h][0], a[h][1]), sc));
}

template <class S>
[[gnu::always_inline]] inline void scoresPairsGroup(const float* q, const uint16_t* kt16, int d, int group, float scale, float* s, int64_t ss) {
  int h = 0;
  for (; h + 8 <= group; h += 8) scoresPairs<S, 8>(q + h * d, kt16, d, scale, s + h * ss, ss);
  for (; h + 4 <= group; h += 4) scoresPairs<S, 4>(q + h * d, kt16, d, scale, s + h * ss, ss);
  for (; h + 2 <= group; h += 2) scoresPairs<S, 2>(q + h * d, kt16, d, scale, s + h * ss, ss);
  for (; h < group; ++h) scoresPairs<S, 1>(q + h * d, kt16, d, scale, s + h * ss, ss);
}

/**
 * scoresHeads for the `group` heads of one kv head: as many heads per pass as the registers hold.
 * q: the group's rows [group][d], or with QT transposed [d][group] (AttnChunkArgs::qt).
 */
template <class S, int NV, bool QT, class E>
[[gnu::always_inline]] inline void scoresGroup(const float* q, const E* kt, int d, int group, float scale, float* s, int64_t ss,
                                               const char* pf = nullptr, int pfLines = 0) {
  constexpr int HG = S::REGS / 2 / NV > 8 ? 8 : S::REGS / 2 / NV < 1 ? 1 : S::REGS / 2 / NV;  // HG·NV accumulators ≤ half the registers
  const auto qh = [&](int h) { return QT ? q + h : q + h * d; };
  int h = 0;
  for (; h + HG <= group; h += HG) scoresHeads<S, HG, NV, QT>(qh(h), group, kt, d, scale, s + h * ss, ss, pf, h == 0 ? pfLines : 0);
  for (int i = h == 0 ? 0 : pfLines; i < pfLines; ++i) __builtin_prefetch(pf + 64 * i, 0, kAttnChunkPrefetchLocality);  // no full pass: a burst
  if constexpr (HG > 4) {
    for (; h + 4 <= group; h += 4) scoresHeads<S, 4, NV, QT>(qh(h), group, kt, d, scale, s + h * ss, ss);
  }
  if constexpr (HG > 2) {
    for (; h + 2 <= group; h += 2) scoresHeads<S, 2, NV, QT>(qh(h), group, kt, d, scale, s + h * ss, ss);
  }
  for (; h < group; ++h) scoresHeads<S, 1, NV, QT>(qh(h), group, kt, d, scale, s + h * ss, ss);
}

/**
 * o[h·d + c] (+)= Σ_j p[h·ps + j] · v[j·ks + c] for HG heads and NVC vectors of columns
 * (c < width; the last vector masked): the value rows are loaded once for the HG heads.
 */
template <class S, int HG, int NVC, bool TAIL, class E>
void pvHeads(const float* p, int64_t ps, const E* v, int64_t ks, int64_t nKeys, float* o, int d, bool first, int width,
             const E* pf, int64_t pfRows) {
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
    const E* vj = v + j * ks;
    if (j < pfRows) {  // row j of a later block (pf, stride ks): its columns of this pass
      const char* r = reinterpret_cast<const char*>(pf + j * ks);
      for (int64_t b = 0; b < width * static_cast<int64_t>(sizeof(E)); b += 64) __builtin_prefetch(r + b, 0, kAttnChunkPrefetchLocality);
    }
    V vv[NVC];
    for (int c = 0; c < NVC; ++c) vv[c] = TAIL && c == NVC - 1 ? loadRow<S>(vj + c * W, width - c * W) : loadRow<S>(vj + c * W);
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

template <class S, int HG, int NVC, class E>
void pvHeadsT(const float* p, int64_t ps, const E* v, int64_t ks, int64_t nKeys, float* o, int d, bool first, int width,
              const E* pf = nullptr, int64_t pfRows = 0) {
  if (width == NVC * S::W) pvHeads<S, HG, NVC, false, E>(p, ps, v, ks, nKeys, o, d, first, width, pf, pfRows);
  else pvHeads<S, HG, NVC, true, E>(p, ps, v, ks, nKeys, o, d, first, width, pf, pfRows);
}

/**
 * pvHeads for a run-time vector count nvc ≤ 8. HG·NVC accumulators stay ≤ 16: the caller
 * takes HG = 4 only for nvc ≤ 4 (the HG = 4 cases past that are never called).
 */
template <class S, int HG, class E>
void pvHeadsN(int nvc, const float* p, int64_t ps, const E* v, int64_t ks, int64_t nKeys, float* o, int d, bool first, int width) {
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

/** Prefetches elements [0, width) of rows [j0, j1) at base (row stride ks elements). */
template <class E>
inline void prefetchRows(const E* base, int64_t ks, int64_t j0, int64_t j1, int64_t width) {
  for (int64_t j = j0; j < j1; ++j) {
    const char* r = reinterpret_cast<const char*>(base + j * ks);
    for (int64_t b = 0; b < width * static_cast<int64_t>(sizeof(E)); b += 64) __builtin_prefetch(r + b, 0, kAttnChunkPrefetchLocality);
  }
}

/**
 * One query position, keys [0, nKeys) of a chunk, all heads (kernels.h AttnChunkArgs), in one
 * pass over blocks of KB keys ("online" softmax): per block the scores of every head (W keys
 * at a time: each kv head's W rows transposed to [d][W], shared by its group), then
 * p = exp(s − m_h) and P·V into out. m_h is the first block's max and is raised only when a
 * block's max passes it by more than kAttnChunkSlack (out and l are then rescaled), so that
 * p ≤ e^slack never overflows; any such reference is exact for the merge (attnCombine).
 * K and V of a block are one contiguous run of rows each, read once; the rows PF keys ahead
 * are prefetched a kv head at a time between the blocks' products (a burst of a whole
 * block's prefetches stalled the loop: 192 vs 167 ns per key, DRAM-cold, one thread), up to
 * prefetchKeys, past the chunk when the same thread reads on.
 */
template <class S, class E>
void attnChunk(const AttnChunkArgs& a) {
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int kMaxVecs = 8;               // columns per P·V pass
  constexpr int64_t KB = kAttnChunkPvKeys;  // keys per block
  constexpr int NV = static_cast<int>(KB / W);
  const int d = a.d, group = a.group;
  const int nHead = a.nKvHead * group;
  const int64_t nk = a.nKeys, ks = a.kvStride;
  const E* kc = static_cast<const E*>(a.k);
  const E* vc = static_cast<const E*>(a.v);
  for (int h = 0; h < nHead; ++h) {
    a.m[h] = kNegInf;
    for (int c = 0; c < d; ++c) a.out[h * d + c] = 0.0f;
  }
  float* sb = a.scratch;             // [nHead][KB]: the block's scores, then p
  float* lv = sb + nHead * KB;       // [nHead][W]: Σ p per lane
  float* kt = lv + nHead * W;        // [d][KB]
  for (int i = 0; i < nHead * W; ++i) lv[i] = 0.0f;
  const int64_t row = static_cast<int64_t>(a.nKvHead) * d;  // floats of one position, all kv heads
  const int64_t PF = kAttnChunkPrefetchKeys, pe = a.prefetchKeys;
  // kBlocks: a block of KB keys of kv head g is d·KB contiguous f16 at kc + (j0/KB·nKvHead + g)·d·KB.
  const int64_t kvBlock = static_cast<int64_t>(d) * KB;
  const auto keyBlock = [&](int64_t j0, int g) { return kc + (j0 / KB * a.nKvHead + g) * kvBlock; };
  const auto prefetchKeys = [&](int g, int64_t j0, int64_t j1) {  // kv head g's keys [j0, j1)
    if (!a.kBlocks) {
      prefetchRows(kc + g * d, ks, j0, j1, d);
      return;
    }
    for (int64_t b = j0 / KB * KB; b < j1; b += KB) prefetchRows(keyBlock(b, g), 0, 0, 1, kvBlock);
  };
  if (a.prefetchHead) {
    if (a.kBlocks) prefetchRows(kc, 0, 0, 1, (minOf(pe, PF) + KB - 1) / KB * a.nKvHead * kvBlock);
    else prefetchRows(kc, ks, 0, minOf(pe, PF), row);
    prefetchRows(vc, ks, 0, minOf(pe, PF), row);
  }
  // The hint's lines (the next call's weights): an equal share at each of the 2·nKvHead points
  // per block, between the products like the cache prefetches.
  const int64_t hintPoints = (nk + KB - 1) / KB * 2 * a.nKvHead, hintN = a.hint != nullptr ? a.hintLine1 - a.hintLine0 : 0;
  int64_t hintPoint = 0;
  const auto hintNext = [&] {
    if (hintN <= 0) return;
    const int64_t l0 = a.hintLine0 + hintPoint * hintN / hintPoints, l1 = a.hintLine0 + (hintPoint + 1) * hintN / hintPoints;
    ++hintPoint;
    prefetchLines(*a.hint, l0, l1);
  };
  for (int64_t j0 = 0; j0 < nk; j0 += KB) {
    const int64_t nb = minOf(KB, nk - j0);
    // 1. scores s[h][jj] = scale · q_h · k_(j0 + jj) (−inf past nb below), a kv head at a
    // time: its KB rows transposed to kt [d][KB] (keys past nb as 0), then its group's heads.
    for (int g = 0; g < a.nKvHead; ++g) {
      if (a.kBlocks) {
        // f16 keys stored transposed: no transposes (the lanes of keys past nb hold any bits: set to
        // −inf in 2.). The next block of kv head g (d·KB f16 = d lines) is prefetched a line per
        // column inside the score loop: a burst of d prefetches filled the line-fill buffers and
        // stalled the loop until DRAM answered (cold = hot + bytes).
        static_assert(PF == KB, "the next block is prefetched");
        hintNext();
        const bool pfNext = j0 + PF < pe;
        scoresGroup<S, NV, true>(a.qt + g * d * group, keyBlock(j0, g), d, group, a.scale, sb + g * group * KB, KB,
                                 pfNext ? reinterpret_cast<const char*>(keyBlock(j0 + PF, g)) : nullptr, pfNext ? d : 0);
        continue;
      }
      prefetchKeys(g, minOf(pe, j0 + PF), minOf(pe, j0 + PF + KB));
      hintNext();
      if constexpr (W == 16 && sizeof(E) == 2) {
        if (d % 32 == 0 && nb == KB) {  // f16 keys, whole block: as pairs (transposePairs)
          uint16_t* kt16 = reinterpret_cast<uint16_t*>(kt);
          for (int64_t jj = 0; jj < KB; jj += 16) {
            transposePairs<S>(kc + (j0 + jj) * ks + g * d, ks, d, kt16);
            scoresPairsGroup<S>(a.q + g * group * d, kt16, d, group, a.scale, sb + g * group * KB + jj, KB);
          }
          continue;
        }
      }
      for (int64_t jj = 0; jj < KB; jj += W) {
        const int n = static_cast<int>(maxOf<int64_t>(0, minOf<int64_t>(W, nb - jj)));
        transposeKeys<S>(kc + (j0 + jj) * ks + g * d, ks, n, d, kt + jj, KB);
      }
      scoresGroup<S, NV, false>(a.q + g * group * d, kt, d, group, a.scale, sb + g * group * KB, KB);
    }
    // 2. p = exp(s − m), the reference m raised (out, l rescaled) when the block passes it.
    const int nvb = static_cast<int>((nb + W - 1) / W);
    for (int h = 0; h < nHead; ++h) {
      float* sh = sb + h * KB;
      V s[NV];
      V mx = S::set1(kNegInf);
      for (int i = 0; i < nvb; ++i) {
        s[i] = S::fillFrom(S::load(sh + i * W), nb - i * W, kNegInf);
        mx = S::max(mx, s[i]);
      }
      // The block's max (a horizontal reduction) only when a lane passes m + slack.
      if (S::anyGreater(mx, a.m[h] + kAttnChunkSlack)) {
        const float bm = S::hmax(mx);
        if (a.m[h] != kNegInf) {
          const float alpha = __builtin_expf(a.m[h] - bm);
          for (int c = 0; c < d; ++c) a.out[h * d + c] *= alpha;
          S::store(lv + h * W, S::mul(S::load(lv + h * W), S::set1(alpha)));
        }
        a.m[h] = bm;
      }
      const V mv = S::set1(a.m[h]);
      V sum = S::load(lv + h * W);
      for (int i = 0; i < nvb; ++i) {
        const V e = S::exp(S::sub(s[i], mv));
        S::store(sh + i * W, e);
        sum = S::add(sum, e);
      }
      S::store(lv + h * W, sum);
    }
    // 3. P·V of the block, the group's heads sharing each value row: 8 heads per pass over
    // 2 vectors of columns (16 accumulators), so a row is loaded (f16: widened) once per 8
    // heads, not once per 4; the heads past a multiple of 8 in passes of 4 or 2 heads over up
    // to kMaxVecs vectors. Each out element sums its keys in the same order either way.
    for (int g = 0; g < a.nKvHead; ++g) {
      const E* vb = vc + j0 * ks + g * d;
      // The rows PF keys ahead: with 8-head passes spread over the first pass's rows (a row's
      // columns of each column pass, one prefetch per row and line), as the blocked keys are.
      const int64_t pf0 = minOf(pe, j0 + PF), pf1 = minOf(pe, j0 + PF + KB);
      const bool spread = a.kBlocks && group >= 8;
      if (!spread) prefetchRows(vc + g * d, ks, pf0, pf1, d);
      else if (pf1 - pf0 > nb) prefetchRows(vc + g * d, ks, pf0 + nb, pf1, d);  // rows the pass does not reach
      hintNext();
      int h8 = 0;
      for (; h8 + 8 <= group; h8 += 8) {
        const int hh = g * group + h8;
        for (int c0 = 0; c0 < d; c0 += 2 * W) {
          const int width = minOf(2 * W, d - c0);
          const E* pf = vc + pf0 * ks + g * d + c0;
          const int64_t pfRows = spread && h8 == 0 ? pf1 - pf0 : 0;
          if (width > W) pvHeadsT<S, 8, 2>(sb + hh * KB, KB, vb + c0, ks, nb, a.out + hh * d + c0, d, false, width, pf, pfRows);
          else pvHeadsT<S, 8, 1>(sb + hh * KB, KB, vb + c0, ks, nb, a.out + hh * d + c0, d, false, width, pf, pfRows);
        }
      }
      for (int c0 = 0; c0 < d && h8 < group; c0 += kMaxVecs * W) {
        const int width = minOf(kMaxVecs * W, d - c0);
        const int nvc = (width + W - 1) / W;
        int h = h8;
        const int hg = nvc <= 4 ? 4 : 2;
        for (; h + hg <= group; h += hg) {
          const int hh = g * group + h;
          if (hg == 4) pvHeadsN<S, 4>(nvc, sb + hh * KB, KB, vb + c0, ks, nb, a.out + hh * d + c0, d, false, width);
          else pvHeadsN<S, 2>(nvc, sb + hh * KB, KB, vb + c0, ks, nb, a.out + hh * d + c0, d, false, width);
        }
        for (; h < group; ++h) {
          const int hh = g * group + h;
          pvHeadsN<S, 1>(nvc, sb + hh * KB, KB, vb + c0, ks, nb, a.out + hh * d + c0, d, false, width);
        }
      }
    }
  }
  for (int h = 0; h < nHead; ++h) a.l[h] = S::hsum(S::load(lv + h * W));
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

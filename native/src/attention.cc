// Causal grouped-query attention: the driver (layouts in src/backend/backend.ts).
//
//   T < 8   (decode, short chunks) "rows" form: one task per (position, chunk of
//           keys) runs every head over a contiguous run of cache rows (kernel
//           attnChunk: scores as a small GEMM on transposed key blocks, exp, P·V),
//           leaving a partial result per chunk that attnCombine merges (the
//           log-sum-exp merge of split-K / "flash decoding"); bandwidth bound on K, V.
//   T ≥ 8   (prefill) "tiled" form, the score and value products as GEMM tiles:
//           1. pack each kv head's keys 0..S-1 into MR-key panels [d][MR] and its
//              values into contiguous rows (once per call, shared by the group);
//           2. per (head, block of NR queries): Sᵀ[keys, NR] = K · Qᵀ with the
//              register tile, causal softmax down the columns (kernel softmaxCols),
//              then O[NR, d] = P · V with the same tile, reading Sᵀ as the packed A
//              operand and the packed V rows as B; finally O /= Σ.
#include <cassert>
#include <cmath>
#include <cstring>
#include <vector>

#include "packed_f16.h"
#include "prefetch.h"

#include "runtime.h"

namespace qllm {
namespace {

constexpr int64_t kTiledMinT = 8;      // fewer new positions: rows form
constexpr int64_t kPvKeyBlock = 256;   // keys per P·V pass (P and V slices stay in L2)
constexpr double kSerialFlops = 2e6;   // below this a call is not worth waking the pool
constexpr int64_t kRowsMinChunkKeys = 64;    // rows form: fewest keys worth a chunk of their own
constexpr int64_t kRowsMaxChunks = 8;        // rows form: chunks per row (enough for 2–8 threads)
// Rows form: chunk bounds fall on whole blocks of attnChunk's keys (32): a chunk of 80 keys cost
// as much as 96 in its score pass (the last block's empty half transposed and multiplied).
constexpr int64_t kRowsBlockKeys = kAttnChunkPvKeys;
static_assert(kRowsBlockKeys == 32, "a blocked key cache's blocks (32 positions) are attnChunk's blocks");
// Rows form: bytes of a prefetch hint (the next call's weights) per key of the call, spread
// over the chunks' blocks (prefetch.h): about what DRAM delivers while a key is computed. On
// the Xeon host (eval/bench-prefetch.ts, 576 keys, f32 cache) the call then ran 30-60% longer
// and o / gate+up gained about as much: the cache's K, V rows come from DRAM as well.
constexpr int64_t kHintBytesPerKey = 2048;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t minI(int64_t a, int64_t b) { return a < b ? a : b; }

template <class F>
void forTasks(Runtime& rt, int64_t nTasks, bool parallel, F&& f) {
  if (parallel && nTasks > 1) {
    rt.pool.parallelFor(static_cast<int>(nTasks), f);
  } else {
    for (int64_t t = 0; t < nTasks; ++t) f(static_cast<int>(t), 0);
  }
}

/**
 * Chunks of keys a row with nKeys visible keys is split into: enough for the pool to
 * share (≥ kRowsMinChunkKeys keys each, at most kRowsMaxChunks). It depends on nKeys
 * only, never on the thread count, so one thread and many give the same bits.
 */
int64_t rowsChunks(int64_t nKeys) { return minI(kRowsMaxChunks, ceilDiv(nKeys, kRowsMinChunkKeys)); }

/** E: the cache's element type, float or uint16_t (f16 bits: kernel attnChunkF16). */
template <class E>
void rowsForm(Runtime& rt, const float* q, const E* k, const E* v, const AttentionShape& s, float* out,
              bool parallel, const PrefetchList* hint) {
  const KernelTable& kt = *rt.kernels;
  const int64_t d = s.headDim, nHead = s.nHead, group = s.nHead / s.nKvHead;
  const int64_t qStride = nHead * d, kvStride = s.nKvHead * d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // Chunks per (position, chunk of keys); every chunk of a row has the row's chunk count,
  // the last ones possibly empty. Partial results [T][nc][nHead][d], m, l. One task per
  // thread runs a contiguous run of the chunks in order, so that its reads are one stream
  // and each chunk's prefetches run on into the next (the bits do not depend on the split).
  const int64_t nc = rowsChunks(s.pos0 + s.T);
  const int64_t parts = s.T * nc;
  // Blocked keys: q transposed per kv head, [T][nKvHead][d][group] (AttnChunkArgs::qt).
  const int64_t qtLen = s.keyBlocks ? s.T * qStride : 0;
  float* part = rt.shared.get(static_cast<size_t>(parts * nHead * (d + 2) + (nc + 1) * nHead + qtLen));
  float* mAll = part + parts * nHead * d;
  float* lAll = mAll + parts * nHead;
  float* w = lAll + parts * nHead;
  float* qt = w + (nc + 1) * nHead;
  for (int64_t t = 0; t < s.T && s.keyBlocks; ++t) {
    for (int64_t h = 0; h < nHead; ++h) {
      const float* qh = q + t * qStride + h * d;
      float* o = qt + t * qStride + (h / group) * d * group + h % group;
      for (int64_t c = 0; c < d; ++c) o[c * group] = qh[c];
    }
  }
  const int64_t nTasks = parallel ? minI(parts, rt.pool.threads()) : 1;
  // The hint's lines, shared out over the chunks in order (each chunk holds about as many keys).
  const int64_t hintLines = hint == nullptr ? 0 : hint->lines();
  forTasks(rt, nTasks, parallel, [&](int task, int tid) {
    const int64_t p0 = task * parts / nTasks, p1 = (task + 1) * parts / nTasks;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t t = p / nc, c = p % nc;
      const int64_t nKeys = s.pos0 + t + 1;
      const int64_t nBlocks = ceilDiv(nKeys, kRowsBlockKeys);  // spread evenly over the chunks
      const auto bound = [&](int64_t i) { return minI(nKeys, i * nBlocks / nc * kRowsBlockKeys); };
      const int64_t j0 = bound(c), j1 = bound(c + 1);
      // This task's last chunk of row t: its prefetches stop at that chunk's end.
      const int64_t cLast = t == (p1 - 1) / nc ? (p1 - 1) % nc : nc - 1;
      AttnChunkArgs a{};
      a.q = q + t * qStride;
      a.k = s.keyBlocks ? k + j0 / kRowsBlockKeys * kRowsBlockKeys * kvStride : k + j0 * kvStride;  // blocks: j0 is a block's first key
      a.v = v + j0 * kvStride;
      a.kvStride = kvStride;
      a.nKeys = j1 - j0;
      a.d = static_cast<int>(d);
      a.nKvHead = static_cast<int>(s.nKvHead);
      a.group = static_cast<int>(group);
      a.scale = scale;
      a.kBlocks = s.keyBlocks;
      a.qt = s.keyBlocks ? qt + t * qStride : nullptr;
      a.out = part + p * nHead * d;
      a.m = mAll + p * nHead;
      a.l = lAll + p * nHead;
      a.scratch = rt.local[static_cast<size_t>(tid)].get(static_cast<size_t>(attnChunkScratch(nHead, d)));
      a.prefetchKeys = bound(cLast + 1) - j0;
      a.prefetchHead = p == p0 || c == 0;
      a.hint = hintLines > 0 ? hint : nullptr;
      a.hintLine0 = p * hintLines / parts;
      a.hintLine1 = (p + 1) * hintLines / parts;
      if constexpr (sizeof(E) == 2) kt.attnChunkF16(a);
      else kt.attnChunk(a);
    }
  });
  for (int64_t t = 0; t < s.T; ++t) {
    kt.attnCombine(part + t * nc * nHead * d, mAll + t * nc * nHead, lAll + t * nc * nHead, static_cast<int>(nc),
                   static_cast<int>(nHead), static_cast<int>(d), out + t * qStride, w);
  }
}

void tiledForm(Runtime& rt, const float* q, const float* k, const float* v, const AttentionShape& s, float* out,
               bool parallel) {
  const KernelTable& kt = *rt.kernels;
  const int64_t MR = kt.mr, NR = kt.nr;  // NR queries per block
  const int64_t d = s.headDim, group = s.nHead / s.nKvHead;
  const int64_t qStride = s.nHead * d, kvStride = s.nKvHead * d;
  const int64_t S = s.pos0 + s.T;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int threads = parallel ? rt.pool.threads() : 1;

  // 1. K of each kv head → panels [d][MR]; V of each kv head → contiguous rows
  // [S][d]. In the cache a head's rows are nKvHead·d floats apart, often a
  // multiple of 4 KiB, which would fold a block of V onto a few cache sets.
  const int64_t panelsS = ceilDiv(S, MR);
  const int64_t nPanels = s.nKvHead * panelsS;
  const size_t kpLen = static_cast<size_t>(nPanels * MR * d);
  float* kp = rt.shared.get(kpLen + static_cast<size_t>(s.nKvHead * S * d));
  float* vp = kp + kpLen;
  const int64_t packTasks = threads == 1 ? 1 : minI(nPanels, 4 * threads);
  forTasks(rt, packTasks, threads > 1, [&](int t, int) {
    for (int64_t i = t * nPanels / packTasks; i < (t + 1) * nPanels / packTasks; ++i) {
      const int64_t kvh = i / panelsS, p = i % panelsS;
      const int64_t rows = minI(MR, S - p * MR);
      kt.packA(k + p * MR * kvStride + kvh * d, kvStride, static_cast<int>(rows), d, kp + i * MR * d);
      for (int64_t j = p * MR; j < p * MR + rows; ++j) {
        std::memcpy(vp + (kvh * S + j) * d, v + j * kvStride + kvh * d, static_cast<size_t>(d) * sizeof(float));
      }
    }
  });

  // 2. One task per (head, block of NR queries). Head-major, so the packed K and
  // V of a head stay in L2 across its tasks; within a head the last blocks see
  // the most keys, so they are handed out first.
  const int64_t nQB = ceilDiv(s.T, NR);
  forTasks(rt, s.nHead * nQB, threads > 1, [&](int task, int tid) {
    const int64_t h = task / nQB, qb = nQB - 1 - task % nQB, kvh = h / group;
    const int64_t q0 = qb * NR, bq = minI(NR, s.T - q0);
    const int64_t nk = s.pos0 + q0 + bq;  // keys seen by the block's last query
    const int64_t rowsSt = ceilDiv(nk, MR) * MR;
    float* qp = rt.local[static_cast<size_t>(tid)].get(static_cast<size_t>((d + rowsSt + 1) * NR));
    float* st = qp + d * NR;         // Sᵀ [rowsSt, NR], then P
    float* inv = st + rowsSt * NR;   // [NR]

    kt.packB(q + q0 * qStride + h * d, qStride, bq, d, qp);  // Qᵀ [d, NR], zero past bq
    TileArgs ta{};
    ta.kc = d;
    ta.lda = MR;
    ta.b = qp;
    ta.ldb = NR;
    ta.ldc = NR;
    ta.nr = static_cast<int>(NR);
    for (int64_t p = 0; p * MR < nk; ++p) {
      ta.a = kp + (kvh * panelsS + p) * MR * d;
      ta.c = st + p * MR * NR;
      ta.mr = static_cast<int>(minI(MR, nk - p * MR));
      kt.tile(ta);
    }
    kt.softmaxCols(st, nk, s.pos0 + q0, scale, inv);

    float* o = out + q0 * qStride + h * d;
    for (int64_t j0 = 0; j0 < nk; j0 += kPvKeyBlock) {
      TileArgs pv{};
      pv.kc = minI(kPvKeyBlock, nk - j0);
      pv.lda = NR;
      pv.ldb = d;
      pv.ldc = qStride;
      pv.accumulate = j0 > 0;
      for (int64_t c0 = 0; c0 < d; c0 += NR) {
        pv.nr = static_cast<int>(minI(NR, d - c0));
        pv.maskB = pv.nr < NR;  // V's rows are not padded to NR
        pv.b = vp + (kvh * S + j0) * d + c0;
        for (int64_t i0 = 0; i0 < bq; i0 += MR) {
          pv.a = st + j0 * NR + i0;
          pv.mr = static_cast<int>(minI(MR, bq - i0));
          pv.c = o + i0 * qStride + c0;
          kt.tile(pv);
        }
      }
    }
    for (int64_t i = 0; i < bq; ++i) {
      float* row = o + i * qStride;
      const float r = inv[i];
      for (int64_t c = 0; c < d; ++c) row[c] *= r;
    }
  });
}

}  // namespace

bool attentionParallel(Runtime& rt, const AttentionShape& s) {
  assert(s.T >= 1 && s.pos0 >= 0 && s.nKvHead >= 1 && s.nHead % s.nKvHead == 0 && s.headDim >= 1);
  const double flops = 4.0 * s.nHead * s.headDim * s.T * (s.pos0 + 0.5 * s.T);
  return rt.pool.threads() > 1 && flops >= kSerialFlops;
}

int64_t attentionHintBytes(const AttentionShape& s) {
  return s.T < kTiledMinT ? s.T * (s.pos0 + s.T) * kHintBytesPerKey : 0;
}

void attention(Runtime& rt, const float* q, const float* k, const float* v, const AttentionShape& s, float* out,
               const PrefetchList* hint) {
  const bool parallel = attentionParallel(rt, s);
  if (s.T < kTiledMinT) rowsForm(rt, q, k, v, s, out, parallel, hint);
  else tiledForm(rt, q, k, v, s, out, parallel);
}

void attentionF16(Runtime& rt, const float* q, const uint16_t* k, const uint16_t* v, const AttentionShape& s, float* out,
                  const PrefetchList* hint) {
  const bool parallel = attentionParallel(rt, s);
  if (s.T < kTiledMinT) {
    rowsForm(rt, q, k, v, s, out, parallel, hint);
    return;
  }
  // Prefill: the tiled form packs K and V anyway; widen the rows it reads to f32 first.
  const int64_t S = s.pos0 + s.T, row = s.nKvHead * s.headDim;
  const size_t n = static_cast<size_t>(S * row);
  std::vector<float> k32(n), v32(n);
  for (size_t i = 0; i < n; ++i) v32[i] = halfToFloat(v[i]);
  if (!s.keyBlocks) {
    for (size_t i = 0; i < n; ++i) k32[i] = halfToFloat(k[i]);
  } else {  // key j's element e (= g·headDim + c) at k[(j/32)·row·32 + e·32 + j%32]
    for (int64_t j = 0; j < S; ++j) {
      const uint16_t* kj = k + j / 32 * row * 32 + j % 32;
      for (int64_t e = 0; e < row; ++e) k32[static_cast<size_t>(j * row + e)] = halfToFloat(kj[e * 32]);
    }
  }
  tiledForm(rt, q, k32.data(), v32.data(), s, out, parallel);
}

}  // namespace qllm

// GPTQ drivers: the lazy-batch quantization (Frantar et al. 2022, §4 "Lazy
// Batch-Updates") and the Hessian's XᵀX. The specification is the per-row
// reference src/methods/gptq.ts; the arithmetic is the same, reordered:
//
//   for each block of columns [i1, i2):
//     for each column i (lane kernel, gptq_rows.h, L rows per vector):
//       new grid at a dynamic group start; q = quant(w); err = (w − q)/Hinv[i,i];
//       W[:, i+1:i2] −= err ⊗ Hinv[i, i+1:i2]
//     W[:, i2:] −= Err[·, B] · Hinv[i1:i2, i2:]      (register-tile GEMM)
//
// Rows are independent given Hinv, so one pool task owns a chunk of rows for the
// whole sweep: it copies them (permuted, dead columns zeroed) into a running copy
// reused between calls, quantizes them (each finished block's columns of the copy
// take the dequantized weights), and at the end writes codes and dequantized
// weights to their original columns, one row at a time. No synchronisation; the
// chunk stays in cache; memory is a few hundred rows per thread, not a copy of W. A group's
// grid is computed from the CURRENT weights at its start; blocks are cut so that a
// group reaching past its block starts the block, where every later column has
// received all earlier updates — hence the same result as the per-row reference.
// With blockStartGrids (gptq.py's rule) blocks are exactly blockSize columns and a
// group's grid reads the running copy, which holds the block-start values of the
// block's columns until the block ends.
#include <numeric>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "gptq.h"
#include "gptq_pack.h"
#include "runtime.h"

namespace qllm {
namespace {

using namespace gptqdetail;

constexpr int64_t kColBlockPanels = 8;   // NR-panels of Hinv packed per step: [B][8·NR] ≈ 128 KiB, stays in L2
constexpr int64_t kTasksPerThread = 4;   // dynamic claiming evens out a preempted thread
constexpr int64_t kMaxChunkRows = 512;   // the running copy [rows][K] stays in L3, the error panels [rows][B] in L2

const GptqRowKernel& rowKernelFor(const KernelTable& kt) {
  for (const GptqRowKernel* k : {gptqRowsAvx512(), gptqRowsAvx2(), gptqRowsScalar()}) {
    if (k != nullptr && strcmp(k->level, simdLevelOf(kt.name)) == 0) return *k;
  }
  return *gptqRowsScalar();
}

/** Block ends: B columns, cut so that no dynamic group reaches past its block unless it starts it. */
std::vector<int64_t> blockEnds(int64_t K, int64_t B, int64_t g, bool dynamic) {
  std::vector<int64_t> ends;
  for (int64_t i1 = 0; i1 < K;) {
    int64_t i2 = minI(K, i1 + B);
    if (dynamic) {
      const int64_t s = (i2 - 1) / g * g;  // the last group start before i2
      if (s > i1 && minI(s + g, K) > i2) i2 = s;
    }
    ends.push_back(i2);
    i1 = i2;
  }
  return ends;
}

template <class S>
void syrkImpl(Runtime& rt, const float* x, int64_t T, int64_t K, S* sum, float alpha, float beta, const CallControl* ctl) {
  const KernelTable& kt = *rt.kernels;
  const int64_t MR = kt.mr, NR = kt.nr, KC = kt.kc;
  const int64_t NB = kColBlockPanels * NR;  // output blocks [NB, NB]
  const int64_t nb = ceilDiv(K, NB);
  std::vector<std::pair<int32_t, int32_t>> tiles;  // (ib, jb), ib ≤ jb: the upper triangle
  for (int64_t jb = nb - 1; jb >= 0; --jb)
    for (int64_t ib = 0; ib <= jb; ++ib) tiles.emplace_back(static_cast<int32_t>(ib), static_cast<int32_t>(jb));

  const int64_t panelsI = ceilDiv(NB, MR);
  if (ctl != nullptr) ctl->setTotal(static_cast<int64_t>(tiles.size()));
  rt.pool.parallelFor(static_cast<int>(tiles.size()), [&](int t, int tid) {
    if (ctl != nullptr && ctl->cancelled()) return;  // the caller discards sum
    const int64_t ib = tiles[static_cast<size_t>(t)].first, jb = tiles[static_cast<size_t>(t)].second;
    const int64_t i0 = ib * NB, rows = minI(NB, K - i0), j0 = jb * NB, cols = minI(NB, K - j0);
    float* c = rt.local[static_cast<size_t>(tid)].get(static_cast<size_t>(NB * NB + KC * NB + KC * panelsI * MR));  // [NB, NB]
    float* bp = c + NB * NB;   // [cols/NR][kc][NR]
    float* ap = bp + KC * NB;  // [rows/MR][kc][MR]
    for (int64_t t0 = 0; t0 < T; t0 += KC) {
      const int64_t kc = minI(KC, T - t0);
      packKMajor(x + t0 * K + j0, K, kc, cols, NR, kc * NR, bp);
      packKMajor(x + t0 * K + i0, K, kc, rows, MR, kc * MR, ap);
      for (int64_t p0 = 0; p0 < rows; p0 += MR) {
        TileArgs ta{};
        ta.kc = kc;
        ta.a = ap + (p0 / MR) * kc * MR;
        ta.lda = MR;
        ta.ldb = NR;
        ta.ldc = NB;
        ta.mr = static_cast<int>(minI(MR, rows - p0));
        ta.accumulate = t0 > 0;
        for (int64_t q0 = 0; q0 < cols; q0 += NR) {
          const int64_t nr = minI(NR, cols - q0);
          if (j0 + q0 + nr - 1 < i0 + p0) continue;  // wholly below the diagonal: mirrored later
          ta.b = bp + (q0 / NR) * kc * NR;
          ta.c = c + p0 * NB + q0;
          ta.nr = static_cast<int>(nr);
          kt.tile(ta);
        }
      }
    }
    for (int64_t i = 0; i < rows; ++i) {
      S* s = sum + (i0 + i) * K + j0;
      const float* ci = c + i * NB;
      const int64_t jStart = i0 + i - j0 < 0 ? 0 : i0 + i - j0;  // on and above the diagonal
      const S a = static_cast<S>(alpha), b = static_cast<S>(beta);
      if (beta == 0.0f) {
        for (int64_t j = jStart; j < cols; ++j) s[j] = a * static_cast<S>(ci[j]);
      } else {
        for (int64_t j = jStart; j < cols; ++j) s[j] = b * s[j] + a * static_cast<S>(ci[j]);
      }
    }
    if (ctl != nullptr) ctl->advance(1);
  });
  if (ctl != nullptr && ctl->cancelled()) return;

  // Lower triangle ← upper, in TB×TB tiles through a local buffer, so that both
  // sides of the copy are read and written along rows.
  constexpr int64_t TB = 64;
  const int64_t nTb = ceilDiv(K, TB);
  rt.pool.parallelFor(static_cast<int>(nTb), [&](int bi, int) {
    S buf[TB * TB];
    const int64_t a0 = bi * TB, a1 = minI(K, a0 + TB);
    for (int64_t c0 = 0; c0 < a1; c0 += TB) {
      const int64_t c1 = minI(a1, c0 + TB);
      for (int64_t j = c0; j < c1; ++j)
        for (int64_t i = a0; i < a1; ++i) buf[(j - c0) * TB + (i - a0)] = sum[j * K + i];
      for (int64_t i = a0; i < a1; ++i) {
        S* dst = sum + i * K;
        const int64_t jEnd = minI(c1, i);  // strictly below the diagonal
        for (int64_t j = c0; j < jEnd; ++j) dst[j] = buf[(j - c0) * TB + (i - a0)];
      }
    }
  });
}

}  // namespace

void adviseHugePages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

void syrkAccumulate(Runtime& rt, const float* x, int64_t T, int64_t K, float* sum32, double* sum64, float alpha, float beta,
                    const CallControl* ctl) {
  if (sum32 != nullptr) syrkImpl(rt, x, T, K, sum32, alpha, beta, ctl);
  else syrkImpl(rt, x, T, K, sum64, alpha, beta, ctl);
}

double gptqQuantize(Runtime& rt, const GptqQuantArgs& q) {
  adviseHugePages(q.codes, static_cast<size_t>(q.N * q.K));
  adviseHugePages(q.dequantized, static_cast<size_t>(q.N * q.K) * sizeof(float));
  const KernelTable& kt = *rt.kernels;
  const GptqRowKernel& rk = rowKernelFor(kt);
  const int64_t N = q.N, K = q.K, L = rk.lanes, MR = kt.mr, NR = kt.nr;
  const int64_t G = ceilDiv(K, q.g);
  const int maxq = (1 << q.bits) - 1;
  const std::vector<int64_t> ends = blockEnds(K, maxI(1, q.blockSize), q.g, !q.staticGroups && !q.blockStartGrids);
  int64_t Bmax = 0;
  for (size_t b = 0; b < ends.size(); ++b) Bmax = maxI(Bmax, ends[b] - (b == 0 ? 0 : ends[b - 1]));

  // Rows per task: whole lane groups and tile panels, about kTasksPerThread tasks per thread.
  const int64_t unit = std::lcm(L, MR);
  int64_t chunk = roundUp(ceilDiv(N, kTasksPerThread * rt.pool.threads()), unit);
  chunk = minI(maxI(chunk, unit), roundUp(kMaxChunkRows, unit));
  const int64_t nTasks = ceilDiv(N, chunk);
  const int64_t NCB = kColBlockPanels * NR;
  std::vector<double> rowLoss(static_cast<size_t>(nTasks * chunk), 0.0);
  const CallControl* ctl = q.ctl;  // progress unit: one column block of one task
  if (ctl != nullptr) ctl->setTotal(nTasks * static_cast<int64_t>(ends.size()));

  const int64_t ldw = K;  // row stride of the running copy (padding it against 4K aliasing measured no gain)
  rt.pool.parallelFor(static_cast<int>(nTasks), [&](int t, int tid) {
    const int64_t r0 = t * chunk, rows = minI(chunk, N - r0);
    const int64_t nW = chunk * ldw, nWt = 4 * Bmax * L, nErr = chunk * Bmax, nAp = chunk * Bmax, nBp = Bmax * NCB;
    const int64_t nCodes = ceilDiv(chunk * K, 4);  // bytes, in floats
    float* w = rt.local[static_cast<size_t>(tid)].get(static_cast<size_t>(nW + nWt + nErr + nAp + nBp + 2 * chunk + nCodes));
    float* wt = w + nW;              // [4][B][L] lane kernel scratch
    float* negErr = wt + nWt;        // [rows][B]
    float* ap = negErr + nErr;       // [rows/MR][B][MR]
    float* bp = ap + nAp;            // [NCB/NR][B][NR]
    float* laneScale = bp + nBp;     // [chunk]
    float* laneZero = laneScale + chunk;
    uint8_t* codes = reinterpret_cast<uint8_t*>(laneZero + chunk);  // [rows][K] permuted order
    double* loss = rowLoss.data() + r0;
    // The running weights of this chunk [rows, K]: its rows of W, permuted, dead columns 0.
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = q.w + (r0 + r) * K;
      float* dst = w + r * ldw;
      if (q.perm != nullptr) {
        for (int64_t i = 0; i < K; ++i) dst[i] = src[q.perm[i]];
      } else {
        memcpy(dst, src, static_cast<size_t>(K) * sizeof(float));
      }
      if (q.dead != nullptr)
        for (int64_t i = 0; i < K; ++i)
          if (q.dead[q.perm != nullptr ? q.perm[i] : i]) dst[i] = 0.0f;
    }
    int64_t i1 = 0;
    for (const int64_t i2 : ends) {
      if (ctl != nullptr && ctl->cancelled()) return;  // the caller discards every output
      const int64_t B = i2 - i1;
      for (int64_t l0 = 0; l0 < rows; l0 += L) {
        GptqLaneArgs la{};
        la.w = w + l0 * ldw;
        la.ldw = ldw;
        la.K = K;
        la.rows = static_cast<int>(minI(L, rows - l0));
        la.hinv = q.hinv;
        la.i1 = i1;
        la.i2 = i2;
        la.maxq = maxq;
        la.g = q.g;
        la.G = G;
        la.sym = q.sym;
        la.staticGroups = q.staticGroups;
        la.blockStartGrids = q.blockStartGrids;
        la.colGroup = q.colGroup;
        la.scales = q.scales + (r0 + l0) * G;
        la.zeros = q.zeros + (r0 + l0) * G;
        la.codes = codes + l0 * K;
        la.negErr = negErr + l0 * B;
        la.wt = wt;
        la.laneScale = laneScale + l0;
        la.laneZero = laneZero + l0;
        la.loss = loss + l0;
        rk.block(la);
      }
      if (i2 < K) {
        // W[rows, i2:] += (−Err)[rows, B] · Hinv[i1:i2, i2:]
        for (int64_t p0 = 0; p0 < rows; p0 += MR) kt.packA(negErr + p0 * B, B, static_cast<int>(minI(MR, rows - p0)), B, ap + p0 * B);
        for (int64_t c0 = i2; c0 < K; c0 += NCB) {
          const int64_t cols = minI(NCB, K - c0);
          packKMajor(q.hinv + i1 * K + c0, K, B, cols, NR, B * NR, bp);
          for (int64_t p0 = 0; p0 < rows; p0 += MR) {
            TileArgs ta{};
            ta.kc = B;
            ta.a = ap + p0 * B;
            ta.lda = MR;
            ta.ldb = NR;
            ta.ldc = ldw;
            ta.mr = static_cast<int>(minI(MR, rows - p0));
            ta.accumulate = true;
            for (int64_t q0 = 0; q0 < cols; q0 += NR) {
              ta.b = bp + (q0 / NR) * B * NR;
              ta.c = w + p0 * ldw + c0 + q0;
              ta.nr = static_cast<int>(minI(NR, cols - q0));
              kt.tile(ta);
            }
          }
        }
      }
      i1 = i2;
      if (ctl != nullptr) ctl->advance(1);
    }
    // Codes and dequantized weights to their original columns.
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* c = codes + r * K;
      const float* d = w + r * ldw;
      uint8_t* co = q.codes + (r0 + r) * K;
      float* dqo = q.dequantized + (r0 + r) * K;
      if (q.perm != nullptr) {
        for (int64_t i = 0; i < K; ++i) {
          co[q.perm[i]] = c[i];
          dqo[q.perm[i]] = d[i];
        }
      } else {
        memcpy(co, c, static_cast<size_t>(K));
        memcpy(dqo, d, static_cast<size_t>(K) * sizeof(float));
      }
    }
  });

  double loss = 0.0;  // summed in row order: the same value for any thread count
  for (int64_t n = 0; n < N; ++n) loss += rowLoss[static_cast<size_t>(n)];
  return loss / 2;
}

}  // namespace qllm

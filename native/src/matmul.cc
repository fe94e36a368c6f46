// y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias): the driver. It chooses the form, splits
// the work into pool tasks and walks the cache blocks; the arithmetic is in the
// kernel table (kernel_impl.h).
//
//   M ≤ 16  (decode, small batches) dot-product form straight from W's rows,
//           tasks over N, each walking L2-sized blocks of W rows for every group
//           of 4 x rows: W streams from memory once, no packing.
//   M > 16  (prefill) packed GEMM in the Goto/BLIS style:
//           1. pack all of x into MR-row panels [K][MR] (shared by all tasks);
//           2. each task owns a block of N columns (and a share of the M panels):
//              for each K block of kc: pack W's block into NR-column panels [kc][NR]
//              (≈ 256 KiB, stays in L2), then for each x panel (its kc×MR slice
//              stays in L1) run the MR×NR register tile over every W panel.
#include <cassert>

#include "runtime.h"

namespace qllm {
namespace {

constexpr int64_t kGemvMaxM = 16;       // up to this many rows: dot-product form (measured crossover ≈ 24)
constexpr int64_t kGemvRows = 4;        // x rows per gemv kernel call
constexpr int64_t kGemvBlockBytes = 128 << 10;
constexpr int64_t kBlockPanelsN = 8;    // NR-panels of W per task (and per packed block)
constexpr double kSerialFlops = 2e6;    // below this a call is not worth waking the pool
constexpr int64_t kMinGemvTaskMacs = 1 << 16;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t minI(int64_t a, int64_t b) { return a < b ? a : b; }
int64_t maxI(int64_t a, int64_t b) { return a > b ? a : b; }

/** Runs f(task, tid) for all tasks, on the pool when `parallel`, else inline. */
template <class F>
void forTasks(Runtime& rt, int64_t nTasks, bool parallel, F&& f) {
  if (parallel) {
    rt.pool.parallelFor(static_cast<int>(nTasks), f);
  } else {
    for (int64_t t = 0; t < nTasks; ++t) f(static_cast<int>(t), 0);
  }
}

void gemvForm(Runtime& rt, const float* x, const float* w, int64_t M, int64_t K, int64_t N, const float* bias, float* y,
              bool parallel) {
  const KernelTable& kt = *rt.kernels;
  const int threads = rt.pool.threads();
  // Several tasks per thread so a descheduled thread costs little; each task big
  // enough that claiming it is free.
  int64_t nTasks = parallel ? minI(4 * threads, maxI(1, M * K * N / kMinGemvTaskMacs)) : 1;
  const int64_t chunk = minI(N, ceilDiv(ceilDiv(N, nTasks), 8) * 8);
  nTasks = ceilDiv(N, chunk);
  // W rows per block: ~128 KiB, so the block is still in L2 for every group of 4 x rows.
  const int64_t rowsPerBlock = maxI(8, (kGemvBlockBytes / (4 * K)) / 8 * 8);
  forTasks(rt, nTasks, parallel && nTasks > 1, [&](int t, int) {
    const int64_t n0 = t * chunk, n1 = minI(N, n0 + chunk);
    for (int64_t b0 = n0; b0 < n1; b0 += rowsPerBlock) {
      const int64_t b1 = minI(n1, b0 + rowsPerBlock);
      for (int64_t m0 = 0; m0 < M; m0 += kGemvRows) {
        const int rows = static_cast<int>(minI(kGemvRows, M - m0));
        kt.gemv(GemvArgs{x + m0 * K, K, rows, w, K, b0, b1, bias, y + m0 * N, N});
      }
    }
  });
}

void packedForm(Runtime& rt, const float* x, const float* w, int64_t M, int64_t K, int64_t N, const float* bias, float* y,
                bool parallel) {
  const KernelTable& kt = *rt.kernels;
  const int64_t MR = kt.mr, NR = kt.nr, KC = kt.kc;
  const int threads = parallel ? rt.pool.threads() : 1;
  const int64_t panelsM = ceilDiv(M, MR), panelsN = ceilDiv(N, NR);

  // 1. x → panels [K][MR]
  float* ap = rt.shared.get(static_cast<size_t>(panelsM * MR * K));
  const int64_t packTasks = threads == 1 ? 1 : minI(panelsM, 4 * threads);
  forTasks(rt, packTasks, packTasks > 1, [&](int t, int) {
    for (int64_t p = t * panelsM / packTasks; p < (t + 1) * panelsM / packTasks; ++p)
      kt.packA(x + p * MR * K, K, static_cast<int>(minI(MR, M - p * MR)), K, ap + p * MR * K);
  });

  // 2. Task grid: tn column blocks of bpn panels × tm row ranges. Aim for ≥ 3
  // tasks per thread (dynamic claiming balances uneven or preempted threads),
  // splitting M only when N has too few panels (each M split re-packs W's block).
  int64_t bpn = minI(panelsN, kBlockPanelsN);
  int64_t tn = ceilDiv(panelsN, bpn), tm = 1;
  if (threads > 1) {
    const int64_t want = 3 * threads;
    if (tn < want) {
      bpn = maxI(1, ceilDiv(panelsN, want));
      tn = ceilDiv(panelsN, bpn);
    }
    if (tn < want) tm = minI(panelsM, ceilDiv(want, tn));
  }
  forTasks(rt, tn * tm, threads > 1, [&](int t, int tid) {
    const int64_t in = t % tn, im = t / tn;
    const int64_t n0 = in * bpn * NR, n1 = minI(N, n0 + bpn * NR);
    const int64_t pm0 = im * panelsM / tm, pm1 = (im + 1) * panelsM / tm;
    const int64_t taskPanelsN = ceilDiv(n1 - n0, NR);
    float* bp = rt.local[static_cast<size_t>(tid)].get(static_cast<size_t>(minI(KC, K) * taskPanelsN * NR));
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = minI(KC, K - pc);
      kt.packB(w + n0 * K + pc, K, n1 - n0, kc, bp);
      for (int64_t p = pm0; p < pm1; ++p) {
        TileArgs ta{};
        ta.kc = kc;
        ta.a = ap + p * MR * K + pc * MR;
        ta.lda = MR;
        ta.ldb = NR;
        ta.ldc = N;
        ta.mr = static_cast<int>(minI(MR, M - p * MR));
        ta.accumulate = pc > 0;
        ta.maskB = false;
        for (int64_t jp = 0; jp < taskPanelsN; ++jp) {
          const int64_t n = n0 + jp * NR;
          ta.b = bp + jp * kc * NR;
          ta.c = y + p * MR * N + n;
          ta.nr = static_cast<int>(minI(NR, N - n));
          ta.bias = (pc == 0 && bias != nullptr) ? bias + n : nullptr;
          kt.tile(ta);
        }
      }
    }
  });
}

}  // namespace

void matmul(Runtime& rt, const float* x, const float* w, int64_t M, int64_t K, int64_t N, const float* bias, float* y) {
  assert(M >= 1 && K >= 1 && N >= 1);
  const bool parallel = rt.pool.threads() > 1 && 2.0 * M * K * N >= kSerialFlops;
  if (M <= kGemvMaxM) gemvForm(rt, x, w, M, K, N, bias, y, parallel);
  else packedForm(rt, x, w, M, K, N, bias, y, parallel);
}

}  // namespace qllm

// LLM.int8() driver: packing, per-token activation quantization with outlier columns,
// the threaded group loop and the f32 epilogue (see llm_int8.h). Portable code: the
// only SIMD is in the dot16 kernels (llm_int8_avx2.cc, llm_int8_vnni.cc); the epilogue
// is plain float arithmetic in the reference's order, so every level is bit-identical.
#include "llm_int8.h"

#include <cassert>
#include <cmath>
#include <cstdlib>
#include <cstring>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "runtime.h"

namespace qllm {
namespace {

constexpr float kInv127 = 7.874015718698502e-3f;   // bitsandbytes int8_vectorwise_dequant
constexpr float kInv127Sq = 6.200012e-05f;         // bitsandbytes csrc MM_DEQUANT_CONST (see src/methods/int8.ts)
constexpr double kSerialMacs = 1 << 18;            // below this a call is not worth waking the pool
constexpr size_t kHugePage = 2u << 20;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
size_t align64(size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

Int8Packed::~Int8Packed() { std::free(block); }

namespace {
/**
 * An empty (zeroed) packed weight of N rows × K: the layout's sizes and one block for codes,
 * SCB and row sums. Large weights are 2 MiB aligned and huge-page advised before first touch
 * (KERNELS.md §4).
 */
Int8Packed* allocInt8Packed(int64_t N, int64_t K) {
  auto* p = new Int8Packed();
  p->N = N;
  p->K = K;
  p->KQ = ceilDiv(K, kI8Quad);
  p->groups = ceilDiv(N, kI8Rows);
  const size_t rowsP = static_cast<size_t>(p->groups * kI8Rows);
  const size_t codeBytes = align64(rowsP * static_cast<size_t>(p->KQ * kI8Quad));
  p->bytes = codeBytes + align64(rowsP * sizeof(float)) + align64(rowsP * sizeof(int32_t));
  const size_t alignment = p->bytes >= 2 * kHugePage ? kHugePage : 64;
  if (posix_memalign(&p->block, alignment, (p->bytes + alignment - 1) / alignment * alignment) != 0) std::abort();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (alignment == kHugePage) madvise(p->block, p->bytes, MADV_HUGEPAGE);
#endif
  auto* base = static_cast<uint8_t*>(p->block);
  std::memset(p->block, 0, p->bytes);
  p->codes = reinterpret_cast<int8_t*>(base);
  p->scb = reinterpret_cast<float*>(base + codeBytes);
  p->rowSum = reinterpret_cast<int32_t*>(base + codeBytes + align64(rowsP * sizeof(float)));
  return p;
}
}  // namespace

Int8Packed* int8Pack(const int8_t* cb, const float* scb, int64_t N, int64_t K) {
  Int8Packed* p = allocInt8Packed(N, K);
  const int64_t KQ = p->KQ;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t g = n / kI8Rows, r = n % kI8Rows;
    int32_t sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int8_t c = cb[n * K + k];
      p->codes[((g * KQ + k / kI8Quad) * kI8Rows + r) * kI8Quad + k % kI8Quad] = c;
      sum += c;
    }
    p->scb[n] = scb[n];
    p->rowSum[n] = sum;
  }
  return p;
}

void int8Unpack(const Int8Packed& p, int8_t* cb) {
  for (int64_t n = 0; n < p.N; ++n) {
    const int64_t g = n / kI8Rows, r = n % kI8Rows;
    for (int64_t k = 0; k < p.K; ++k) cb[n * p.K + k] = p.codes[((g * p.KQ + k / kI8Quad) * kI8Rows + r) * kI8Quad + k % kI8Quad];
  }
}

Int8Packed* int8Concat(const Int8Packed* const* parts, int n) {
  if (n < 1 || n > kI8MaxParts) return nullptr;
  const int64_t K = parts[0]->K;
  int64_t N = 0;
  for (int i = 0; i < n; ++i) {
    if (parts[i]->K != K || (i + 1 < n && parts[i]->N % kI8Rows != 0)) return nullptr;
    N += parts[i]->N;
  }
  // int8Pack of the concatenated rows, copied group by group instead of re-packed.
  Int8Packed* p = allocInt8Packed(N, K);
  const size_t groupBytes = static_cast<size_t>(p->KQ * kI8Rows * kI8Quad);
  int64_t g = 0, row = 0;
  for (int i = 0; i < n; ++i) {
    const Int8Packed& q = *parts[i];
    std::memcpy(p->codes + g * static_cast<int64_t>(groupBytes), q.codes, static_cast<size_t>(q.groups) * groupBytes);
    std::memcpy(p->scb + row, q.scb, static_cast<size_t>(q.N) * sizeof(float));
    std::memcpy(p->rowSum + row, q.rowSum, static_cast<size_t>(q.N) * sizeof(int32_t));
    g += q.groups;
    row += q.N;
  }
  return p;
}

const Int8KernelTable* const* int8Levels(int* count) {
  static const Int8KernelTable* levels[3];
  static int n = [] {
    int c = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (int8KernelsVnni() != nullptr && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) levels[c++] = int8KernelsVnni();
    if (int8KernelsAvx2() != nullptr && __builtin_cpu_supports("avx2")) levels[c++] = int8KernelsAvx2();
#endif
    levels[c++] = int8KernelsScalar();
    return c;
  }();
  *count = n;
  return levels;
}

void int8Matmul(Runtime& rt, const Int8MatmulArgs& A) {
  const Int8Packed& w = *A.w;
  const int64_t M = A.M, K = w.K, N = w.N, KQ = w.KQ, Kp = KQ * kI8Quad;
  const Int8KernelTable& kt = *A.kernels;
  assert(M >= 1);
  // The outputs: nParts row ranges (one for a plain call: all N rows into y).
  const int64_t wholeRows[2] = {0, N};
  float* const wholeY[1] = {A.y};
  const float* const wholeBias[1] = {A.bias};
  const int nParts = A.nParts > 0 ? A.nParts : 1;
  const int64_t* partRow = A.nParts > 0 ? A.partRow : wholeRows;
  float* const* ys = A.nParts > 0 ? A.ys : wholeY;
  const float* const* biases = A.nParts > 0 ? A.biases : wholeBias;
  const int64_t gBegin = partRow[0] / kI8Rows, gEnd = ceilDiv(partRow[nParts], kI8Rows), nGroups = gEnd - gBegin;

  // Scratch (one call at a time): cols int32 [K], isOut u8 [K], codes u8 [M, Kp], sca f32 [M].
  const size_t colsBytes = align64(static_cast<size_t>(K) * 4), outBytes = align64(static_cast<size_t>(K));
  const size_t codeBytes = align64(static_cast<size_t>(M * Kp)), scaBytes = align64(static_cast<size_t>(M) * 4);
  auto* scratch = reinterpret_cast<uint8_t*>(rt.shared.get((colsBytes + outBytes + codeBytes + scaBytes) / 4 + 16));
  auto* cols = reinterpret_cast<int32_t*>(scratch);
  uint8_t* isOut = scratch + colsBytes;
  uint8_t* aq = isOut + outBytes;
  auto* sca = reinterpret_cast<float*>(aq + codeBytes);

  // 1. Outlier columns: fixed, or every column with any |x| ≥ t in this batch; and
  // 2. per-token absmax int8 (outlier elements excluded from the absmax, outlier columns coded 0).
  // The row scan and quantization are the level's kernels (scanRow / quantizeRow: the scalar
  // reference's bits); static columns keep the plain loop (their absmax excludes whole columns).
  const float t = A.threshold;
  const bool dynamic = A.staticCols == nullptr && t > 0.0f;
  std::memset(isOut, 0, static_cast<size_t>(K));
  if (A.staticCols != nullptr) {
    for (int64_t i = 0; i < A.nStatic; ++i) isOut[A.staticCols[i]] = 1;
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = A.x + m * K;
      float amax = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const float a = std::fabs(xr[k]);
        if (isOut[k] == 0 && a > amax) amax = a;
      }
      sca[m] = amax;
    }
  } else {
    for (int64_t m = 0; m < M; ++m) sca[m] = kt.scanRow(A.x + m * K, K, dynamic ? t : INFINITY, dynamic ? isOut : nullptr);
  }
  int64_t nCols = 0;
  if (A.staticCols != nullptr || dynamic) for (int64_t k = 0; k < K; ++k) if (isOut[k]) cols[nCols++] = static_cast<int32_t>(k);
  if (A.outlierCount != nullptr) *A.outlierCount = static_cast<int32_t>(nCols);

  const uint8_t offset = kt.unsignedActivations ? 128 : 0;
  for (int64_t m = 0; m < M; ++m) {
    uint8_t* qr = aq + m * Kp;
    const float amax = sca[m];
    if (amax == 0.0f) {
      std::memset(qr, offset, static_cast<size_t>(Kp));
      continue;
    }
    kt.quantizeRow(A.x + m * K, K, 127.0f / amax, offset, qr);
    std::memset(qr + K, offset, static_cast<size_t>(Kp - K));
    for (int64_t c = 0; c < nCols; ++c) qr[cols[c]] = offset;
  }

  // 3. Groups of 16 rows: int32 dots, then the f32 epilogue and the outlier columns.
  const bool parallel = rt.pool.threads() > 1 && static_cast<double>(M) * (partRow[nParts] - partRow[0]) * K >= kSerialMacs;
  const int64_t nTasks = parallel ? std::min<int64_t>(nGroups, 4 * rt.pool.threads()) : 1;
  // Decode (M ≤ kI8PairRows) on a level with the multi-stream kernels: each task's groups are
  // cut into 4 (dot16x4) or 2 (dot16x2) contiguous spans walked side by side (DRAM streams).
  const int streams = M > kI8PairRows ? 1 : kt.dot16x4 != nullptr ? 4 : kt.dot16x2 != nullptr ? 2 : 1;
  auto task = [&](int ti, int tid) {
    const int64_t g0 = gBegin + ti * nGroups / nTasks, g1 = gBegin + (ti + 1) * nGroups / nTasks;
    const size_t wtFloats = static_cast<size_t>(nCols > 0 ? nCols : 1) * kI8Rows;
    float* wtBuf = rt.local[static_cast<size_t>(tid)].get(4 * wtFloats);  // [streams][nCols][16]
    int32_t accBuf[4][kI8MaxM * kI8Rows];
    auto outlierColumns = [&](int64_t g, float* wt) {
      const int8_t* wg = w.codes + g * KQ * kI8Rows * kI8Quad;
      const int64_t n0 = g * kI8Rows;
      const int rowsN = static_cast<int>(std::min<int64_t>(kI8Rows, N - n0));
      for (int64_t c = 0; c < nCols; ++c) {
        const int64_t k = cols[c];
        const int8_t* q = wg + (k / kI8Quad) * kI8Rows * kI8Quad + k % kI8Quad;
        for (int r = 0; r < rowsN; ++r) wt[c * kI8Rows + r] = static_cast<float>(q[r * kI8Quad]) * w.scb[n0 + r] * kInv127;
      }
    };
    // The f32 epilogue of rows m0..m0+rows−1 of group g from its int32 dots, into its part's output.
    auto epilogue = [&](int64_t g, int64_t m0, int rows, const int32_t* acc, const float* wt) {
      const int64_t n0 = g * kI8Rows;
      int p = 0;
      while (n0 >= partRow[p + 1]) ++p;
      const int64_t r0 = partRow[p], Np = partRow[p + 1] - r0;
      const int rowsN = static_cast<int>(std::min<int64_t>(kI8Rows, partRow[p + 1] - n0));
      const float* bias = biases[p] != nullptr ? biases[p] + (n0 - r0) : nullptr;
      for (int i = 0; i < rows; ++i) {
        const int64_t m = m0 + i;
        const float* xr = A.x + m * K;
        float* yr = ys[p] + m * Np + (n0 - r0);
        for (int r = 0; r < rowsN; ++r) {
          float v = static_cast<float>(acc[i * kI8Rows + r]) * (sca[m] * w.scb[n0 + r]) * kInv127Sq;
          if (bias != nullptr) v = v + bias[r];
          float o = 0.0f;
          for (int64_t c = 0; c < nCols; ++c) o += xr[cols[c]] * wt[c * kI8Rows + r];
          yr[r] = v + o;
        }
      }
    };
    auto dots = [&](int64_t g, int64_t m0, int rows, int32_t* acc) {
      return Int8DotArgs{w.codes + g * KQ * kI8Rows * kI8Quad, KQ, aq + m0 * Kp, Kp, rows, w.rowSum + g * kI8Rows, acc};
    };
    int64_t g = g0;
    for (int n = streams; n >= 2; n /= 2) {  // 4 spans, then 2 over what is left, then one at a time
      if (n == 4 && kt.dot16x4 == nullptr) continue;
      const int64_t span = (g1 - g) / n;
      for (int64_t i = 0; i < span; ++i) {
        Int8DotArgs d[4];
        for (int j = 0; j < n; ++j) {
          outlierColumns(g + j * span + i, wtBuf + j * wtFloats);
          d[j] = dots(g + j * span + i, 0, static_cast<int>(M), accBuf[j]);
        }
        if (n == 4) kt.dot16x4(d);
        else kt.dot16x2(d[0], d[1]);
        for (int j = 0; j < n; ++j) epilogue(g + j * span + i, 0, static_cast<int>(M), accBuf[j], wtBuf + j * wtFloats);
      }
      g += n * span;
    }
    for (; g < g1; ++g) {
      outlierColumns(g, wtBuf);
      for (int64_t m0 = 0; m0 < M; m0 += kI8MaxM) {
        const int rows = static_cast<int>(std::min<int64_t>(kI8MaxM, M - m0));
        kt.dot16(dots(g, m0, rows, accBuf[0]));
        epilogue(g, m0, rows, accBuf[0], wtBuf);
      }
    }
  };
  if (nTasks > 1) rt.pool.parallelFor(static_cast<int>(nTasks), task);
  else task(0, 0);
}

}  // namespace qllm

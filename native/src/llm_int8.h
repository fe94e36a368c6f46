// LLM.int8() on the CPU: packed per-row int8 weights, per-token int8 activations,
// int8 × int8 → int32 dot products, and the f32 outlier-column decomposition.
// The specification is src/methods/int8.ts (int8MatmulRef); every level here returns
// bit-identical results to it (the int32 part is exact, the f32 epilogue and the outlier
// sums run in one portable translation unit, in the reference's operation order).
//
// Packed layout ("llm-int8/i16"), one runtime layout for GEMV and GEMM:
//   rows in groups of 16 (N padded with zero rows), K padded to a multiple of 4;
//   group g, quad q (k = 4q..4q+3): 64 bytes = 16 rows × 4 consecutive k of that row:
//     codes[((g·KQ + q)·16 + r)·4 + j] = CB[16g + r, 4q + j]
//   so one zmm (VNNI) or two ymm (AVX2) of weights feed 16 int32 output lanes with no
//   shuffles, and the activations are a 4-byte broadcast.
//   rowSum[n] = Σ_k CB[n, k] (VNNI: activations are the unsigned operand a + 128, so
//   Σ (a+128)·w − 128·Σw = Σ a·w exactly; this CPU generation has no vpdpbssd).
#pragma once
#include <cstddef>
#include <cstdint>

namespace qllm {

struct Runtime;

constexpr int kI8Rows = 16;   // rows per interleaved group
constexpr int kI8Quad = 4;    // k per lane
constexpr int kI8MaxM = 4;    // activation rows per kernel call

/** A packed weight; owns its memory (one 64-byte aligned block, huge-page advised). */
struct Int8Packed {
  int64_t N = 0, K = 0;
  int64_t KQ = 0;      // ceil(K / 4)
  int64_t groups = 0;  // ceil(N / 16)
  int8_t* codes = nullptr;     // [groups][KQ][16][4]
  float* scb = nullptr;        // [groups·16] row absmax (0 for padding rows)
  int32_t* rowSum = nullptr;   // [groups·16]
  void* block = nullptr;
  size_t bytes = 0;
  ~Int8Packed();
};

/** cb [N, K] row-major int8, scb [N] → packed (new, caller owns). */
Int8Packed* int8Pack(const int8_t* cb, const float* scb, int64_t N, int64_t K);
/** Inverse of int8Pack (tests): cb [N, K]. */
void int8Unpack(const Int8Packed& p, int8_t* cb);

constexpr int kI8MaxParts = 4;
/**
 * The weights of one input (q, k, v; gate, up) as one packed matrix: the parts' row groups back
 * to back, exactly int8Pack of their concatenated rows (new, caller owns). Null when they
 * cannot be: 1..kI8MaxParts parts of one K, every part but the last a whole number of 16-row
 * groups (so that no group straddles two parts).
 */
Int8Packed* int8Concat(const Int8Packed* const* parts, int n);

/** One kernel call: int32 acc[m][r] = Σ_q Σ_j a[m][4q+j] · codes[g][q][r][j] for one group. */
struct Int8DotArgs {
  const int8_t* w;      // codes of the group: [KQ][16][4]
  int64_t KQ;
  const uint8_t* a;     // activation rows, row stride lda bytes (s8 codes, or s8 + 128 for VNNI)
  int64_t lda;
  int rows;             // 1..kI8MaxM
  const int32_t* rowSum;  // [16] of the group (VNNI offset correction)
  int32_t* acc;         // [rows][16]
};

struct Int8KernelTable {
  const char* name;
  /** Activations as u8 = s8 + 128 (VNNI) instead of s8. */
  bool unsignedActivations;
  void (*dot16)(const Int8DotArgs& d);
  /**
   * Decode form, or null: dot16 of two groups walked side by side (rows ≤ kI8PairRows,
   * same activations), with software prefetch, so that each thread keeps two DRAM
   * streams in flight. Exact int32 like dot16, so the results are the same bits.
   */
  void (*dot16x2)(const Int8DotArgs& a, const Int8DotArgs& b);
  /** Four groups side by side (d[0..3], rows ≤ kI8PairRows, same activations), or null. */
  void (*dot16x4)(const Int8DotArgs* d);
  /**
   * Activation row scan: returns max |x[k]| over k < K with |x[k]| < t (NaN skipped; t = +inf
   * takes every element) and, when flags is not null, sets flags[k] = 1 where |x[k]| ≥ t.
   */
  float (*scanRow)(const float* x, int64_t K, float t, uint8_t* flags);
  /**
   * codes[k] = u8(s8(q)) + offset (mod 256), q = round-half-even(x[k]·s) in f32, for k < K.
   * |x[k]·s| may exceed 127 only in columns the driver overwrites afterwards (outliers).
   */
  void (*quantizeRow)(const float* x, int64_t K, float s, uint8_t offset, uint8_t* codes);
};

/** The scalar scanRow / quantizeRow: the reference the SIMD levels equal bit for bit. */
float int8ScanRowScalar(const float* x, int64_t K, float t, uint8_t* flags);
void int8QuantizeRowScalar(const float* x, int64_t K, float s, uint8_t offset, uint8_t* codes);

constexpr int kI8PairRows = 2;  // activation rows the two-stream kernel takes

const Int8KernelTable* int8KernelsScalar();
const Int8KernelTable* int8KernelsAvx2();  // null when not compiled in
const Int8KernelTable* int8KernelsVnni();  // null when not compiled in

/** Levels this CPU runs, fastest first ("vnni", "avx2", "scalar"). */
const Int8KernelTable* const* int8Levels(int* count);

struct Int8MatmulArgs {
  const float* x;           // [M, K]
  int64_t M;
  const Int8Packed* w;
  float threshold;          // > 0: dynamic outlier columns (any |x| ≥ t in this batch)
  const int32_t* staticCols;  // fixed outlier columns (ascending), or null
  int64_t nStatic;
  const float* bias;        // [N] or null (nParts = 0)
  float* y;                 // [M, N] (nParts = 0)
  /**
   * nParts ≥ 1: rows partRow[0] ≤ n < partRow[nParts] of w only, as nParts outputs: part p is
   * rows partRow[p]..partRow[p+1]−1 into ys[p] [M, partRow[p+1] − partRow[p]] with biases[p]
   * (or null). partRow[0] and every inner bound are multiples of 16 (int8Concat's parts).
   */
  int nParts;
  const int64_t* partRow;   // [nParts + 1]
  float* const* ys;
  const float* const* biases;
  const Int8KernelTable* kernels;
  int32_t* outlierCount;    // out: number of outlier columns used (may be null)
};

/** y = LLM.int8()(x, w) as src/methods/int8.ts int8MatmulRef. */
void int8Matmul(Runtime& rt, const Int8MatmulArgs& a);

}  // namespace qllm

// GPTQ kernels (ALGORITHMS.md §2; the specification is src/methods/gptq.ts):
//
//   syrkAccumulate  sum[K, K] = beta·sum + alpha·XᵀX   the Hessian, no transposed copy of X
//   gptqHinv        H → Hinv = upper Cholesky factor of H⁻¹ (gptq_hinv.cc)
//   gptqQuantize    the lazy-batch quantization of W given Hinv (gptq.cc)
//
// The drivers plan the work and run it on the pool; the GEMM-shaped parts go
// through the kernel table's register tile (kernel_impl.h), the column-sequential
// part through a per-level "lane" kernel (gptq_rows.h) that quantizes one column
// of L rows per vector. Arguments are trusted: src/backend/native.ts validates them.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "control.h"

namespace qllm {

struct Runtime;

/**
 * One block of columns [i1, i2) for up to `lanes` consecutive rows: quantize each
 * column, spread its error over the rest of the block (the paper's inner loop).
 * Rows are independent, so a row is a SIMD lane.
 */
struct GptqLaneArgs {
  float* w;               // running weights of the first row, permuted order; row l at w + l·ldw (columns ≥ i2
                          // are read for group grids); the block's columns receive the dequantized weights
  int64_t ldw;
  int64_t K;
  int rows;               // real rows, ≤ the kernel's lanes
  const float* hinv;      // [K, K] upper
  int64_t i1, i2;
  int maxq;
  int64_t g;              // group size (K for one group per row)
  int64_t G;              // groups per row
  bool sym;
  bool staticGroups;      // grids given in scales/zeros, column → group in colGroup
  bool blockStartGrids;   // dynamic grids from the block-start snapshot (gptq.py), not the current weights
  const int32_t* colGroup;  // [K] (static groups only)
  float* scales;          // row l's grids at scales + l·G (written for dynamic groups)
  uint8_t* zeros;         // row l's zero points at zeros + l·G
  uint8_t* codes;         // row l's codes at codes + l·K (permuted order)
  float* negErr;          // [rows, i2 − i1]: −(w − q)/Hinv[i,i], the A operand of the trailing update
  float* wt;              // scratch [4, i2 − i1, lanes]: the block transposed, its errors, codes, dequantized values
  float* laneScale;       // [lanes] current grid of each row (kept across blocks)
  float* laneZero;        // [lanes]
  double* loss;           // [lanes] Σ (w − q)² / Hinv[i,i]², accumulated
};

struct GptqRowKernel {
  const char* level;      // the KernelTable level it was compiled for
  int lanes;
  void (*block)(const GptqLaneArgs& a);
};

// Each returns null when its level is not compiled in (non-x86 builds).
const GptqRowKernel* gptqRowsScalar();
const GptqRowKernel* gptqRowsAvx2();
const GptqRowKernel* gptqRowsAvx512();

/**
 * Parameters of gptqQuantize. The sweep runs in the permuted column order
 * (act-order): permuted column i is original column perm[i]. Outputs are in the
 * ORIGINAL order except the grids, which are per (row, group of the sweep).
 */
struct GptqQuantArgs {
  const float* w;         // [N, K] original weights (read only: each task copies its rows, permuted)
  const int32_t* perm;    // [K] permuted → original column, or null for the identity
  const uint8_t* dead;    // [K] 1 = dead input (original index): its weights count as 0; or null
  const float* hinv;      // [K, K] upper Cholesky factor of H⁻¹ (permuted order)
  int64_t N, K;
  int bits;
  int64_t g;              // group size along the permuted columns, K for one group per row
  bool sym;
  bool staticGroups;
  // Dynamic grids: false = from the CURRENT weights at the group start (every earlier error
  // applied; blocks are cut so that no group straddles two); true = from the weights as they
  // were at the start of the lazy block (IST-DASLab gptq.py reads W[:, i1+i:…], updated only
  // between blocks of exactly blockSize columns).
  bool blockStartGrids;
  const int32_t* colGroup;  // [K] group of each permuted column (static groups), else null
  float* scales;          // [N, G] in (static groups) / out
  uint8_t* zeros;         // [N, G] in (static groups) / out
  uint8_t* codes;         // [N, K] out, original column order
  float* dequantized;     // [N, K] out, original column order: scale·(code − zero)
  int64_t blockSize;      // lazy-batch block B
  const CallControl* ctl = nullptr;  // cancellation (polled between column blocks) and progress; may be null
};

/**
 * sum[K, K] = beta·sum + alpha · x[T, K]ᵀ · x (both triangles; beta = 0 ignores the
 * old contents). Exactly one of sum32 / sum64 is non-null.
 */
void syrkAccumulate(Runtime& rt, const float* x, int64_t T, int64_t K, float* sum32, double* sum64, float alpha, float beta,
                    const CallControl* ctl = nullptr);

/**
 * out [n, n] = the upper Cholesky factor U of A⁻¹ (A⁻¹ = Uᵀ·U), strictly lower part
 * zeroed, where A[i][j] = H[perm[i]][perm[j]] off the diagonal and A[i][i] = diag[i]
 * (the caller's dead-column fix and damping). H (f32 or f64: exactly one of h32 /
 * h64) is only read, so a failed attempt is retried from it with more damping.
 * False when a pivot is not positive and finite (or when ctl asked to cancel).
 */
bool gptqHinv(Runtime& rt, const float* h32, const double* h64, int64_t n, const int32_t* perm, const double* diag, float* out,
              const CallControl* ctl = nullptr);

/** Returns the loss Σ (w − q)² / Hinv[i,i]² / 2. */
double gptqQuantize(Runtime& rt, const GptqQuantArgs& a);

/**
 * Asks the kernel for transparent huge pages on the 2 MiB-aligned interior of a
 * large buffer that is about to be written for the first time (the outputs, which
 * JS allocates fresh for every layer): one fault per 2 MiB instead of per 4 KiB.
 * Advice only; a no-op where unsupported.
 */
void adviseHugePages(void* p, size_t bytes);

}  // namespace qllm

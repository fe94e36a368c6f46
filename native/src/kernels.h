// The kernel table: everything one SIMD level provides.
//
// The level-independent drivers (matmul.cc, attention.cc) plan the work, own the
// buffers and the threads, and call these functions through the table chosen at
// runtime (dispatch.cc). Each level is one translation unit compiled with its own
// target flags (kernels_scalar.cc, kernels_avx2.cc, kernels_avx512.cc) around the
// same generic code (kernel_impl.h), so this header holds only plain data.
#pragma once
#include <stdint.h>

namespace qllm {

/** One register tile: C[mr, nr] = A[mr, kc] · B[kc, nr] (+ bias), or C += A · B. */
struct TileArgs {
  int64_t kc;
  const float* a;  // a[k·lda + i], i < mr: a packed x panel, or the rows of P
  int64_t lda;
  const float* b;  // b[k·ldb + j], j < nr: a packed W panel, or the rows of V
  int64_t ldb;
  float* c;        // c[i·ldc + j]
  int64_t ldc;
  int mr;          // 1..mr of the table
  int nr;          // 1..nr of the table
  bool accumulate; // C += A·B; otherwise C = A·B (+ bias)
  bool maskB;      // B is not padded to nr of the table: read only nr columns
  const float* bias; // [nr] or null; added when !accumulate
};

/** y[m, n0..n1) = x[m, :] · W[n0..n1, :]ᵀ (+ bias) for m < rows (1..4), dot-product form. */
struct GemvArgs {
  const float* x;  // [rows, k], row stride ldx
  int64_t ldx;
  int rows;
  const float* w;  // [N, k], row-major
  int64_t k;
  int64_t n0, n1;
  const float* bias; // [N] or null
  float* y;        // [rows, N], row stride ldy
  int64_t ldy;
};

/** Attention of the `group` heads sharing one kv head, for one query position. */
struct AttnRowsArgs {
  const float* q;  // [group, d]: this position's query rows of the group's heads
  const float* k;  // key j at k + j·kvStride (already offset to the kv head)
  const float* v;  // value j at v + j·kvStride
  int64_t kvStride;
  int64_t nKeys;   // keys 0..nKeys-1 are visible
  int d;
  int group;
  float scale;
  float* out;      // [group, d]
  float* scores;   // scratch [group·nKeys + kAttnRowsKeyBlock·d]
};

/** Keys per block in attnRows: one block of K (or V) serves all heads of the group. */
constexpr int64_t kAttnRowsKeyBlock = 32;

struct KernelTable {
  const char* name;
  int mr, nr;      // register tile of `tile`
  int kc;          // K block: an A panel [kc, mr] stays in L1, a B block [kc, 8·nr] in L2
  /** dst[k·mr + i] = x[i·ldx + k] for i < rows, 0 for rows ≤ i < mr; k < K. */
  void (*packA)(const float* x, int64_t ldx, int rows, int64_t K, float* dst);
  /** ceil(cols/nr) panels of [kc, nr]: panel p holds dst[p·kc·nr + k·nr + j] = w[(p·nr + j)·ldw + k], 0 past cols. */
  void (*packB)(const float* w, int64_t ldw, int64_t cols, int64_t kc, float* dst);
  void (*tile)(const TileArgs& t);
  void (*gemv)(const GemvArgs& g);
  /**
   * Causal softmax down the columns of s[rows, nr]: column i sees rows j ≤ limit0 + i.
   * Writes exp(scale·(s − max)) (0 where masked) and invSum[i] = 1 / Σ_j.
   */
  void (*softmaxCols)(float* s, int64_t rows, int64_t limit0, float scale, float* invSum);
  void (*attnRows)(const AttnRowsArgs& a);
  /**
   * SwiGLU of the MLP: g[i] = silu(g[i]) · u[i] = g / (1 + exp(−g)) · u for i < n, f32
   * (exp's argument clamped to ≤ 88 so that it stays finite; silu(g ≤ −88) is then
   * g / 1.65e38, as small as the true value). The scalar level (expf) is the reference.
   */
  void (*swiglu)(float* g, const float* u, int64_t n);
  /** Benchmark probe: `iters` rounds of independent FMAs; returns the flops done. */
  double (*fmaLoop)(int64_t iters);
};

// Each returns null when its level is not compiled in (non-x86 builds).
const KernelTable* kernelsScalar();
const KernelTable* kernelsAvx2();
const KernelTable* kernelsAvx512();

}  // namespace qllm

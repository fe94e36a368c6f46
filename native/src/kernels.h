// The kernel table: everything one SIMD level provides.
//
// The level-independent drivers (matmul.cc, attention.cc) plan the work, own the
// buffers and the threads, and call these functions through the table chosen at
// runtime (dispatch.cc). Each level is one translation unit compiled with its own
// target flags (kernels_scalar.cc, kernels_avx2.cc, kernels_avx512.cc) around the
// same generic code (kernel_impl.h), so this header holds only plain data.
#pragma once
#include <stdint.h>

#include "prefetch.h"  // PrefetchList, prefetchLines: the hints attnChunk spreads over its blocks

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

/**
 * Decode attention of one query position over a chunk of nKeys keys, every head
 * (attn_chunk_impl.h). Head h reads kv head h / group. Writes the chunk's partial
 * result against a reference m[h] (the max of the scores s_hj = scale · q_h · k_j up to
 * kAttnChunkSlack below it: max_j s_hj − slack ≤ m[h] ≤ max_j s_hj): out[h] =
 * Σ_j exp(s_hj − m[h]) · v_j (not normalised), l[h] = Σ_j exp(s_hj − m[h]); nKeys = 0
 * gives out = 0, m = −inf, l = 0. attnCombine merges the chunks.
 */
struct AttnChunkArgs {
  const float* q;  // [nKvHead·group, d]: this position's query rows
  const void* k;   // key j of kv head g at k + j·kvStride + g·d elements (offset to the chunk's first key): f32, or f16 bits for attnChunkF16;
                   // kBlocks: column c of key j at k + ((j/32)·nKvHead + g)·d·32 + c·32 + j%32 (k at the chunk's first block)
  const void* v;   // value j of kv head g at v + j·kvStride + g·d elements, as k
  int64_t kvStride;
  int64_t nKeys;
  int d;
  int nKvHead;
  int group;       // query heads per kv head
  float scale;
  bool kBlocks;    // f16 keys in blocks of 32 positions (native/LAYOUTS.md "KV cache"), the chunk starting on a block
  const float* qt; // kBlocks: q transposed per kv head, [nKvHead][d][group] (head g·group + h, column c at (g·d + c)·group + h)
  float* out;      // [nHead, d]
  float* m;        // [nHead]
  float* l;        // [nHead]
  float* scratch;  // [attnChunkScratch(...)] floats, 64-byte aligned
  int64_t prefetchKeys;  // rows [0, prefetchKeys) ≥ nKeys may be prefetched (the thread's next chunks)
  bool prefetchHead;     // prefetch the chunk's first rows (false: the previous chunk did)
  // Lines [hintLine0, hintLine1) of hint (the next call's weights, prefetch.h), prefetched spread
  // over the chunk's blocks; hint null: none. Prefetches only: the results do not depend on them.
  const PrefetchList* hint;
  int64_t hintLine0, hintLine1;
};

/** Keys per block of attnChunk's one pass (scores, exp, P·V): the block's K and V rows stay in L1. */
constexpr int64_t kAttnChunkPvKeys = 32;
/** Keys attnChunk prefetches ahead of the rows it reads. */
constexpr int64_t kAttnChunkPrefetchKeys = 32;
/** __builtin_prefetch locality of those prefetches (1: prefetcht2, into L2). */
constexpr int kAttnChunkPrefetchLocality = 1;
/** How far a block's max may pass attnChunk's reference m before m is raised: p ≤ e^slack. */
constexpr float kAttnChunkSlack = 8.0f;

/** Floats of scratch attnChunk needs: a block's scores [nHead, 32], Σ p [nHead, 16], a key block [d, 32]. */
constexpr int64_t attnChunkScratch(int64_t nHead, int64_t d) { return (nHead + d) * kAttnChunkPvKeys + nHead * 16; }

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
  void (*attnChunk)(const AttnChunkArgs& a);
  /** attnChunk over an f16 cache (k, v: IEEE binary16 bits, widened to f32 as read). */
  void (*attnChunkF16)(const AttnChunkArgs& a);
  /**
   * Merges nChunks partial results of attnChunk (part [nChunks][nHead][d], m and l
   * [nChunks][nHead]) into out [nHead, d] = Σ_c e^(m_c − M)·part_c / Σ_c e^(m_c − M)·l_c,
   * M = max_c m_c, per head. w: scratch [(nChunks + 1)·nHead] floats.
   */
  void (*attnCombine)(const float* part, const float* m, const float* l, int nChunks, int nHead, int d, float* out, float* w);
  /**
   * SwiGLU of the MLP: g[i] = silu(g[i]) · u[i] = g / (1 + exp(−g)) · u for i < n, f32
   * (exp's argument clamped to ≤ 88 so that it stays finite; silu(g ≤ −88) is then
   * g / 1.65e38, as small as the true value). The scalar level (expf) is the reference.
   */
  void (*swiglu)(float* g, const float* u, int64_t n);
  /**
   * RMSNorm of one row: y[H] = x / sqrt(Σx²/H + eps) · w (y may be x). The scalar level is
   * nn/block.ts rmsNorm bit for bit (f64 mean square); the SIMD levels sum in f32.
   */
  void (*rmsNorm)(const float* x, const float* w, int64_t H, float eps, float* y);
  /**
   * RoPE in place on x [T, nHeads, 2·half] (first/second half pairs): row t rotated by
   * cos/sin[t·half + i]. The scalar level is nn/rope.ts apply bit for bit.
   */
  void (*rope)(float* x, int64_t T, int64_t nHeads, int64_t half, const float* cos, const float* sin);
  /** out[i] = a[i] + b[i] for i < n (the residual add; out may alias a or b). */
  void (*add)(const float* a, const float* b, float* out, int64_t n);
  /** dst[i] = f16 bits of src[i], round to nearest even (the f16 KV-row store; NaN stays NaN). */
  void (*toF16)(const float* src, uint16_t* dst, int64_t n);
  /**
   * The greedy sampler's pick over x[n]: the lowest index of the largest value, a NaN never
   * chosen, 0 when no value exceeds −∞ (src/generate/sampler.ts argmax). Every level is exact
   * (comparisons only).
   */
  int64_t (*argmax)(const float* x, int64_t n);
  /** Benchmark probe: `iters` rounds of independent FMAs; returns the flops done. */
  double (*fmaLoop)(int64_t iters);
};

// Each returns null when its level is not compiled in (non-x86 builds).
const KernelTable* kernelsScalar();
const KernelTable* kernelsAvx2();
const KernelTable* kernelsAvx512();

}  // namespace qllm

// What one addon instance owns: the thread pool, the chosen kernel level and the
// scratch buffers the drivers reuse between calls (grown on demand, never shrunk,
// so steady-state calls do not allocate or page-fault).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "kernels.h"
#include "pool.h"

namespace qllm {

/** A 64-byte aligned float buffer that only grows. */
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : p_(o.p_), cap_(o.cap_) { o.p_ = nullptr; o.cap_ = 0; }
  ~Buffer() { std::free(p_); }
  /** At least n floats; previous contents are not kept. */
  float* get(size_t n) {
    if (n > cap_) {
      std::free(p_);
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (p_ == nullptr) std::abort();  // out of memory: nothing sensible left to do
      cap_ = bytes / sizeof(float);
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  size_t cap_ = 0;
};

struct Runtime {
  explicit Runtime(const KernelTable* k) : pool(1), kernels(k), local(1) {}
  ThreadPool pool;
  const KernelTable* kernels;
  Buffer shared;               // one per call: packed x panels, packed K
  std::vector<Buffer> local;   // one per pool thread: packed W blocks, score blocks

  void setThreads(int n) {
    pool.resize(n);
    local.resize(static_cast<size_t>(n));
  }
};

/** Levels compiled into this build that the CPU can run, fastest first. */
std::vector<const KernelTable*> availableKernels();
/** The SIMD level whose non-packed kernels (GPTQ rows, int8, convert) a level runs: "amx" → "avx512". */
const char* simdLevelOf(const char* levelName);

// The drivers. Arguments are trusted (validated in src/backend/native.ts).
/** y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias[N]). */
void matmul(Runtime& rt, const float* x, const float* w, int64_t M, int64_t K, int64_t N, const float* bias, float* y);

struct AttentionShape {
  int64_t T, pos0, nHead, nKvHead, headDim;
  /** f16 keys in blocks of 32 positions ([block][nKvHead][headDim][32], native/LAYOUTS.md "KV cache"); values row-major */
  bool keyBlocks = false;
};
/** g[i] = silu(g[i]) · u[i] for i < n (elementwise.cc; the pool for long arrays). */
void swiglu(Runtime& rt, float* g, const float* u, int64_t n);
/** y[T, H] = RMSNorm of each row of x with weight w[H] (y may be x; elementwise.cc). */
void rmsNorm(Runtime& rt, const float* x, const float* w, int64_t T, int64_t H, float eps, float* y);
/** RoPE in place on x [T, nHeads·headDim] at positions pos0..; cos/sin [≥ pos0+T, headDim/2]. */
void rope(Runtime& rt, float* x, int64_t T, int64_t nHeads, int64_t headDim, int64_t pos0, const float* cos, const float* sin);
/** out[i] = a[i] + b[i] for i < n (out may alias a or b). */
void add(Runtime& rt, const float* a, const float* b, float* out, int64_t n);
/** dst[i] = f16 bits of src[i] (round to nearest even) for i < n. */
void toF16(Runtime& rt, const float* src, uint16_t* dst, int64_t n);
/**
 * Keys src [T, nKvHead·headDim] (positions pos0..) rounded to f16 (as toF16) into a cache of
 * keys in blocks of 32 positions: column c of kv head g at position p goes to
 * dst[((p/32)·nKvHead + g)·headDim·32 + c·32 + p%32] (native/LAYOUTS.md "KV cache").
 */
void toF16Keys(Runtime& rt, const float* src, uint16_t* dst, int64_t T, int64_t pos0, int64_t nKvHead, int64_t headDim);
/** The greedy pick over x[n] (KernelTable::argmax), on the calling thread (32000 logits: ~2 µs). */
int64_t argmax(Runtime& rt, const float* x, int64_t n);

/** Causal GQA; layouts as in src/backend/backend.ts. */
void attention(Runtime& rt, const float* q, const float* k, const float* v, const AttentionShape& s, float* out,
               const PrefetchList* hint = nullptr);
/**
 * Bytes of a prefetch hint (prefetch.h: the next call's weights, in its read order) that
 * attention of this shape spreads over its work: the plan to build for it (0: decode
 * attention only, T < 8; prefill ignores hints).
 */
int64_t attentionHintBytes(const AttentionShape& s);
/** attention over an f16 cache: k, v hold IEEE binary16 bits (widened to f32 as read). */
void attentionF16(Runtime& rt, const float* q, const uint16_t* k, const uint16_t* v, const AttentionShape& s, float* out,
                  const PrefetchList* hint = nullptr);

}  // namespace qllm

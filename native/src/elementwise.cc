// Elementwise drivers of the forward pass (the level's kernels in kernel_impl.h).
#include "runtime.h"

namespace qllm {
namespace {

// A decode step's rows (2048 … 5632 elements) take 1–2 µs on one thread: waking the pool costs
// more. Longer arrays (prefill) are split across the pool.
constexpr int64_t kParallelMin = int64_t{1} << 16;

/** f(i0, i1) over [0, n) in 64-element aligned cuts (no two threads share a cache line of the output). */
template <class F>
void splitElements(Runtime& rt, int64_t n, F&& f) {
  const int threads = rt.pool.threads();
  if (threads == 1 || n < kParallelMin) {
    f(int64_t{0}, n);
    return;
  }
  rt.pool.parallelFor(threads, [&](int t, int) {
    const int64_t i0 = (n * t / threads) / 64 * 64, i1 = t + 1 == threads ? n : (n * (t + 1) / threads) / 64 * 64;
    if (i1 > i0) f(i0, i1);
  });
}

/** f(t0, t1) over rows [0, T) of `width` elements each, split by rows when the whole is long. */
template <class F>
void splitRows(Runtime& rt, int64_t T, int64_t width, F&& f) {
  const int threads = rt.pool.threads();
  if (threads == 1 || T < 2 || T * width < kParallelMin) {
    f(int64_t{0}, T);
    return;
  }
  rt.pool.parallelFor(threads, [&](int t, int) {
    const int64_t t0 = T * t / threads, t1 = T * (t + 1) / threads;
    if (t1 > t0) f(t0, t1);
  });
}

}  // namespace

void swiglu(Runtime& rt, float* g, const float* u, int64_t n) {
  splitElements(rt, n, [&](int64_t i0, int64_t i1) { rt.kernels->swiglu(g + i0, u + i0, i1 - i0); });
}

void rmsNorm(Runtime& rt, const float* x, const float* w, int64_t T, int64_t H, float eps, float* y) {
  splitRows(rt, T, H, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) rt.kernels->rmsNorm(x + t * H, w, H, eps, y + t * H);
  });
}

void rope(Runtime& rt, float* x, int64_t T, int64_t nHeads, int64_t headDim, int64_t pos0, const float* cos, const float* sin) {
  const int64_t half = headDim / 2;
  splitRows(rt, T, nHeads * headDim, [&](int64_t t0, int64_t t1) {
    rt.kernels->rope(x + t0 * nHeads * headDim, t1 - t0, nHeads, half, cos + (pos0 + t0) * half, sin + (pos0 + t0) * half);
  });
}

void add(Runtime& rt, const float* a, const float* b, float* out, int64_t n) {
  splitElements(rt, n, [&](int64_t i0, int64_t i1) { rt.kernels->add(a + i0, b + i0, out + i0, i1 - i0); });
}

void toF16(Runtime& rt, const float* src, uint16_t* dst, int64_t n) {
  splitElements(rt, n, [&](int64_t i0, int64_t i1) { rt.kernels->toF16(src + i0, dst + i0, i1 - i0); });
}

void toF16Keys(Runtime& rt, const float* src, uint16_t* dst, int64_t T, int64_t pos0, int64_t nKvHead, int64_t headDim) {
  // A row's elements rounded by the level's kernel 256 at a time, then scattered: a step
  // stores one position per layer, too little to split over the pool.
  constexpr int64_t kRun = 256;
  const int64_t row = nKvHead * headDim;
  uint16_t h[kRun];
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = pos0 + t;
    uint16_t* blk = dst + (p / 32) * row * 32 + p % 32;
    for (int64_t e0 = 0; e0 < row; e0 += kRun) {
      const int64_t n = row - e0 < kRun ? row - e0 : kRun;
      rt.kernels->toF16(src + t * row + e0, h, n);
      for (int64_t e = 0; e < n; ++e) blk[(e0 + e) * 32] = h[e];  // element g·headDim + c of the row
    }
  }
}
int64_t argmax(Runtime& rt, const float* x, int64_t n) { return rt.kernels->argmax(x, n); }

}  // namespace qllm

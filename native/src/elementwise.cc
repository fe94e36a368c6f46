// Elementwise drivers of the forward pass (the level's kernels in kernel_impl.h).
#include "runtime.h"

namespace qllm {

void swiglu(Runtime& rt, float* g, const float* u, int64_t n) {
  // A decode step's 5632 elements take ~2 µs on one thread: waking the pool costs more.
  constexpr int64_t kParallelMin = int64_t{1} << 16;
  const int threads = rt.pool.threads();
  if (threads == 1 || n < kParallelMin) {
    rt.kernels->swiglu(g, u, n);
    return;
  }
  rt.pool.parallelFor(threads, [&](int t, int) {
    // 64-element aligned cuts, so no two threads share a cache line of g.
    const int64_t i0 = (n * t / threads) / 64 * 64, i1 = t + 1 == threads ? n : (n * (t + 1) / threads) / 64 * 64;
    if (i1 > i0) rt.kernels->swiglu(g + i0, u + i0, i1 - i0);
  });
}

}  // namespace qllm

// The streaming-read bandwidth probe that eval/bench-quantized.ts reports the GEMV
// kernels against: memory allocated exactly as packed weights are (packed_pack.cc:
// 2 MiB-aligned mapping, MADV_HUGEPAGE, first touch before timing), each pool thread
// reading a contiguous share as 4 concurrent streams (one stream per thread reaches
// only ~2/3 of the bandwidth here; BENCHMARKS.md).
#include <chrono>
#include <cstring>

#include "packed.h"
#include "runtime.h"

namespace qllm {

void readBandwidth(Runtime& rt, size_t bytes, int threads, int reps, double* out) {
  const PackedKernels& pk = *packedKernelsFor(rt.kernels->name);
  const size_t unit = size_t{256} * static_cast<size_t>(threads);
  bytes = bytes / unit * unit;
  PackedWeight* buf = allocRaw(bytes);  // zeroed, huge-page advised
  if (buf == nullptr) {
    for (int r = 0; r < reps; ++r) out[r] = 0.0;
    return;
  }
  std::memset(buf->data, 1, bytes);  // first touch, outside the timing
  volatile uint64_t sink = 0;
  const size_t share = bytes / static_cast<size_t>(threads), stream = share / 4;
  auto pass = [&](int t, int) {
    const uint8_t* base = buf->data + static_cast<size_t>(t) * share;
    const uint8_t* s[4] = {base, base + stream, base + 2 * stream, base + 3 * stream};
    sink = sink ^ pk.readStreams(s, stream / 64 * 64);
  };
  for (int r = -1; r < reps; ++r) {  // pass −1: untimed warm-up
    const auto t0 = std::chrono::steady_clock::now();
    if (threads == 1) pass(0, 0);
    else rt.pool.parallelFor(threads, pass);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r >= 0) out[r] = static_cast<double>(bytes) / s / 1e9;
  }
  freePacked(buf);
}

}  // namespace qllm

// Prefetch hints (issue 9): the weights the NEXT call reads, prefetched while the current
// call computes, so that a decode step's non-streaming parts (attention over the KV cache)
// keep DRAM busy. A PrefetchList is the next call's bytes in the order that call will read
// them (prefetchPlan); a kernel spreads its share of the list's lines over its own work
// (prefetchLines at each interleave point). Prefetches change no result.
//
// The order: a decode matmul (M = 1) splits its row groups into one contiguous share per
// pool thread (packed.h SpanSplit; the end of a share may be taken by another thread, from
// its back), and each thread's span walks its share from the front as 4 streams side by
// side (packed_walk.h spanStreams). The plan cuts every such stream into
// pieces of kPrefetchPiece bytes and lists them round-robin over the streams, so that any
// prefix of the list is the head of every stream: the bytes each thread reads first.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qllm {

struct PackedWeight;

/** One contiguous run of bytes to prefetch. */
struct PrefetchRange {
  const uint8_t* p;
  int64_t bytes;
};

/** Bytes of one stream listed before the plan moves to the next stream. */
constexpr int64_t kPrefetchPiece = 4096;
/** Streams a decode span walks per thread (packed_walk.h spanStreams, kStreams of the spans). */
constexpr int kPrefetchStreams = 4;
/** __builtin_prefetch locality of the hint prefetches (2: prefetcht1; on Intel t1 and t2 both fill L2). */
constexpr int kPrefetchLocality = 2;

/** The ranges of a plan and the first line of each (a prefix sum: lineAt[i] = Σ_{j<i} lines of range j). */
struct PrefetchList {
  std::vector<PrefetchRange> r;
  std::vector<int64_t> lineAt;  // [r.size() + 1]
  int64_t lines() const { return lineAt.empty() ? 0 : lineAt.back(); }
  void clear() {
    r.clear();
    lineAt.assign(1, 0);
  }
};

/**
 * Appends to `out` the bytes a decode matmul (M = 1) of w on `threads` threads reads, in the
 * order above, until out holds maxBytes (whole lines). Every range lies inside w's memory
 * (its parts' rows for a row-major 16-bit view). Lines are 64 bytes.
 */
void prefetchPlan(const PackedWeight& w, int threads, int64_t maxBytes, PrefetchList* out);

/** Prefetches lines [l0, l1) of the list (the lines of its ranges back to back); l1 ≤ lines(). */
inline void prefetchLines(const PrefetchList& pl, int64_t l0, int64_t l1) {
  if (l0 >= l1) return;
  // The range holding line l0: the last i with lineAt[i] ≤ l0.
  size_t lo = 0, hi = pl.r.size();
  while (hi - lo > 1) {
    const size_t mid = (lo + hi) / 2;
    if (pl.lineAt[mid] <= l0) lo = mid;
    else hi = mid;
  }
  for (size_t i = lo; i < pl.r.size() && pl.lineAt[i] < l1; ++i) {
    const int64_t a = (l0 > pl.lineAt[i] ? l0 : pl.lineAt[i]) - pl.lineAt[i];
    const int64_t b = (l1 < pl.lineAt[i + 1] ? l1 : pl.lineAt[i + 1]) - pl.lineAt[i];
    const char* base = reinterpret_cast<const char*>(pl.r[i].p);
    for (int64_t l = a; l < b; ++l) __builtin_prefetch(base + 64 * l, 0, kPrefetchLocality);
  }
}

}  // namespace qllm

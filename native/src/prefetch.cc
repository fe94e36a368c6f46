// prefetchPlan (prefetch.h): the bytes a decode matmul of a packed weight reads, head first.
#include "prefetch.h"

#include "packed.h"

namespace qllm {
namespace {

int64_t minI(int64_t a, int64_t b) { return a < b ? a : b; }

}  // namespace

void prefetchPlan(const PackedWeight& w, int threads, int64_t maxBytes, PrefetchList* out) {
  if (out->lineAt.empty()) out->lineAt.assign(1, 0);
  const PackedLayout& L = w.L;
  if (w.data == nullptr || L.N < 1 || maxBytes < 64) return;
  // The streams, as packed_matmul.cc splits the row groups (one contiguous range per task,
  // cut at part boundaries) and each span walks its range (kPrefetchStreams parts side by
  // side, the remainder row groups last, after the last stream's).
  const int nParts = w.nParts == 0 ? 1 : w.nParts;
  const int64_t RG = L.Np / kRowGroup;
  const int nTasks = threads < 1 ? 1 : threads;
  std::vector<PrefetchRange> streams;
  for (int t = 0; t < nTasks; ++t) {
    const int64_t t0 = t * RG / nTasks, t1 = (t + 1) * RG / nTasks;
    for (int p = 0; p < nParts; ++p) {
      const int64_t at0 = w.nParts == 0 ? 0 : w.partRg[p], at1 = w.nParts == 0 ? RG : w.partRg[p + 1];
      const int64_t rg0 = t0 > at0 ? t0 : at0, rg1 = t1 < at1 ? t1 : at1;
      if (rg1 <= rg0) continue;
      if (L.rowMajor) {  // a row-major 16-bit view: the part's rows n0..n1, one stream
        const int64_t partN = w.nParts == 0 ? L.N : w.partN[p];
        const int64_t n0 = (rg0 - at0) * kRowGroup, n1 = minI(partN, (rg1 - at0) * kRowGroup);
        const uint8_t* row0 = w.nParts == 0 ? w.data : w.partData[p];
        if (n1 > n0 && row0 != nullptr) streams.push_back({row0 + n0 * L.codeBytes, (n1 - n0) * L.codeBytes});
        continue;
      }
      const int64_t n = rg1 - rg0, part = n / kPrefetchStreams;
      for (int st = 0; st < kPrefetchStreams && part > 0; ++st) {
        streams.push_back({w.data + (rg0 + st * part) * L.rgStride, part * L.rgStride});
      }
      if (n > kPrefetchStreams * part) {
        streams.push_back({w.data + (rg0 + kPrefetchStreams * part) * L.rgStride, (n - kPrefetchStreams * part) * L.rgStride});
      }
    }
  }
  // Round-robin pieces until maxBytes.
  int64_t left = maxBytes / 64 * 64;
  for (int64_t off = 0; left > 0; off += kPrefetchPiece) {
    bool any = false;
    for (const PrefetchRange& s : streams) {
      if (off >= s.bytes || left <= 0) continue;
      any = true;
      const int64_t b = minI(minI(kPrefetchPiece, s.bytes - off), left);
      out->r.push_back({s.p + off, b});
      out->lineAt.push_back(out->lineAt.back() + (b + 63) / 64);
      left -= b;
    }
    if (!any) break;
  }
}

}  // namespace qllm

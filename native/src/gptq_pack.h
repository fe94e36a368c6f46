// Small helpers shared by the GPTQ drivers (gptq.cc, gptq_hinv.cc): integer
// arithmetic, and packing of "k-major" operands (row k of the source holds the
// n-direction) into the [kc][NR] panels the register tile reads. Row-major
// "n-major" operands go through the kernel table's packA / packB.
#pragma once
#include <stdint.h>
#include <string.h>

namespace qllm {
namespace gptqdetail {

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t minI(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t maxI(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }

/** d[0..n) = s[0..n), n ≤ 32: the panel widths get constant-size copies (no memcpy call per row). */
inline void copyRow(float* d, const float* s, int64_t n) {
  switch (n) {
    case 32: memcpy(d, s, 32 * sizeof(float)); break;
    case 16: memcpy(d, s, 16 * sizeof(float)); break;
    case 12: memcpy(d, s, 12 * sizeof(float)); break;
    case 8: memcpy(d, s, 8 * sizeof(float)); break;
    case 6: memcpy(d, s, 6 * sizeof(float)); break;
    case 4: memcpy(d, s, 4 * sizeof(float)); break;
    default: for (int64_t j = 0; j < n; ++j) d[j] = s[j];
  }
}

/**
 * Panels of nr columns: dst[p·pstride + k·nr + j] = src[k·lds + p·nr + j] for
 * k < kc, j < nr, 0 where p·nr + j ≥ cols.
 */
inline void packKMajor(const float* src, int64_t lds, int64_t kc, int64_t cols, int64_t nr, int64_t pstride, float* dst) {
  for (int64_t p0 = 0; p0 < cols; p0 += nr) {
    const int64_t w = cols - p0 < nr ? cols - p0 : nr;
    float* d = dst + (p0 / nr) * pstride;
    const float* s = src + p0;
    if (w == nr) {
      for (int64_t k = 0; k < kc; ++k) copyRow(d + k * nr, s + k * lds, nr);
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        copyRow(d + k * nr, s + k * lds, w);
        for (int64_t j = w; j < nr; ++j) d[k * nr + j] = 0.0f;
      }
    }
  }
}

inline void negate(float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = -p[i];
}

}  // namespace gptqdetail
}  // namespace qllm

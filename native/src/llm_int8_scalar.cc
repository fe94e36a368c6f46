// Scalar LLM.int8() dot kernel: the reference the SIMD levels are tested against
// (test/int8/kernel.test.ts), and the level for CPUs without AVX2.
#include "llm_int8.h"

#include <cmath>

namespace qllm {
namespace {

void dot16(const Int8DotArgs& d) {
  for (int m = 0; m < d.rows; ++m) {
    const auto* a = reinterpret_cast<const int8_t*>(d.a + m * d.lda);  // s8 codes
    for (int r = 0; r < kI8Rows; ++r) {
      int32_t s = 0;
      for (int64_t q = 0; q < d.KQ; ++q) {
        const int8_t* w = d.w + (q * kI8Rows + r) * kI8Quad;
        for (int j = 0; j < kI8Quad; ++j) s += static_cast<int32_t>(a[q * kI8Quad + j]) * w[j];
      }
      d.acc[m * kI8Rows + r] = s;
    }
  }
}

constexpr Int8KernelTable kTable{"scalar", false, dot16, nullptr, nullptr, int8ScanRowScalar, int8QuantizeRowScalar};

}  // namespace

float int8ScanRowScalar(const float* x, int64_t K, float t, uint8_t* flags) {
  float amax = 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    const float a = std::fabs(x[k]);
    if (a < t && a > amax) amax = a;
    if (flags != nullptr && a >= t) flags[k] = 1;
  }
  return amax;
}

void int8QuantizeRowScalar(const float* x, int64_t K, float s, uint8_t offset, uint8_t* codes) {
  for (int64_t k = 0; k < K; ++k) {
    const float v = x[k] * s;
    // Outlier columns (overwritten by the driver) may be out of int range: keep the cast defined.
    const int q = std::fabs(v) < 1e9f ? static_cast<int>(std::nearbyint(v)) : 0;
    codes[k] = static_cast<uint8_t>(static_cast<uint8_t>(static_cast<int8_t>(q)) + offset);
  }
}

const Int8KernelTable* int8KernelsScalar() { return &kTable; }

}  // namespace qllm

// Scalar LLM.int8() dot kernel: the reference the SIMD levels are tested against
// (test/int8/kernel.test.ts), and the level for CPUs without AVX2.
#include "llm_int8.h"

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

constexpr Int8KernelTable kTable{"scalar", false, dot16, nullptr};

}  // namespace

const Int8KernelTable* int8KernelsScalar() { return &kTable; }

}  // namespace qllm

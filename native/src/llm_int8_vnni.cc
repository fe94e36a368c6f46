// AVX-512 VNNI LLM.int8() dot kernel (compiled with -mavx512f -mavx512bw -mavx512vnni in
// qllm_llm_int8_vnni; selected only when the CPU reports avx512vnni and avx512bw).
// One zmm of weights = 16 rows × 4 k; vpdpbusd multiplies u8 × s8, so the activations
// are the unsigned operand (s8 + 128, made by the driver) and 128·Σw is subtracted at
// the end (rowSum, precomputed at pack time): exact int32.
#include "llm_int8.h"

#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
// GCC 12's avx512fintrin.h false positive (see kernels_avx512.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace qllm {
namespace {

template <int ROWS>
void dotRows(const Int8DotArgs& d) {
  __m512i acc[ROWS];
  for (int m = 0; m < ROWS; ++m) acc[m] = _mm512_setzero_si512();
  for (int64_t q = 0; q < d.KQ; ++q) {
    const __m512i w = _mm512_load_si512(d.w + q * 64);
    for (int m = 0; m < ROWS; ++m) {
      int32_t quad;
      __builtin_memcpy(&quad, d.a + m * d.lda + q * kI8Quad, 4);
      acc[m] = _mm512_dpbusd_epi32(acc[m], _mm512_set1_epi32(quad), w);
    }
  }
  const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(d.rowSum), 7);  // 128·Σw
  for (int m = 0; m < ROWS; ++m) _mm512_storeu_si512(d.acc + m * kI8Rows, _mm512_sub_epi32(acc[m], corr));
}

void dot16(const Int8DotArgs& d) {
  switch (d.rows) {
    case 1: dotRows<1>(d); break;
    case 2: dotRows<2>(d); break;
    case 3: dotRows<3>(d); break;
    default: dotRows<4>(d); break;
  }
}

constexpr Int8KernelTable kTable{"vnni", true, dot16, nullptr};

}  // namespace

const Int8KernelTable* int8KernelsVnni() { return &kTable; }

}  // namespace qllm
#else
namespace qllm {
const Int8KernelTable* int8KernelsVnni() { return nullptr; }
}  // namespace qllm
#endif

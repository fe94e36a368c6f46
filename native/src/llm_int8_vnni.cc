// AVX-512 VNNI LLM.int8() kernels (compiled with -mavx512f -mavx512bw -mavx512vnni in
// qllm_llm_int8_vnni; selected only when the CPU reports avx512vnni and avx512bw).
// One zmm of weights = 16 rows × 4 k; vpdpbusd multiplies u8 × s8, so the activations
// are the unsigned operand (s8 + 128, made by the driver) and 128·Σw is subtracted at
// the end (rowSum, precomputed at pack time): exact int32.
// Also the activation row scan and quantization (scanRow / quantizeRow, llm_int8.h): the
// same bits as the scalar reference (cvtps2dq rounds half to even, as nearbyint does).
#include "llm_int8.h"

#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
// GCC 12's avx512fintrin.h false positive (see kernels_avx512.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace qllm {
namespace {

__m512i quadOf(const Int8DotArgs& d, int m, int64_t q) {
  int32_t quad;
  __builtin_memcpy(&quad, d.a + m * d.lda + q * kI8Quad, 4);
  return _mm512_set1_epi32(quad);
}

template <int ROWS>
void dotRows(const Int8DotArgs& d) {
  __m512i acc[ROWS];
  for (int m = 0; m < ROWS; ++m) acc[m] = _mm512_setzero_si512();
  for (int64_t q = 0; q < d.KQ; ++q) {
    const __m512i w = _mm512_load_si512(d.w + q * 64);
    for (int m = 0; m < ROWS; ++m) acc[m] = _mm512_dpbusd_epi32(acc[m], quadOf(d, m, q), w);
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

/**
 * G = 2 or 4 groups side by side (decode, rows ≤ kI8PairRows): G sequential DRAM streams per
 * thread, two quads per iteration into separate accumulators (2·G vpdpbusd chains at one
 * row). No software prefetch: on the Zen 4 host, cold 2048×2048 / 5632×2048 / 2048×5632
 * GEMVs ran at 86–95% of the read probe without it and 78–89% with it 1 or 2 KiB ahead
 * (two interleaved A/B rounds, 2 threads; the hardware prefetcher follows two streams).
 */
template <int G, int ROWS>
void dotStreams(const Int8DotArgs* d) {
  __m512i acc[G][2][ROWS];  // [group][quad parity][row]
  for (auto& g : acc)
    for (auto& p : g)
      for (auto& a : p) a = _mm512_setzero_si512();
  const int64_t KQ = d[0].KQ;
  int64_t q = 0;
  for (; q + 2 <= KQ; q += 2) {
    __m512i a0[ROWS], a1[ROWS];
    for (int m = 0; m < ROWS; ++m) { a0[m] = quadOf(d[0], m, q); a1[m] = quadOf(d[0], m, q + 1); }
    for (int g = 0; g < G; ++g) {
      const __m512i w0 = _mm512_load_si512(d[g].w + q * 64), w1 = _mm512_load_si512(d[g].w + q * 64 + 64);
      for (int m = 0; m < ROWS; ++m) {
        acc[g][0][m] = _mm512_dpbusd_epi32(acc[g][0][m], a0[m], w0);
        acc[g][1][m] = _mm512_dpbusd_epi32(acc[g][1][m], a1[m], w1);
      }
    }
  }
  for (; q < KQ; ++q)
    for (int g = 0; g < G; ++g) {
      const __m512i wv = _mm512_load_si512(d[g].w + q * 64);
      for (int m = 0; m < ROWS; ++m) acc[g][0][m] = _mm512_dpbusd_epi32(acc[g][0][m], quadOf(d[0], m, q), wv);
    }
  for (int g = 0; g < G; ++g) {
    const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(d[g].rowSum), 7);
    for (int m = 0; m < ROWS; ++m)
      _mm512_storeu_si512(d[g].acc + m * kI8Rows, _mm512_sub_epi32(_mm512_add_epi32(acc[g][0][m], acc[g][1][m]), corr));
  }
}

void dot16x2(const Int8DotArgs& a, const Int8DotArgs& b) {
  const Int8DotArgs d[2] = {a, b};
  if (a.rows == 1) dotStreams<2, 1>(d);
  else dotStreams<2, 2>(d);
}

void dot16x4(const Int8DotArgs* d) {
  if (d[0].rows == 1) dotStreams<4, 1>(d);
  else dotStreams<4, 2>(d);
}

float scanRow(const float* x, int64_t K, float t, uint8_t* flags) {
  const __m512 tv = _mm512_set1_ps(t);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 live = K - k >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (K - k)) - 1);
    const __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(live, x + k));
    const __mmask16 below = _mm512_mask_cmp_ps_mask(live, a, tv, _CMP_LT_OQ);
    acc = _mm512_mask_max_ps(acc, below, a, acc);  // NaN (never below t) is skipped, as in the reference
    if (flags != nullptr) {
      const __mmask16 hot = _mm512_mask_cmp_ps_mask(live, a, tv, _CMP_GE_OQ);
      for (unsigned m = hot; m != 0; m &= m - 1) flags[k + __builtin_ctz(m)] = 1;
    }
  }
  return _mm512_reduce_max_ps(acc);
}

void quantizeRow(const float* x, int64_t K, float s, uint8_t offset, uint8_t* codes) {
  const __m512 sv = _mm512_set1_ps(s);
  const __m128i off = _mm_set1_epi8(static_cast<char>(offset));
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 live = K - k >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (K - k)) - 1);
    const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(live, x + k), sv));  // round half to even
    const __m128i b = _mm_add_epi8(_mm512_cvtepi32_epi8(q), off);  // low byte = the s8 code, + offset mod 256
    if (live == 0xffff) _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + k), b);
    else _mm512_mask_cvtepi32_storeu_epi8(codes + k, live, _mm512_cvtepi8_epi32(b));
  }
}

constexpr Int8KernelTable kTable{"vnni", true, dot16, dot16x2, dot16x4, scanRow, quantizeRow};

}  // namespace

const Int8KernelTable* int8KernelsVnni() { return &kTable; }

}  // namespace qllm
#else
namespace qllm {
const Int8KernelTable* int8KernelsVnni() { return nullptr; }
}  // namespace qllm
#endif

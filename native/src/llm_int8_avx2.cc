// AVX2 LLM.int8() dot kernel (compiled with -mavx2 in qllm_kernels_avx2).
// Per quad of k: two ymm of weights = 16 rows × 4 k; the activation quad is a 4-byte
// broadcast. AVX2 has no s8 × s8 dot, so: |w| (u8) × sign(w)·a (s8) with vpmaddubsw
// (pairs ≤ 2·127·127 < 2^15: no saturation), then vpmaddwd by 1 → 8 int32 lanes = 8 rows.
#include "llm_int8.h"

#if defined(__AVX2__)
#include <immintrin.h>

namespace qllm {
namespace {

template <int ROWS>
void dotRows(const Int8DotArgs& d) {
  __m256i acc[ROWS][2];
  for (int m = 0; m < ROWS; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const auto* w = reinterpret_cast<const __m256i*>(d.w);
  for (int64_t q = 0; q < d.KQ; ++q) {
    const __m256i w0 = _mm256_load_si256(w + 2 * q), w1 = _mm256_load_si256(w + 2 * q + 1);
    const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
    for (int m = 0; m < ROWS; ++m) {
      int32_t quad;
      __builtin_memcpy(&quad, d.a + m * d.lda + q * kI8Quad, 4);
      const __m256i a = _mm256_set1_epi32(quad);
      const __m256i p0 = _mm256_maddubs_epi16(u0, _mm256_sign_epi8(a, w0));
      const __m256i p1 = _mm256_maddubs_epi16(u1, _mm256_sign_epi8(a, w1));
      acc[m][0] = _mm256_add_epi32(acc[m][0], _mm256_madd_epi16(p0, ones));
      acc[m][1] = _mm256_add_epi32(acc[m][1], _mm256_madd_epi16(p1, ones));
    }
  }
  for (int m = 0; m < ROWS; ++m) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d.acc + m * kI8Rows), acc[m][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d.acc + m * kI8Rows + 8), acc[m][1]);
  }
}

/**
 * Two groups side by side (decode): two sequential DRAM streams per thread and
 * software prefetch kPrefetch bytes ahead in each, as the packed GEMV spans
 * (packed_avx2_gemv.cc); the activation quad broadcasts are shared by the two.
 */
constexpr int64_t kPrefetch = 1024;

template <int ROWS>
void dotPairRows(const Int8DotArgs& d0, const Int8DotArgs& d1) {
  __m256i acc[2][ROWS][2];
  for (int g = 0; g < 2; ++g)
    for (int m = 0; m < ROWS; ++m) acc[g][m][0] = acc[g][m][1] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i* w[2] = {reinterpret_cast<const __m256i*>(d0.w), reinterpret_cast<const __m256i*>(d1.w)};
  for (int64_t q = 0; q < d0.KQ; ++q) {
    if ((q & 1) == 0)
      for (int g = 0; g < 2; ++g) {
        const char* p = reinterpret_cast<const char*>(w[g] + 2 * q) + kPrefetch;
        _mm_prefetch(p, _MM_HINT_T0);
        _mm_prefetch(p + 64, _MM_HINT_T0);
      }
    __m256i a[ROWS];
    for (int m = 0; m < ROWS; ++m) {
      int32_t quad;
      __builtin_memcpy(&quad, d0.a + m * d0.lda + q * kI8Quad, 4);
      a[m] = _mm256_set1_epi32(quad);
    }
    for (int g = 0; g < 2; ++g) {
      const __m256i w0 = _mm256_load_si256(w[g] + 2 * q), w1 = _mm256_load_si256(w[g] + 2 * q + 1);
      const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
      for (int m = 0; m < ROWS; ++m) {
        const __m256i p0 = _mm256_maddubs_epi16(u0, _mm256_sign_epi8(a[m], w0));
        const __m256i p1 = _mm256_maddubs_epi16(u1, _mm256_sign_epi8(a[m], w1));
        acc[g][m][0] = _mm256_add_epi32(acc[g][m][0], _mm256_madd_epi16(p0, ones));
        acc[g][m][1] = _mm256_add_epi32(acc[g][m][1], _mm256_madd_epi16(p1, ones));
      }
    }
  }
  for (int g = 0; g < 2; ++g) {
    int32_t* out = g == 0 ? d0.acc : d1.acc;
    for (int m = 0; m < ROWS; ++m) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + m * kI8Rows), acc[g][m][0]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + m * kI8Rows + 8), acc[g][m][1]);
    }
  }
}

void dot16x2(const Int8DotArgs& a, const Int8DotArgs& b) {
  if (a.rows == 1) dotPairRows<1>(a, b);
  else dotPairRows<2>(a, b);
}

void dot16(const Int8DotArgs& d) {
  switch (d.rows) {
    case 1: dotRows<1>(d); break;
    case 2: dotRows<2>(d); break;
    case 3: dotRows<3>(d); break;
    default: dotRows<4>(d); break;
  }
}

/** Scalar tail of scanRow / quantizeRow: the reference's operations (cvtss2si rounds half to even). */
float scanRow(const float* x, int64_t K, float t, uint8_t* flags) {
  const __m256 tv = _mm256_set1_ps(t), absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 acc = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + k), absMask);
    const __m256 below = _mm256_cmp_ps(a, tv, _CMP_LT_OQ);
    acc = _mm256_max_ps(_mm256_and_ps(a, below), acc);  // lanes not below t (NaN included) count as 0
    if (flags != nullptr) {
      const int hot = _mm256_movemask_ps(_mm256_cmp_ps(a, tv, _CMP_GE_OQ));
      for (unsigned m = static_cast<unsigned>(hot); m != 0; m &= m - 1) flags[k + __builtin_ctz(m)] = 1;
    }
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
  const float head = _mm_cvtss_f32(m4);
  const float tail = int8ScanRowScalar(x + k, K - k, t, flags != nullptr ? flags + k : nullptr);
  return tail > head ? tail : head;
}

void quantizeRow(const float* x, int64_t K, float s, uint8_t offset, uint8_t* codes) {
  const __m256 sv = _mm256_set1_ps(s);
  const __m256i off = _mm256_set1_epi8(static_cast<char>(offset));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m256i q[4];
    for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * i), sv));  // round half to even
    // In range (|q| ≤ 127) the saturating packs are exact; out of range only in outlier columns (overwritten).
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + k), _mm256_add_epi8(_mm256_permutevar8x32_epi32(b, order), off));
  }
  int8QuantizeRowScalar(x + k, K - k, s, offset, codes + k);
}

constexpr Int8KernelTable kTable{"avx2", false, dot16, dot16x2, nullptr, scanRow, quantizeRow};

}  // namespace

const Int8KernelTable* int8KernelsAvx2() { return &kTable; }

}  // namespace qllm
#else
namespace qllm {
const Int8KernelTable* int8KernelsAvx2() { return nullptr; }
}  // namespace qllm
#endif

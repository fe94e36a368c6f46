// AVX2 + F16C level of the conversion kernels (convert.h), compiled in the qllm_kernels_avx2
// library with its flags. FMA contraction is off for this file: the references round every
// product and sum on its own (x·id + 8.5 in Q4_0, e² + Σ in RTN).
#pragma GCC optimize("fp-contract=off")
#include <stdint.h>

#include "convert.h"

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "grid_round.h"
#include "packed_f16.h"

namespace qllm {
namespace {

void decode(const uint16_t* src, WType t, int64_t n, float* out) {
  int64_t i = 0;
  if (t == WType::BF16) {
    for (; i + 8 <= n; i += 8) {
      const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
      _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    for (; i < n; ++i) out[i] = bf16ToFloat(src[i]);
    return;
  }
  const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(out + i, _mm256_blendv_ps(v, qnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  }
  for (; i < n; ++i) {
    const uint16_t h = src[i];
    out[i] = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0 ? bitsToFloat(0x7fc00000u) : halfToFloat(h);
  }
}

int64_t encodeF16(const float* x, int64_t n, uint16_t* out) {
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), lim = _mm256_set1_ps(65504.0f);
  const __m128i signMask = _mm_set1_epi16(static_cast<short>(0x8000)), qnan = _mm_set1_epi16(0x7e00);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const int over = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, absMask), lim, _CMP_GT_OQ));
    if (over != 0) return i + __builtin_ctz(static_cast<unsigned>(over));
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i nan32 = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    const __m128i nan16 = _mm_packs_epi32(_mm256_castsi256_si128(nan32), _mm256_extracti128_si256(nan32, 1));
    h = _mm_blendv_epi8(h, _mm_or_si128(_mm_and_si128(h, signMask), qnan), nan16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) {
    if (fabsf(x[i]) > 65504.0f) return i;
    out[i] = floatToHalf(x[i]);
  }
  return -1;
}

#include "convert_impl.h"

/** rtnGroup of convert_impl.h, 4 columns at a time (the 4 sums are lanes k mod 4). */
void rtnGroup4(const float* x, int64_t k0, int64_t k1, float s, int z, int maxq, uint8_t* codes, double* num, double* den) {
  int64_t k = k0;
  const int64_t head = (4 - (k0 & 3)) & 3;
  if (head != 0) {
    rtnGroup(x, k0, k0 + head < k1 ? k0 + head : k1, s, z, maxq, codes, num, den);
    k += head;
  }
  const __m256d sd = _mm256_set1_pd(s), zd = _mm256_set1_pd(z), top = _mm256_set1_pd(maxq), zero = _mm256_setzero_pd(),
                shift = _mm256_set1_pd(kRneShift);
  const __m128 sf = _mm_set1_ps(s);
  const __m128i zi = _mm_set1_epi32(z);
  __m256d vn = _mm256_loadu_pd(num), vd = _mm256_loadu_pd(den);
  for (; k + 4 <= k1; k += 4) {
    const __m256d xd = _mm256_cvtps_pd(_mm_loadu_ps(x + k));
    const __m256d t = _mm256_div_pd(xd, sd);
    __m256d q = _mm256_add_pd(_mm256_sub_pd(_mm256_add_pd(t, shift), shift), zd);
    q = _mm256_min_pd(_mm256_max_pd(q, zero), top);
    const __m128i qi = _mm256_cvttpd_epi32(q);
    const int packed = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packus_epi32(qi, qi), _mm_setzero_si128()));
    memcpy(codes + k, &packed, 4);
    const __m128 dq = _mm_mul_ps(sf, _mm_cvtepi32_ps(_mm_sub_epi32(qi, zi)));
    const __m256d e = _mm256_sub_pd(xd, _mm256_cvtps_pd(dq));
    vn = _mm256_add_pd(vn, _mm256_mul_pd(e, e));
    vd = _mm256_add_pd(vd, _mm256_mul_pd(xd, xd));
  }
  _mm256_storeu_pd(num, vn);
  _mm256_storeu_pd(den, vd);
  if (k < k1) rtnGroup(x, k, k1, s, z, maxq, codes, num, den);
}

void q4_0Row(const float* x, int64_t K, uint8_t* out) { q4_0RowImpl(x, K, out); }
void q8_0Row(const float* x, int64_t K, uint8_t* out) { q8_0RowImpl(x, K, out); }
void rtnRow(const RtnRowArgs& a) { rtnRowImpl(a, rtnGroup4); }

constexpr ConvertKernels kTable{"avx2", &decode, &encodeF16, &q4_0Row, &q8_0Row, &rtnRow};
}  // namespace

const ConvertKernels* convertAvx2() { return &kTable; }
}  // namespace qllm
#else
namespace qllm {
const ConvertKernels* convertAvx2() { return nullptr; }  // not an x86 build
}  // namespace qllm
#endif

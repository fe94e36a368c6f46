// AVX2 packed kernels: the table the dispatcher selects when the CPU reports AVX2,
// FMA and F16C (packed_matmul.cc), the f32-activation tiles (16-bit weights and the
// exact Q4/Q8 path), the activation quantizer and the bandwidth probe's reader.
// The int8-activation kernels are in packed_avx2_gemv.cc (M = 1) and
// packed_avx2_gemm.cc (tiles); what they share in packed_avx2.h.
#include "packed_avx2.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

namespace qllm {
namespace avx2 {
namespace {

// ---------------------------------------------------------------- f32 activations

/** Codes of column k for rows 8h..8h+7, as int32 lanes (Q4 unsigned, Q8 signed). */
template <bool Q8>
inline __m256i codes8(const uint8_t* rg, int64_t k, int h) {
  const int64_t s = k / kSubBlock, kk = k % kSubBlock;
  if (Q8) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rg + s * 512 + (kk / 4) * 64 + 32 * h));
    // byte kk%4 of each lane, sign-extended after removing the +128 bias
    const __m256i b = _mm256_and_si256(_mm256_srli_epi32(v, static_cast<int>(8 * (kk % 4))), _mm256_set1_epi32(0xff));
    return _mm256_sub_epi32(b, _mm256_set1_epi32(128));
  }
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rg + s * 256 + ((kk % 16) / 4) * 64 + 32 * h));
  const int shift = static_cast<int>(8 * (kk % 4) + (kk < 16 ? 0 : 4));
  return _mm256_and_si256(_mm256_srli_epi32(v, shift), _mm256_set1_epi32(15));
}

/** Exact path: dequantize in registers, acc = fma(w_k, x_k, acc) for k = 0..K−1. */
template <bool Q8, int MR>
void quantF32Tile(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  __m256 acc[MR][2];
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < L.K; ++k) {
    const int64_t gi = groupOf(L, k);
    for (int h = 0; h < 2; ++h) {
      const __m256 s = scales8(L, t.rg, 0, gi, h);
      const __m256i q = codes8<Q8>(t.rg, k, h);
      __m256 w;
      if (Q8) w = _mm256_mul_ps(_mm256_cvtepi32_ps(q), s);
      else if (L.mins) w = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(q), scales8(L, t.rg, 1, gi, h));
      else w = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(8))), s);
      for (int m = 0; m < MR; ++m) acc[m][h] = _mm256_fmadd_ps(w, _mm256_set1_ps(t.af[m * t.ldaf + k]), acc[m][h]);
    }
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, acc[m][0], acc[m][1], t.nValid);
}

template <bool BF16, int MR>
void h16TileT(const PackedTileArgs& t) {
  const int64_t K = t.L->K;
  const uint16_t* w = reinterpret_cast<const uint16_t*>(t.rg);
  __m256 acc[MR][2];
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m256 wv[2];
    for (int h = 0; h < 2; ++h) {
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k * kRowGroup + 8 * h));
      wv[h] = BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16)) : _mm256_cvtph_ps(raw);
    }
    for (int m = 0; m < MR; ++m) {
      const __m256 x = _mm256_set1_ps(t.af[m * t.ldaf + k]);
      acc[m][0] = _mm256_fmadd_ps(wv[0], x, acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(wv[1], x, acc[m][1]);
    }
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, acc[m][0], acc[m][1], t.nValid);
}

// ---------------------------------------------------------------- dispatch on mr

#define QLLM_MR_DISPATCH(NAME, MAX, ...)                   \
  void NAME(const PackedTileArgs& t) {                     \
    switch (t.mr) {                                        \
      __VA_ARGS__                                          \
    }                                                      \
  }

}  // namespace

// Entry points (packed_avx2.h) that the AVX-512 table borrows too.
QLLM_MR_DISPATCH(q4f, 2, case 1: quantF32Tile<false, 1>(t); break; default: quantF32Tile<false, 2>(t); break;)
QLLM_MR_DISPATCH(q8f, 2, case 1: quantF32Tile<true, 1>(t); break; default: quantF32Tile<true, 2>(t); break;)

namespace {

void h16(const PackedTileArgs& t) {
  withRows<6>(t.mr, [&](auto mr) {
    if (t.L->h16 == H16Type::BF16) h16TileT<true, decltype(mr)::value>(t);
    else h16TileT<false, decltype(mr)::value>(t);
  });
}

/** As quantizeScalar (packed_scalar.cc), 8 lanes at a time; same f32 operations, same bits. */
void quantize(const float* x, int64_t K, int64_t Kp, int64_t Ba, int8_t* q, float* d, int32_t* sum) {
  const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b * Ba < Kp; ++b) {
    const int64_t k0 = b * Ba, k1 = k0 + Ba < K ? k0 + Ba : K;
    __m256 vmax = _mm256_setzero_ps();
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + k), absMask));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    for (; k < k1; ++k) {
      const float a = x[k] < 0 ? -x[k] : x[k];
      amax = a > amax ? a : amax;
    }
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i vs = _mm256_setzero_si256();
    k = k0;
    for (; k + 8 <= k1; k += 8) {
      const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), vid));  // round half even
      vs = _mm256_add_epi32(vs, v);
      const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      const __m128i p8 = _mm_packs_epi16(p16, p16);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k), p8);
    }
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(vs), _mm256_extracti128_si256(vs, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    int32_t s = _mm_cvtsi128_si32(s4);
    for (; k < k0 + Ba; ++k) {
      const int v = k < k1 ? static_cast<int>(__builtin_nearbyintf(x[k] * id)) : 0;
      q[k] = static_cast<int8_t>(v);
      s += v;
    }
    d[b] = amax / 127.0f;
    sum[b] = s;
  }
}

/** 4 streams, one 64-byte line of each per step (two ymm loads), xor-folded so nothing is dead. */
uint64_t readStreams(const uint8_t* const* s, size_t bytes) {
  __m256i a[4][2];
  for (int j = 0; j < 4; ++j) a[j][0] = a[j][1] = _mm256_setzero_si256();
  for (size_t i = 0; i < bytes; i += 64)
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h)
        a[j][h] = _mm256_xor_si256(a[j][h], _mm256_load_si256(reinterpret_cast<const __m256i*>(s[j] + i + 32 * h)));
  __m256i v = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) v = _mm256_xor_si256(v, _mm256_xor_si256(a[j][0], a[j][1]));
  alignas(32) uint64_t out[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), v);
  return out[0] ^ out[1] ^ out[2] ^ out[3];
}


}  // namespace
}  // namespace avx2

namespace {
using namespace avx2;
constexpr PackedKernels kAvx2 = {"avx2", 4, 2, 2, 6, q4, q8, q4f, q8f, h16, quantize, readStreams, q4Span, q8Span, 1, nullptr, nullptr, 0, h16Rows, h16Pack, 8};
}  // namespace

const PackedKernels* packedKernelsAvx2() { return &kAvx2; }
}  // namespace qllm
#else
namespace qllm {
const PackedKernels* packedKernelsAvx2() { return nullptr; }  // not an x86 build
}  // namespace qllm
#endif

// AVX2 GEMV spans (decode, M = 1, int8 activations): see packed_avx2.h.
#include "packed_avx2.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
namespace qllm {
namespace avx2 {
namespace {

/**
 * Decode (M = 1) over a span of row groups, written for DRAM bandwidth (measured on
 * this Zen 3, eval/bench-quantized.ts and KERNELS.md §4):
 *   - NS = 2 streams: the span is cut into two contiguous halves walked side by side,
 *     so each thread keeps two sequential DRAM streams in flight (one stream per
 *     thread read ~16–19 GB/s on 2 threads where 2–4 streams read ~21);
 *   - software prefetch kPrefetch bytes ahead in each stream (the row groups of a
 *     stream are contiguous, so the prefetch runs on into the stream's next one);
 *   - the activation broadcasts are shared by the two streams, and everything that
 *     depends on the layout's flags (scale bytes, mins, Ba/32) is a template
 *     argument, so the per-block epilogue has no branches and no division.
 * Per output row the f32 operations are those of the scalar reference in the same
 * order (bit-equal; test/kernels/packed.test.ts). The stream split and the prefetch
 * targets (wrapping into the stream's next row group) are packed_walk.h's.
 */
constexpr int64_t kPrefetch = 1024;

template <int NS, int SUBS, int SB, bool MINS>
void q4SpanT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys, const int* valid,
             const int64_t* /* ldy: one row */) {
  const int64_t nb = L.Kp / L.Ba, next = spanNext(t);
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc[NS][2];
  for (int st = 0; st < NS; ++st) acc[st][0] = acc[st][1] = _mm256_setzero_ps();
  GroupWalk gw(L);
  const int64_t minsOff = L.G * kRowGroup * SB, scaleBytes = (MINS ? 2 : 1) * minsOff;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    for (int st = 0; st < NS; ++st) prefetchNextScales(L, rgs[st], b, scaleBytes, next);
    __m256i S[NS][2];
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      const int8_t* a = t.aq + k0;
      __m256i p[NS][2];
      for (int st = 0; st < NS; ++st) {
        p[st][0] = p[st][1] = _mm256_setzero_si256();
        prefetchLines(prefetchTarget<kPrefetch>(L, rgs[st], k0 * 8, next), 4);
      }
      for (int c = 0; c < 4; ++c) {
        const __m256i alo = bcast4(a + 4 * c), ahi = bcast4(a + 16 + 4 * c);
        for (int st = 0; st < NS; ++st) {
          for (int h = 0; h < 2; ++h) {
            const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(rgs[st] + k0 * 8 + 64 * c + 32 * h));
            p[st][h] = _mm256_add_epi16(p[st][h], _mm256_maddubs_epi16(_mm256_and_si256(v, m4), alo));
            pin(p[st][h]);
            p[st][h] = _mm256_add_epi16(p[st][h], _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), ahi));
            pin(p[st][h]);
          }
        }
      }
      for (int st = 0; st < NS; ++st)
        for (int h = 0; h < 2; ++h) {
          const __m256i w = _mm256_madd_epi16(p[st][h], ones);
          S[st][h] = s == 0 ? w : _mm256_add_epi32(S[st][h], w);
        }
    }
    const __m256 d = _mm256_set1_ps(t.ad[b]);
    const int32_t sum = t.asum[b];
    const __m256i off = _mm256_set1_epi32(8 * sum);
    const __m256 dsum = _mm256_set1_ps(t.ad[b] * static_cast<float>(sum));
    for (int st = 0; st < NS; ++st) {
      const uint8_t* sp = rgs[st] + L.codeBytes + gw.gi * kRowGroup * SB;
      for (int h = 0; h < 2; ++h) {
        const __m256 sd = _mm256_mul_ps(scalesAt<SB>(sp + 8 * h * SB), d);
        if (MINS) {
          acc[st][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S[st][h]), sd, acc[st][h]);
          acc[st][h] = _mm256_fmadd_ps(scalesAt<SB>(sp + minsOff + 8 * h * SB), dsum, acc[st][h]);
        } else {
          acc[st][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(S[st][h], off)), sd, acc[st][h]);
        }
      }
    }
  }
  for (int st = 0; st < NS; ++st) store16(ys[st], acc[st][0], acc[st][1], valid[st]);
}

template <int NS, int SUBS, int SB>
void q8SpanT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys, const int* valid,
             const int64_t* /* ldy: one row */) {
  const int64_t nb = L.Kp / L.Ba, next = spanNext(t);
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
  __m256 acc[NS][2];
  for (int st = 0; st < NS; ++st) acc[st][0] = acc[st][1] = _mm256_setzero_ps();
  GroupWalk gw(L);
  const int64_t scaleBytes = L.G * kRowGroup * SB;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    for (int st = 0; st < NS; ++st) prefetchNextScales(L, rgs[st], b, scaleBytes, next);
    __m256i S[NS][2];
    for (int st = 0; st < NS; ++st) S[st][0] = S[st][1] = _mm256_setzero_si256();
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      for (int st = 0; st < NS; ++st) prefetchLines(prefetchTarget<kPrefetch>(L, rgs[st], k0 * 16, next), 8);
      for (int c = 0; c < 8; ++c) {
        const __m256i a = bcast4(t.aq + k0 + 4 * c);
        for (int st = 0; st < NS; ++st) {
          for (int h = 0; h < 2; ++h) {
            const __m256i w = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(rgs[st] + k0 * 16 + 64 * c + 32 * h)), bias);
            const __m256i pr = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
            S[st][h] = _mm256_add_epi32(S[st][h], _mm256_madd_epi16(pr, ones));
            pin(S[st][h]);
          }
        }
      }
    }
    const __m256 d = _mm256_set1_ps(t.ad[b]);
    for (int st = 0; st < NS; ++st) {
      const uint8_t* sp = rgs[st] + L.codeBytes + gw.gi * kRowGroup * SB;
      for (int h = 0; h < 2; ++h)
        acc[st][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S[st][h]), _mm256_mul_ps(scalesAt<SB>(sp + 8 * h * SB), d), acc[st][h]);
    }
  }
  for (int st = 0; st < NS; ++st) store16(ys[st], acc[st][0], acc[st][1], valid[st]);
}

}  // namespace

void q4Span(const PackedSpanArgs& t) {
  withLayoutFlags<true>(*t.L, [&](auto subs, auto sb, auto mins) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    constexpr bool MINS = decltype(mins)::value;
    spanStreams<2>(t, q4SpanT<2, SUBS, SB, MINS>, q4SpanT<1, SUBS, SB, MINS>);
  });
}

void q8Span(const PackedSpanArgs& t) {
  withLayoutFlags<false>(*t.L, [&](auto subs, auto sb, auto) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    spanStreams<2>(t, q8SpanT<2, SUBS, SB>, q8SpanT<1, SUBS, SB>);
  });
}

}  // namespace avx2
}  // namespace qllm
#endif

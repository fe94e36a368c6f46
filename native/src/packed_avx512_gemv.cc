// AVX-512 VNNI GEMV spans (decode, M = 1, int8 activations): see packed_avx512.h.
#include "packed_avx512.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
namespace qllm {
namespace avx512 {
namespace {

/**
 * Decode (M = 1) over a span of row groups, written for DRAM bandwidth:
 *   - NS streams: the span is cut into NS contiguous parts walked side by side
 *     (packed_walk.h spanStreams), so each thread keeps NS sequential DRAM streams
 *     in flight, and the activation broadcasts are shared by all of them;
 *   - software prefetch kPrefetch bytes ahead in each stream, wrapping into the
 *     stream's next row group, and the next row group's scales one line per block;
 *   - per stream two int32 chains (low and high nibbles; even and odd chunks for
 *     int8), so a sub-block is 4 dependent vpdpbusd per chain, not 8;
 *   - the layout's flags are template arguments: no branch or division per block.
 * Per output row the f32 operations are those of the scalar reference in the same
 * order (bit-equal; test/kernels/packed.test.ts).
 */
constexpr int kStreams = 2;
constexpr int64_t kPrefetch = 1024;

template <int NS, int SUBS, int SB, bool MINS>
void q4SpanT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys, const int* valid) {
  const int64_t nb = L.Kp / L.Ba;
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m512 acc[NS];
  for (int st = 0; st < NS; ++st) acc[st] = _mm512_setzero_ps();
  GroupWalk gw(L);
  const int64_t minsOff = L.G * kRowGroup * SB, scaleBytes = (MINS ? 2 : 1) * minsOff;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    for (int st = 0; st < NS; ++st) prefetchNextScales(L, rgs[st], b, scaleBytes);
    const int32_t sum = t.asum[b];
    // Σ(q − 8)·a = Σq·a − 8·Σa: the symmetric offset is the chain's starting value.
    const __m512i start = MINS ? _mm512_setzero_si512() : _mm512_set1_epi32(-8 * sum);
    __m512i lo[NS], hi[NS];
    for (int st = 0; st < NS; ++st) {
      lo[st] = start;
      hi[st] = _mm512_setzero_si512();
    }
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      const int8_t* a = t.aq + k0;
      for (int st = 0; st < NS; ++st) prefetchLines(prefetchTarget<kPrefetch>(L, rgs[st], k0 * 8), 4);
      for (int c = 0; c < 4; ++c) {
        const __m512i alo = bcast4(a + 4 * c), ahi = bcast4(a + 16 + 4 * c);
        for (int st = 0; st < NS; ++st) {
          const __m512i v = _mm512_load_si512(rgs[st] + k0 * 8 + 64 * c);
          lo[st] = _mm512_dpbusd_epi32(lo[st], _mm512_and_si512(v, m4), alo);
          hi[st] = _mm512_dpbusd_epi32(hi[st], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), ahi);
        }
      }
    }
    const __m512 d = _mm512_set1_ps(t.ad[b]);
    const __m512 dsum = _mm512_set1_ps(t.ad[b] * static_cast<float>(sum));
    for (int st = 0; st < NS; ++st) {
      const uint8_t* sp = rgs[st] + L.codeBytes + gw.gi * kRowGroup * SB;
      const __m512 S = _mm512_cvtepi32_ps(_mm512_add_epi32(lo[st], hi[st]));
      acc[st] = _mm512_fmadd_ps(S, _mm512_mul_ps(scalesAt<SB>(sp), d), acc[st]);
      if (MINS) acc[st] = _mm512_fmadd_ps(scalesAt<SB>(sp + minsOff), dsum, acc[st]);
    }
  }
  for (int st = 0; st < NS; ++st) store16(ys[st], acc[st], valid[st]);
}

template <int NS, int SUBS, int SB>
void q8SpanT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys, const int* valid) {
  const int64_t nb = L.Kp / L.Ba;
  __m512 acc[NS];
  for (int st = 0; st < NS; ++st) acc[st] = _mm512_setzero_ps();
  GroupWalk gw(L);
  const int64_t scaleBytes = L.G * kRowGroup * SB;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    for (int st = 0; st < NS; ++st) prefetchNextScales(L, rgs[st], b, scaleBytes);
    // The bytes are q + 128: Σ(q + 128)·a − 128·Σa = Σq·a, the offset the chain starts at.
    __m512i S[NS][2];
    for (int st = 0; st < NS; ++st) {
      S[st][0] = _mm512_set1_epi32(-128 * t.asum[b]);
      S[st][1] = _mm512_setzero_si512();
    }
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      for (int st = 0; st < NS; ++st) prefetchLines(prefetchTarget<kPrefetch>(L, rgs[st], k0 * 16), 8);
      for (int c = 0; c < 8; ++c) {
        const __m512i a = bcast4(t.aq + k0 + 4 * c);
        for (int st = 0; st < NS; ++st)
          S[st][c & 1] = _mm512_dpbusd_epi32(S[st][c & 1], _mm512_load_si512(rgs[st] + k0 * 16 + 64 * c), a);
      }
    }
    const __m512 d = _mm512_set1_ps(t.ad[b]);
    for (int st = 0; st < NS; ++st) {
      const uint8_t* sp = rgs[st] + L.codeBytes + gw.gi * kRowGroup * SB;
      const __m512 Sf = _mm512_cvtepi32_ps(_mm512_add_epi32(S[st][0], S[st][1]));
      acc[st] = _mm512_fmadd_ps(Sf, _mm512_mul_ps(scalesAt<SB>(sp), d), acc[st]);
    }
  }
  for (int st = 0; st < NS; ++st) store16(ys[st], acc[st], valid[st]);
}

}  // namespace

void q4Span(const PackedSpanArgs& t) {
  withLayoutFlags<true>(*t.L, [&](auto subs, auto sb, auto mins) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    constexpr bool MINS = decltype(mins)::value;
    spanStreams<kStreams>(t, q4SpanT<kStreams, SUBS, SB, MINS>, q4SpanT<1, SUBS, SB, MINS>);
  });
}

void q8Span(const PackedSpanArgs& t) {
  withLayoutFlags<false>(*t.L, [&](auto subs, auto sb, auto) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    spanStreams<kStreams>(t, q8SpanT<kStreams, SUBS, SB>, q8SpanT<1, SUBS, SB>);
  });
}

}  // namespace avx512
}  // namespace qllm
#endif

// AVX-512 VNNI int8-activation tiles (prefill, M ≥ 2): MR activation rows × one row
// group (16 rows = one zmm of int32) over all of K. See packed_avx512_gemm.h.
//
// Per 32-k sub-block of int4: 4 aligned 64-byte loads, each unpacked to its low and
// high nibbles (vpandd; vpsrlw + vpandd) = 8 u8 operands, each used by MR
// `vpdpbusd` against 4 s8 activations broadcast from memory ({1to16}, no register).
// The symmetric offset starts the int32 sum at −8·Σq_a (int8 weights: −128·Σq_a,
// their +128 bias), so S − 8Σ of the scalar reference is the same integer; the f32
// epilogue per block (cvt, s·d, fma) is the reference's, in its order: bit-equal.
#include "packed_avx512_gemm.h"

#include "packed_avx512.h"  // dpbusdB, rowPointers, scalesAt, store16, GroupWalk

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__F16C__)
#include <immintrin.h>

namespace qllm {
namespace avx512 {
namespace {

// ---------------------------------------------------------------- int4

template <int MR, int SUBS, int SB, bool MINS>
void q4T(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  const int64_t nb = L.Kp / L.Ba, Kp = L.Kp;
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const uint8_t* scl = t.rg + L.codeBytes;
  const int64_t minsOff = L.G * kRowGroup * SB;
  __m512 acc[MR];
  for (int m = 0; m < MR; ++m) acc[m] = _mm512_setzero_ps();
  GroupWalk gw(L);
  const uint8_t* w = t.rg;
  const int8_t* a = t.aq;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    __m512i S[MR];
    for (int m = 0; m < MR; ++m) S[m] = MINS ? _mm512_setzero_si512() : _mm512_set1_epi32(-8 * t.asum[m * nb + b]);
    for (int s = 0; s < SUBS; ++s, w += 256, a += kSubBlock) {
      const int8_t* ar[MR];
      rowPointers<MR>(a, Kp, ar);
      for (int c = 0; c < 4; ++c) {
        const __m512i v = _mm512_load_si512(reinterpret_cast<const void*>(w + 64 * c));
        const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        for (int m = 0; m < MR; ++m) dpbusdB(S[m], lo, ar[m] + 4 * c);
        for (int m = 0; m < MR; ++m) dpbusdB(S[m], hi, ar[m] + 16 + 4 * c);
      }
    }
    const uint8_t* sp = scl + gw.gi * kRowGroup * SB;
    const __m512 sc = scalesAt<SB>(sp);
    for (int m = 0; m < MR; ++m) {
      const float d = t.ad[m * nb + b];
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[m]), _mm512_mul_ps(sc, _mm512_set1_ps(d)), acc[m]);
      if (MINS)
        acc[m] = _mm512_fmadd_ps(scalesAt<SB>(sp + minsOff), _mm512_set1_ps(d * static_cast<float>(t.asum[m * nb + b])),
                                 acc[m]);
    }
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, acc[m], t.nValid);
}

// ---------------------------------------------------------------- int8

template <int MR, int SUBS, int SB>
void q8T(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  const int64_t nb = L.Kp / L.Ba, Kp = L.Kp;
  const uint8_t* scl = t.rg + L.codeBytes;
  __m512 acc[MR];
  for (int m = 0; m < MR; ++m) acc[m] = _mm512_setzero_ps();
  GroupWalk gw(L);
  const uint8_t* w = t.rg;
  const int8_t* a = t.aq;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    __m512i S[MR];
    for (int m = 0; m < MR; ++m) S[m] = _mm512_set1_epi32(-128 * t.asum[m * nb + b]);
    for (int s = 0; s < SUBS; ++s, w += 512, a += kSubBlock) {
      const int8_t* ar[MR];
      rowPointers<MR>(a, Kp, ar);
      for (int c = 0; c < 8; ++c) {
        const __m512i v = _mm512_load_si512(reinterpret_cast<const void*>(w + 64 * c));
        for (int m = 0; m < MR; ++m) dpbusdB(S[m], v, ar[m] + 4 * c);
      }
    }
    const __m512 sc = scalesAt<SB>(scl + gw.gi * kRowGroup * SB);
    for (int m = 0; m < MR; ++m)
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[m]), _mm512_mul_ps(sc, _mm512_set1_ps(t.ad[m * nb + b])), acc[m]);
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, acc[m], t.nValid);
}

}  // namespace

// The layout's flags and t.mr as template arguments: withLayoutFlags, withRows (packed_walk.h).
void gemmQ4(const PackedTileArgs& t) {
  withLayoutFlags<true>(*t.L, [&](auto subs, auto sb, auto mins) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    constexpr bool MINS = decltype(mins)::value;
    withRows<kGemmMrQ4>(t.mr, [&](auto mr) { q4T<decltype(mr)::value, SUBS, SB, MINS>(t); });
  });
}

void gemmQ8(const PackedTileArgs& t) {
  withLayoutFlags<false>(*t.L, [&](auto subs, auto sb, auto) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    withRows<kGemmMrQ8>(t.mr, [&](auto mr) { q8T<decltype(mr)::value, SUBS, SB>(t); });
  });
}

}  // namespace avx512

}  // namespace qllm
#else
namespace qllm {
namespace avx512 {
void gemmQ4(const PackedTileArgs&) {}  // never selected: packedKernelsFor checks the CPU
void gemmQ8(const PackedTileArgs&) {}
}  // namespace avx512
}  // namespace qllm
#endif

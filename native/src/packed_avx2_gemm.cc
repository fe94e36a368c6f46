// AVX2 int8-activation tiles (prefill and M = 2…8; M = 1 takes the spans of
// packed_avx2_gemv.cc): MR activation rows × one row group over all of K. See
// packed_avx2.h.
#include "packed_avx2.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
namespace qllm {
namespace avx2 {
namespace {

// ---------------------------------------------------------------- int4, int8 activations

template <int MR>
void q4Tile(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  const int64_t nb = L.Kp / L.Ba, subs = L.Ba / kSubBlock;
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc[MR][2];
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i S[MR][2];
    for (int m = 0; m < MR; ++m) S[m][0] = S[m][1] = _mm256_setzero_si256();
    for (int64_t s = 0; s < subs; ++s) {
      const int64_t k0 = b * L.Ba + s * kSubBlock;
      const uint8_t* sb = t.rg + k0 / kSubBlock * 256;
      __m256i p[MR][2];
      for (int m = 0; m < MR; ++m) p[m][0] = p[m][1] = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 64 * c + 32 * h));
          const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
          for (int m = 0; m < MR; ++m) {
            const int8_t* a = t.aq + m * L.Kp + k0;
            p[m][h] = _mm256_add_epi16(p[m][h], _mm256_maddubs_epi16(lo, bcast4(a + 4 * c)));
            p[m][h] = _mm256_add_epi16(p[m][h], _mm256_maddubs_epi16(hi, bcast4(a + 16 + 4 * c)));
          }
        }
      }
      for (int m = 0; m < MR; ++m)
        for (int h = 0; h < 2; ++h) S[m][h] = _mm256_add_epi32(S[m][h], _mm256_madd_epi16(p[m][h], ones));
    }
    const int64_t gi = groupOf(L, b * L.Ba);
    for (int m = 0; m < MR; ++m) {
      const float d = t.ad[m * nb + b];
      const int32_t sum = t.asum[m * nb + b];
      for (int h = 0; h < 2; ++h) acc[m][h] = blockEpilogue<false>(L, t.rg, gi, h, S[m][h], d, sum, acc[m][h]);
    }
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, acc[m][0], acc[m][1], t.nValid);
}

/**
 * GEMM tile: MR activation rows × one 8-row half (h) at a time, so the int16 and
 * int32 partial sums of MR ≤ 4 rows fit the 16 ymm registers; the layout's flags
 * are template arguments (no division, no branches per block, as the spans), and
 * the block's scales are loaded once for all MR rows.
 */
template <int MR, int SUBS, int SB, bool MINS>
void q4HalvesT(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  const int64_t nb = L.Kp / L.Ba, Kp = L.Kp;
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  const int64_t minsOff = L.G * kRowGroup * SB;
  alignas(32) float out[MR][16];
  for (int h = 0; h < 2; ++h) {
    __m256 acc[MR];
    for (int m = 0; m < MR; ++m) acc[m] = _mm256_setzero_ps();
    GroupWalk gw(L);
    const uint8_t* sb = t.rg + 32 * h;
    const int8_t* a = t.aq;
    for (int64_t b = 0; b < nb; ++b, gw.next()) {
      __m256i S[MR];
      for (int s = 0; s < SUBS; ++s, sb += 256, a += kSubBlock) {
        __m256i p[MR];
        for (int m = 0; m < MR; ++m) p[m] = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
          const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(sb + 64 * c));
          const __m256i lo = _mm256_and_si256(v, m4);
          for (int m = 0; m < MR; ++m) {
            p[m] = _mm256_add_epi16(p[m], _mm256_maddubs_epi16(lo, bcast4(a + m * Kp + 4 * c)));
            pin(p[m]);
          }
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
          for (int m = 0; m < MR; ++m) {
            p[m] = _mm256_add_epi16(p[m], _mm256_maddubs_epi16(hi, bcast4(a + m * Kp + 16 + 4 * c)));
            pin(p[m]);
          }
        }
        for (int m = 0; m < MR; ++m) {
          const __m256i w = _mm256_madd_epi16(p[m], ones);
          S[m] = s == 0 ? w : _mm256_add_epi32(S[m], w);
        }
      }
      const uint8_t* sp = t.rg + L.codeBytes + (gw.gi * kRowGroup + 8 * h) * SB;
      const __m256 sc = scalesAt<SB>(sp);
      for (int m = 0; m < MR; ++m) {
        const float d = t.ad[m * nb + b];
        const int32_t sum = t.asum[m * nb + b];
        const __m256 sd = _mm256_mul_ps(sc, _mm256_set1_ps(d));
        if (MINS) {
          acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S[m]), sd, acc[m]);
          acc[m] = _mm256_fmadd_ps(scalesAt<SB>(sp + minsOff), _mm256_set1_ps(d * static_cast<float>(sum)), acc[m]);
        } else {
          acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(S[m], _mm256_set1_epi32(8 * sum))), sd, acc[m]);
        }
      }
    }
    for (int m = 0; m < MR; ++m) _mm256_store_ps(out[m] + 8 * h, acc[m]);
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, _mm256_load_ps(out[m]), _mm256_load_ps(out[m] + 8), t.nValid);
}

}  // namespace

void q4(const PackedTileArgs& t) {
  if (t.mr == 1) return q4Tile<1>(t);  // both halves at once: one activation row
  withLayoutFlags<true>(*t.L, [&](auto subs, auto sb, auto mins) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    constexpr bool MINS = decltype(mins)::value;
    switch (t.mr) {
      case 2: q4HalvesT<2, SUBS, SB, MINS>(t); break;
      case 3: q4HalvesT<3, SUBS, SB, MINS>(t); break;
      default: q4HalvesT<4, SUBS, SB, MINS>(t); break;
    }
  });
}

namespace {

// ---------------------------------------------------------------- int8, int8 activations

template <int MR>
void q8Tile(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  const int64_t nb = L.Kp / L.Ba, subs = L.Ba / kSubBlock;
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
  __m256 acc[MR][2];
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i S[MR][2];
    for (int m = 0; m < MR; ++m) S[m][0] = S[m][1] = _mm256_setzero_si256();
    for (int64_t s = 0; s < subs; ++s) {
      const int64_t k0 = b * L.Ba + s * kSubBlock;
      const uint8_t* sb = t.rg + k0 / kSubBlock * 512;
      for (int c = 0; c < 8; ++c) {
        for (int h = 0; h < 2; ++h) {
          const __m256i w = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 64 * c + 32 * h)), bias);
          const __m256i aw = _mm256_abs_epi8(w);
          for (int m = 0; m < MR; ++m) {
            const __m256i sa = _mm256_sign_epi8(bcast4(t.aq + m * L.Kp + k0 + 4 * c), w);
            S[m][h] = _mm256_add_epi32(S[m][h], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sa), ones));
          }
        }
      }
    }
    const int64_t gi = groupOf(L, b * L.Ba);
    for (int m = 0; m < MR; ++m) {
      const float d = t.ad[m * nb + b];
      for (int h = 0; h < 2; ++h) acc[m][h] = blockEpilogue<true>(L, t.rg, gi, h, S[m][h], d, 0, acc[m][h]);
    }
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, acc[m][0], acc[m][1], t.nValid);
}

}  // namespace

void q8(const PackedTileArgs& t) {
  if (t.mr == 1) q8Tile<1>(t);
  else q8Tile<2>(t);
}

}  // namespace avx2
}  // namespace qllm
#endif

// AVX2 packed tiles. binding.gyp compiles this file with -mavx2 -mfma -mf16c; the
// dispatcher selects it when the CPU reports AVX2 and FMA (packed_matmul.cc).
//
// A row group (16 rows) is two ymm halves: rows 0–7 are bytes 0–31 of each 64-byte
// chunk, rows 8–15 bytes 32–63 (native/LAYOUTS.md). Every tile does the f32
// operations of the scalar reference (packed_scalar.cc) in the same order, so the
// results are bitwise equal (test/kernels/packed.test.ts).
//
// int8 activations: AVX2 has no vpdpbusd. vpmaddubsw multiplies the unsigned
// nibbles by the s8 activations and adds pairs into int16 (≤ 2·15·127 = 3810), so
// the 8 products of one 32-k sub-block (4 chunks × low/high nibble) add up in int16
// (≤ 30480 < 2^15) before one vpmaddwd by 1 widens them to int32: 8 multiplies, 7
// adds, 1 widen per 256 MACs. int8 weights use the sign trick (|w| × sign(a, w),
// ≤ 2·128·127 per pair) since w + 128 would overflow int16.
#include <stdint.h>

#include "packed.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>

namespace qllm {
namespace {

/**
 * GCC hoists all the vpmaddubsw of a sub-block ahead of their adds (one register per
 * product: ~30 ymm spilled per sub-block, seen in objdump); pinning each running sum
 * in a register at its add keeps a 4-row tile within the 16 ymm.
 */
inline void pin(__m256i& v) { asm("" : "+x"(v)); }

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline int64_t groupOf(const PackedLayout& L, int64_t k) {
  const int64_t gi = k / L.g;
  return gi < L.G ? gi : L.G - 1;
}

/** Scales (set 0) or mins (set 1) of group gi, rows 8h..8h+7, as f32. */
inline __m256 scales8(const PackedLayout& L, const uint8_t* rg, int64_t set, int64_t gi, int h) {
  const uint8_t* p = rg + L.codeBytes + ((set * L.G + gi) * kRowGroup + 8 * h) * L.scaleBytes;
  if (L.scaleBytes == 2) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
}

/** Stores rows 0..nValid−1 of the two halves. */
inline void store16(float* y, __m256 lo, __m256 hi, int nValid) {
  if (nValid == 16) {
    _mm256_storeu_ps(y, lo);
    _mm256_storeu_ps(y + 8, hi);
    return;
  }
  alignas(32) float tmp[16];
  _mm256_store_ps(tmp, lo);
  _mm256_store_ps(tmp + 8, hi);
  for (int r = 0; r < nValid; ++r) y[r] = tmp[r];
}

/** The per-block f32 epilogue shared by the int8-activation tiles (order as packed_scalar.cc). */
template <bool Q8>
inline __m256 blockEpilogue(const PackedLayout& L, const uint8_t* rg, int64_t gi, int h, __m256i S, float d, int32_t sum,
                            __m256 acc) {
  const __m256 sd = _mm256_mul_ps(scales8(L, rg, 0, gi, h), _mm256_set1_ps(d));
  if (Q8) return _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), sd, acc);
  if (L.mins) {
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), sd, acc);
    return _mm256_fmadd_ps(scales8(L, rg, 1, gi, h), _mm256_set1_ps(d * static_cast<float>(sum)), acc);
  }
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(S, _mm256_set1_epi32(8 * sum))), sd, acc);
}

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
 * GEMM form: MR activation rows × one 8-row half (h) at a time, so the int16 and
 * int32 partial sums of 4 rows fit the 16 ymm registers; the f32 accumulators are
 * touched once per activation block and live in a small stack tile.
 */
template <int MR>
void q4Halves(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  const int64_t nb = L.Kp / L.Ba, subs = L.Ba / kSubBlock;
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  alignas(32) float out[MR][16];
  for (int h = 0; h < 2; ++h) {
    __m256 acc[MR];
    for (int m = 0; m < MR; ++m) acc[m] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i S[MR];
      for (int m = 0; m < MR; ++m) S[m] = _mm256_setzero_si256();
      for (int64_t s = 0; s < subs; ++s) {
        const int64_t k0 = b * L.Ba + s * kSubBlock;
        const uint8_t* sb = t.rg + k0 / kSubBlock * 256 + 32 * h;
        __m256i p[MR];
        for (int m = 0; m < MR; ++m) p[m] = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 64 * c));
          const __m256i lo = _mm256_and_si256(v, m4);
          for (int m = 0; m < MR; ++m) {
            p[m] = _mm256_add_epi16(p[m], _mm256_maddubs_epi16(lo, bcast4(t.aq + m * L.Kp + k0 + 4 * c)));
            pin(p[m]);
          }
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
          for (int m = 0; m < MR; ++m) {
            p[m] = _mm256_add_epi16(p[m], _mm256_maddubs_epi16(hi, bcast4(t.aq + m * L.Kp + k0 + 16 + 4 * c)));
            pin(p[m]);
          }
        }
        for (int m = 0; m < MR; ++m) S[m] = _mm256_add_epi32(S[m], _mm256_madd_epi16(p[m], ones));
      }
      const int64_t gi = groupOf(L, b * L.Ba);
      for (int m = 0; m < MR; ++m) acc[m] = blockEpilogue<false>(L, t.rg, gi, h, S[m], t.ad[m * nb + b], t.asum[m * nb + b], acc[m]);
    }
    for (int m = 0; m < MR; ++m) _mm256_store_ps(out[m] + 8 * h, acc[m]);
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, _mm256_load_ps(out[m]), _mm256_load_ps(out[m] + 8), t.nValid);
}

// ---------------------------------------------------------------- GEMV spans (M = 1)

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
 * order (bit-equal; test/kernels/packed.test.ts).
 */
constexpr int64_t kPrefetch = 1024;

inline void prefetchLines(const uint8_t* p, int lines) {
  for (int i = 0; i < lines; ++i) _mm_prefetch(reinterpret_cast<const char*>(p + 64 * i), _MM_HINT_T0);
}

template <int SB>
inline __m256 scalesAt(const uint8_t* p) {
  if (SB == 2) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
}

/** Walks the blocks of one activation row with the group index of each (Ba | g, or one group). */
struct GroupWalk {
  int64_t perGroup, gi = 0, left;
  explicit GroupWalk(const PackedLayout& L) : perGroup(L.G > 1 ? L.g / L.Ba : INT64_MAX), left(perGroup) {}
  void next() {
    if (--left == 0) { ++gi; left = perGroup; }
  }
};

template <int NS, int SUBS, int SB, bool MINS>
void q4SpanT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys, const int* valid) {
  const int64_t nb = L.Kp / L.Ba;
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc[NS][2];
  for (int st = 0; st < NS; ++st) acc[st][0] = acc[st][1] = _mm256_setzero_ps();
  GroupWalk gw(L);
  const int64_t minsOff = L.G * kRowGroup * SB;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    __m256i S[NS][2];
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      const int8_t* a = t.aq + k0;
      __m256i p[NS][2];
      for (int st = 0; st < NS; ++st) {
        p[st][0] = p[st][1] = _mm256_setzero_si256();
        prefetchLines(rgs[st] + k0 * 8 + kPrefetch, 4);
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
void q8SpanT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys, const int* valid) {
  const int64_t nb = L.Kp / L.Ba;
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
  __m256 acc[NS][2];
  for (int st = 0; st < NS; ++st) acc[st][0] = acc[st][1] = _mm256_setzero_ps();
  GroupWalk gw(L);
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    __m256i S[NS][2];
    for (int st = 0; st < NS; ++st) S[st][0] = S[st][1] = _mm256_setzero_si256();
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      for (int st = 0; st < NS; ++st) prefetchLines(rgs[st] + k0 * 16 + kPrefetch, 8);
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

/** Splits the span into NS contiguous parts walked side by side; a leftover row group runs alone. */
template <class Two, class One>
void spanStreams(const PackedSpanArgs& t, Two two, One one) {
  const PackedLayout& L = *t.L;
  const int64_t n = t.nrg, half = n / 2;
  auto rgAt = [&](int64_t i) { return t.rg0 + i * L.rgStride; };
  auto validAt = [&](int64_t i) { return i == n - 1 ? t.lastValid : static_cast<int>(kRowGroup); };
  for (int64_t i = 0; i < half; ++i) {
    const uint8_t* rgs[2] = {rgAt(i), rgAt(half + i)};
    float* ys[2] = {t.y + i * kRowGroup, t.y + (half + i) * kRowGroup};
    const int valid[2] = {validAt(i), validAt(half + i)};
    two(L, rgs, t, ys, valid);
  }
  if (n % 2 == 1) {
    const uint8_t* rgs[1] = {rgAt(n - 1)};
    float* ys[1] = {t.y + (n - 1) * kRowGroup};
    const int valid[1] = {t.lastValid};
    one(L, rgs, t, ys, valid);
  }
}

template <int SUBS, int SB, bool MINS>
void q4SpanFor(const PackedSpanArgs& t) {
  spanStreams(t, q4SpanT<2, SUBS, SB, MINS>, q4SpanT<1, SUBS, SB, MINS>);
}

template <int SUBS, int SB>
void q4SpanMins(const PackedSpanArgs& t) {
  if (t.L->mins) q4SpanFor<SUBS, SB, true>(t);
  else q4SpanFor<SUBS, SB, false>(t);
}

template <int SUBS>
void q4SpanSb(const PackedSpanArgs& t) {
  if (t.L->scaleBytes == 2) q4SpanMins<SUBS, 2>(t);
  else q4SpanMins<SUBS, 4>(t);
}

void q4Span(const PackedSpanArgs& t) {
  switch (t.L->Ba / kSubBlock) {
    case 1: q4SpanSb<1>(t); break;
    case 2: q4SpanSb<2>(t); break;
    case 3: q4SpanSb<3>(t); break;
    default: q4SpanSb<4>(t); break;
  }
}

template <int SUBS, int SB>
void q8SpanFor(const PackedSpanArgs& t) {
  spanStreams(t, q8SpanT<2, SUBS, SB>, q8SpanT<1, SUBS, SB>);
}

template <int SUBS>
void q8SpanSb(const PackedSpanArgs& t) {
  if (t.L->scaleBytes == 2) q8SpanFor<SUBS, 2>(t);
  else q8SpanFor<SUBS, 4>(t);
}

void q8Span(const PackedSpanArgs& t) {
  switch (t.L->Ba / kSubBlock) {
    case 1: q8SpanSb<1>(t); break;
    case 2: q8SpanSb<2>(t); break;
    case 3: q8SpanSb<3>(t); break;
    default: q8SpanSb<4>(t); break;
  }
}

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

QLLM_MR_DISPATCH(q4, 4, case 1: q4Tile<1>(t); break; case 2: q4Halves<2>(t); break; case 3: q4Halves<3>(t); break;
                 default: q4Halves<4>(t); break;)
QLLM_MR_DISPATCH(q8, 2, case 1: q8Tile<1>(t); break; default: q8Tile<2>(t); break;)
QLLM_MR_DISPATCH(q4f, 2, case 1: quantF32Tile<false, 1>(t); break; default: quantF32Tile<false, 2>(t); break;)
QLLM_MR_DISPATCH(q8f, 2, case 1: quantF32Tile<true, 1>(t); break; default: quantF32Tile<true, 2>(t); break;)

template <bool BF16>
void h16For(const PackedTileArgs& t) {
  switch (t.mr) {
    case 1: h16TileT<BF16, 1>(t); break;
    case 2: h16TileT<BF16, 2>(t); break;
    case 3: h16TileT<BF16, 3>(t); break;
    case 4: h16TileT<BF16, 4>(t); break;
    case 5: h16TileT<BF16, 5>(t); break;
    default: h16TileT<BF16, 6>(t); break;
  }
}

void h16(const PackedTileArgs& t) {
  if (t.L->h16 == H16Type::BF16) h16For<true>(t);
  else h16For<false>(t);
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

constexpr PackedKernels kAvx2 = {"avx2", 4, 2, 2, 6, q4, q8, q4f, q8f, h16, quantize, readStreams, q4Span, q8Span};

}  // namespace

const PackedKernels* packedKernelsAvx2() { return &kAvx2; }
}  // namespace qllm
#else
namespace qllm {
const PackedKernels* packedKernelsAvx2() { return nullptr; }  // not an x86 build
}  // namespace qllm
#endif

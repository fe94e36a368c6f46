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

#include <cstring>
#include <type_traits>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__F16C__)
#include <immintrin.h>

namespace qllm {
namespace avx512 {
namespace {

/**
 * acc += dpbusd(w, 4 s8 at p broadcast): the broadcast as the instruction's
 * embedded {1to16} memory operand (GCC 12 emits a separate vpbroadcastd into a
 * register for _mm512_set1_epi32, one more uop and register per product).
 */
inline void dpbusdB(__m512i& acc, __m512i w, const int8_t* p) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(p)));
}

/**
 * The MR activation rows at a sub-block, as opaque pointers: without the barrier
 * GCC hoists every m·Kp + 4c of the unrolled loop as its own invariant (64 stack
 * slots reloaded before each product); with it each product addresses its row's
 * pointer plus an immediate.
 */
template <int MR>
inline void rowPointers(const int8_t* a, int64_t Kp, const int8_t** ar) {
  for (int m = 0; m < MR; ++m) {
    ar[m] = a + m * Kp;
    asm("" : "+r"(ar[m]));
  }
}

template <int SB>
inline __m512 scales16(const uint8_t* p) {
  if (SB == 2) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
}

inline void store16(float* y, __m512 v, int nValid) {
  if (nValid == 16) _mm512_storeu_ps(y, v);
  else _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << nValid) - 1), v);
}

/** Group index per activation block: Ba | g, or one group per row (packed.h). */
struct GroupWalk {
  int64_t perGroup, gi = 0, left;
  explicit GroupWalk(const PackedLayout& L) : perGroup(L.G > 1 ? L.g / L.Ba : INT64_MAX), left(perGroup) {}
  void next() {
    if (--left == 0) { ++gi; left = perGroup; }
  }
};

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
    const __m512 sc = scales16<SB>(sp);
    for (int m = 0; m < MR; ++m) {
      const float d = t.ad[m * nb + b];
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[m]), _mm512_mul_ps(sc, _mm512_set1_ps(d)), acc[m]);
      if (MINS)
        acc[m] = _mm512_fmadd_ps(scales16<SB>(sp + minsOff), _mm512_set1_ps(d * static_cast<float>(t.asum[m * nb + b])),
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
    const __m512 sc = scales16<SB>(scl + gw.gi * kRowGroup * SB);
    for (int m = 0; m < MR; ++m)
      acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[m]), _mm512_mul_ps(sc, _mm512_set1_ps(t.ad[m * nb + b])), acc[m]);
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, acc[m], t.nValid);
}

// ---------------------------------------------------------------- dispatch

/** f(subs, sb) with Ba / 32 (1…4) and the scale bytes (2, 4) as integral constants. */
template <class F>
void withSubsSb(const PackedLayout& L, F&& f) {
  auto withSb = [&](auto subs) {
    if (L.scaleBytes == 2) f(subs, std::integral_constant<int, 2>{});
    else f(subs, std::integral_constant<int, 4>{});
  };
  switch (L.Ba / kSubBlock) {
    case 1: withSb(std::integral_constant<int, 1>{}); break;
    case 2: withSb(std::integral_constant<int, 2>{}); break;
    case 3: withSb(std::integral_constant<int, 3>{}); break;
    default: withSb(std::integral_constant<int, 4>{}); break;
  }
}

/** g(std::integral_constant<int, mr>) for mr = 1…MAX. */
template <int MAX, class G>
void withMr(int mr, G&& g) {
  if constexpr (MAX > 1) {
    if (mr < MAX) return withMr<MAX - 1>(mr, g);
  }
  g(std::integral_constant<int, MAX>{});
}

}  // namespace

void gemmQ4(const PackedTileArgs& t) {
  withSubsSb(*t.L, [&](auto subs, auto sb) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    withMr<kGemmMrQ4>(t.mr, [&](auto mr) {
      constexpr int MR = decltype(mr)::value;
      if (t.L->mins) q4T<MR, SUBS, SB, true>(t);
      else q4T<MR, SUBS, SB, false>(t);
    });
  });
}

void gemmQ8(const PackedTileArgs& t) {
  withSubsSb(*t.L, [&](auto subs, auto sb) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    withMr<kGemmMrQ8>(t.mr, [&](auto mr) { q8T<decltype(mr)::value, SUBS, SB>(t); });
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

// What the AVX-512 VNNI packed kernels share (compiled only with -mavx512f -mavx512bw
// -mavx512vl -mavx512vnni, in binding.gyp's qllm_packed_avx512; selected only when the
// CPU reports all four, packed_matmul.cc): register helpers, scale loads, the entry
// points of each file:
//
//   packed_avx512_gemv.cc   M ≤ 8 "spans": bandwidth-shaped decode over many row groups
//   packed_avx512_gemm.cc   int8-activation tiles: MR rows × one row group (prefill, M > 8)
//   packed_avx512.cc        16-bit weights, activation quantizer, probe reader, the table
//
// The layouts were made for this level (native/LAYOUTS.md): one 64-byte chunk of a row
// group is 16 rows × 4 consecutive k, i.e. exactly one zmm operand of vpdpbusd (u8 × s8
// → 16 int32, no shuffles), and the 16 outputs of a row group are one zmm of f32.
//   int4: the nibbles (0..15) are the u8 operand, the activations the s8 one; the
//         symmetric offset −8·Σq_a is the int32 sum's starting value (exact).
//   int8: the stored bytes are q + 128, already the u8 operand; −128·Σq_a likewise.
// vpdpbusd does not saturate, and |S| ≤ 128·255·127 < 2^31 per 128-k block, so every
// block sum is the exact integer of the scalar reference, and every tile does the f32
// operations of packed_scalar.cc in the same order: bitwise equal results
// (test/kernels/packed.test.ts runs every level against the scalar one).
#pragma once
#include <stdint.h>

#include <cstring>
#include <type_traits>

#include "packed.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
// GCC 12's avx512fintrin.h false positive (see kernels_avx512.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace qllm {
namespace avx512 {
#include "packed_walk.h"  // groupOf, GroupWalk, withLayoutFlags, spans: this level's own copies

/** The 4 activation bytes at p broadcast to every 32-bit lane (one k-quad for 16 rows). */
inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

/** 16 scales (or mins) at p, f16 (SB = 2) or f32 (SB = 4), as f32. */
template <int SB>
inline __m512 scalesAt(const uint8_t* p) {
  if (SB == 2) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
}

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

/** Stores rows 0..nValid−1 of one row group's outputs. */
inline void store16(float* y, __m512 v, int nValid) {
  if (nValid == 16) _mm512_storeu_ps(y, v);
  else _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << nValid) - 1), v);
}

// Entry points (the layout's flags are dispatched to templates inside each).
void q4Span(const PackedSpanArgs& t);  // packed_avx512_gemv.cc
void q8Span(const PackedSpanArgs& t);
constexpr int kSpanMaxM = 8;           // the spans' largest t.mr

}  // namespace avx512

// The AVX2 tiles this level's table borrows until it has its own (packed_avx2*.cc;
// same layouts, bit-equal results). Declarations only: no AVX2 header code is compiled
// with this level's flags.
namespace avx2 {
void q4(const PackedTileArgs& t);
void q8(const PackedTileArgs& t);
void q4f(const PackedTileArgs& t);
void q8f(const PackedTileArgs& t);
void h16Pack(const uint8_t* rows, int64_t ldw, int nValid, int64_t K, uint16_t* out);
}  // namespace avx2
}  // namespace qllm
#endif

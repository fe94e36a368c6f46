// What the AVX2 packed kernels share (compiled only with -mavx2 -mfma -mf16c, in
// binding.gyp's qllm_kernels_avx2): register helpers, scale loads, the block walk,
// and the entry points of each file:
//
//   packed_avx2_gemv.cc   M = 1 "spans": bandwidth-shaped decode over many row groups
//   packed_avx2_gemm.cc   int8-activation tiles: MR rows × one row group (prefill, M = 2…8)
//   packed_avx2.cc        f32-activation tiles, 16-bit weights, activation quantizer, table
//   packed_avx2_rows.cc   row-major 16-bit views: row streams (decode), row-group pack (prefill)
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
#pragma once
#include <stdint.h>

#include <cstring>
#include <type_traits>

#include "packed.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

namespace qllm {
namespace avx2 {
#include "packed_walk.h"  // groupOf, GroupWalk, withLayoutFlags, spans: this level's own copies

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


template <int SB>
inline __m256 scalesAt(const uint8_t* p) {
  if (SB == 2) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
}

// Entry points (the layout's flags are dispatched to templates inside each).
void q4Span(const PackedSpanArgs& t);  // packed_avx2_gemv.cc
void q8Span(const PackedSpanArgs& t);
void q4(const PackedTileArgs& t);      // packed_avx2_gemm.cc
void q8(const PackedTileArgs& t);
void q4f(const PackedTileArgs& t);     // packed_avx2.cc (f32 activations, the exact path)
void q8f(const PackedTileArgs& t);
void h16Rows(const H16RowsArgs& a);    // packed_avx2_rows.cc (row-major 16-bit views)
void h16Pack(const uint8_t* rows, int64_t ldw, int nValid, int64_t K, uint16_t* out);

}  // namespace avx2
}  // namespace qllm
#endif

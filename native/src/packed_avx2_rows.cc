// AVX2 kernels on row-major 16-bit views (native/LAYOUTS.md "Row-major views"):
//
//   h16Rows   small M (decode): R = 4 rows in flight, each read once, front to back
//             (4 DRAM streams per thread: an earlier 16-row version ran at 0.70–0.82×
//             of the interleaved layout at M = 1, 16 concurrent streams on 4 KiB
//             page-cache pages being the suspect), MR = 2 activation rows per pass,
//             8 f32 lanes per row, one horizontal sum per row and activation row;
//   h16Pack   larger M (prefill): 16 rows × 16 k at a time transposed into the f16x16
//             layout (three unpack stages per 8×8 half, one lane permute), which the
//             h16 tile then runs on.
// As the AVX-512 row streams (packed_avx512.cc), each step prefetches the next R rows'
// line at the same k into L2: a page-cache row starts a new 4 KiB page, where the
// hardware streamer stops.
// The AVX-512 table borrows h16Pack (packed_avx512.cc).
#include "packed_avx2.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <cmath>

#include "packed_f16.h"

namespace qllm {
namespace avx2 {
namespace {

template <bool BF16>
inline __m256 load8(const uint8_t* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16)) : _mm256_cvtph_ps(raw);
}

template <bool BF16>
inline float load1(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return BF16 ? bf16ToFloat(v) : halfToFloat(v);
}

inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

/** Rows w[0..R), activation rows x[0..MR): y[m·ldy + r]; lanes k mod 8, then the tail k in order. */
template <bool BF16, int R, int MR>
void rowsT(const uint8_t* w, int64_t ldw, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy) {
  __m256 acc[R][MR];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MR; ++m) acc[r][m] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) {
      if ((k & 31) == 0) _mm_prefetch(reinterpret_cast<const char*>(w + (r + R) * ldw + 2 * k), _MM_HINT_T1);  // next R rows' line
      wv[r] = load8<BF16>(w + r * ldw + 2 * k);
    }
    for (int m = 0; m < MR; ++m) {
      const __m256 xv = _mm256_loadu_ps(x + m * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][m] = _mm256_fmadd_ps(wv[r], xv, acc[r][m]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MR; ++m) {
      float s = hsum(acc[r][m]);
      for (int64_t kk = k; kk < K; ++kk) s = std::fma(load1<BF16>(w + r * ldw + 2 * kk), x[m * ldx + kk], s);
      y[m * ldy + r] = s;
    }
}

constexpr int kR = 4, kMR = 2;

template <bool BF16, int MR>
void rowsM(const H16RowsArgs& a, const float* x, float* y) {
  int64_t n = 0;
  for (; n + kR <= a.rows; n += kR) rowsT<BF16, kR, MR>(a.w + n * a.ldw, a.ldw, a.K, x, a.ldx, y + n, a.ldy);
  for (; n < a.rows; ++n) rowsT<BF16, 1, MR>(a.w + n * a.ldw, a.ldw, a.K, x, a.ldx, y + n, a.ldy);
}

template <bool BF16>
void rowsB(const H16RowsArgs& a) {
  for (int m0 = 0; m0 < a.M; m0 += kMR) {
    const float* x = a.x + m0 * a.ldx;
    float* y = a.y + m0 * a.ldy;
    if (a.M - m0 >= 2) rowsM<BF16, 2>(a, x, y);
    else rowsM<BF16, 1>(a, x, y);
  }
}

/** The 8×8 transpose of 16-bit values inside each 128-bit lane: v[j] = column j (lane 0: k = j, lane 1: k = 8 + j). */
inline void transpose8(const __m256i* r, __m256i* v) {
  __m256i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i + 0] = _mm256_unpacklo_epi32(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm256_unpackhi_epi32(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm256_unpacklo_epi32(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm256_unpackhi_epi32(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    v[2 * i] = _mm256_unpacklo_epi64(u[i], u[4 + i]);
    v[2 * i + 1] = _mm256_unpackhi_epi64(u[i], u[4 + i]);
  }
}

}  // namespace

void h16Rows(const H16RowsArgs& a) {
  if (a.type == H16Type::BF16) rowsB<true>(a);
  else rowsB<false>(a);
}

void h16Pack(const uint8_t* rows, int64_t ldw, int nValid, int64_t K, uint16_t* out) {
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m256i r[16], v[16];
    for (int i = 0; i < 16; ++i)
      r[i] = i < nValid ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + i * ldw + 2 * k)) : _mm256_setzero_si256();
    transpose8(r, v);
    transpose8(r + 8, v + 8);
    for (int j = 0; j < 8; ++j) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(out + (k + j) * kRowGroup), _mm256_permute2x128_si256(v[j], v[8 + j], 0x20));
      _mm256_store_si256(reinterpret_cast<__m256i*>(out + (k + 8 + j) * kRowGroup), _mm256_permute2x128_si256(v[j], v[8 + j], 0x31));
    }
  }
  for (; k < K; ++k)
    for (int r = 0; r < kRowGroup; ++r) {
      uint16_t v = 0;
      if (r < nValid) std::memcpy(&v, rows + r * ldw + 2 * k, 2);
      out[k * kRowGroup + r] = v;
    }
}

}  // namespace avx2
}  // namespace qllm
#endif

// AVX-512 VNNI packed kernels: the table the dispatcher selects when the CPU reports
// avx512f, bw, vl and vnni (packed_matmul.cc), the 16-bit-weight tile, the activation
// quantizer and the bandwidth probe's reader. The M = 1 spans are in
// packed_avx512_gemv.cc, the int8-activation GEMM tiles in packed_avx512_gemm.cc; what
// they share in packed_avx512.h.
#include "packed_avx512.h"
#include "packed_avx512_gemm.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
namespace qllm {
namespace avx512 {
namespace {

// ---------------------------------------------------------------- 16-bit weights

/**
 * One 32-byte k-line of a row group is its 16 rows at column k: one zmm of f32 (F16
 * vcvtph2ps, BF16 a 16-bit left shift), one FMA per activation row with the broadcast
 * x[m, k]: acc = fma(w_k, x_k, acc) for k = 0..K−1, the scalar order.
 */
template <bool BF16, int MR>
void h16TileT(const PackedTileArgs& t) {
  const int64_t K = t.L->K;
  const uint16_t* w = reinterpret_cast<const uint16_t*>(t.rg);
  __m512 acc[MR];
  for (int m = 0; m < MR; ++m) acc[m] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m256i raw = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + k * kRowGroup));
    const __m512 wv = BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16)) : _mm512_cvtph_ps(raw);
    for (int m = 0; m < MR; ++m) acc[m] = _mm512_fmadd_ps(wv, _mm512_set1_ps(t.af[m * t.ldaf + k]), acc[m]);
  }
  for (int m = 0; m < MR; ++m) store16(t.y + m * t.ldy, acc[m], t.nValid);
}

/** Up to 8 rows per call: 8 accumulator chains cover the FMA latency × throughput of a core. */
constexpr int kMrH16 = 8;

void h16(const PackedTileArgs& t) {
  withRows<kMrH16>(t.mr, [&](auto mr) {
    if (t.L->h16 == H16Type::BF16) h16TileT<true, decltype(mr)::value>(t);
    else h16TileT<false, decltype(mr)::value>(t);
  });
}

// ---------------------------------------------------------------- row-major 16-bit views

/** Lanes k .. k+15 that lie below K. */
inline __mmask16 laneMask(int64_t k, int64_t K) {
  const int64_t n = K - k;
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1);
}

template <bool BF16>
inline __m512 load16w(const uint8_t* p, __mmask16 mask) {
  const __m256i raw = _mm256_maskz_loadu_epi16(mask, p);  // unaligned, nothing read past the mask
  return BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16)) : _mm512_cvtph_ps(raw);
}

/**
 * R rows in flight (each read front to back: R DRAM streams per thread), MR activation
 * rows per pass, 16 lanes of k per row and activation row, the K tail masked (no
 * scalar tail, nothing read past a row), one horizontal sum per output. Each step
 * prefetches (to L2) the line of the next R rows at the same k: a row of the page cache
 * is one or a few 4 KiB pages (K = 2048 bf16: exactly one), where the hardware streamer
 * stops, so without it every new row starts cold. Measured, M = 1, 2 threads, cold,
 * TinyLlama shapes (eval/bench-rows16.ts): 0.68–0.77× of the interleaved layout without
 * the prefetch, 0.80–0.93× with it (a line 16 lines ahead in the same row instead: 0.58–0.82×;
 * 512 B or 1 KiB ahead in the row on top of it, prefetcht0: 0.73–0.87×, no better; R = 2 or 8
 * rows: no better than 4). What is left is most likely the 4 KiB pages of the page cache
 * (the interleaved copy sits on 2 MiB pages; at 256×2048, where both sides have 4 KiB
 * pages, the view is 1.26–1.76× faster): MADV_COLLAPSE is refused here (EINVAL) and the
 * cache's folios of an already-read file stay small.
 */
template <bool BF16, int R, int MR>
void rowsT(const uint8_t* w, int64_t ldw, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy) {
  __m512 acc[R][MR];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MR; ++m) acc[r][m] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 mask = laneMask(k, K);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w + (r + R) * ldw + 2 * k), _MM_HINT_T1);  // the next R rows, same k
      wv[r] = load16w<BF16>(w + r * ldw + 2 * k, mask);
    }
    for (int m = 0; m < MR; ++m) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + m * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][m] = _mm512_fmadd_ps(wv[r], xv, acc[r][m]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MR; ++m) y[m * ldy + r] = _mm512_reduce_add_ps(acc[r][m]);
}

constexpr int kRowsR = 4, kRowsMR = 4;  // 16 accumulators + 4 weight vectors + 1 activation vector of 32 zmm

template <bool BF16, int MR>
void rowsM(const H16RowsArgs& a, const float* x, float* y) {
  int64_t n = 0;
  for (; n + kRowsR <= a.rows; n += kRowsR) rowsT<BF16, kRowsR, MR>(a.w + n * a.ldw, a.ldw, a.K, x, a.ldx, y + n, a.ldy);
  for (; n < a.rows; ++n) rowsT<BF16, 1, MR>(a.w + n * a.ldw, a.ldw, a.K, x, a.ldx, y + n, a.ldy);
}

/**
 * M = 7, 8: 2 rows × M activation rows in one pass (16 accumulators), each row read once
 * instead of twice (MR = 4 passes): M = 8 view / interleaved 0.85–1.10× against 0.78–1.06×
 * (eval/bench-rows16.ts --M 6,8, two alternating sittings); at M = 5, 6 no better than the passes.
 */
template <bool BF16, int MR>
void rowsWide(const H16RowsArgs& a) {
  int64_t n = 0;
  for (; n + 2 <= a.rows; n += 2) rowsT<BF16, 2, MR>(a.w + n * a.ldw, a.ldw, a.K, a.x, a.ldx, a.y + n, a.ldy);
  for (; n < a.rows; ++n) rowsT<BF16, 1, MR>(a.w + n * a.ldw, a.ldw, a.K, a.x, a.ldx, a.y + n, a.ldy);
}

template <bool BF16>
void rowsB(const H16RowsArgs& a) {
  if (a.M == 7) return rowsWide<BF16, 7>(a);
  if (a.M == 8) return rowsWide<BF16, 8>(a);
  for (int m0 = 0; m0 < a.M; m0 += kRowsMR) {
    const float* x = a.x + m0 * a.ldx;
    float* y = a.y + m0 * a.ldy;
    withRows<kRowsMR>(a.M - m0 < kRowsMR ? a.M - m0 : kRowsMR, [&](auto mr) { rowsM<BF16, decltype(mr)::value>(a, x, y); });
  }
}

void h16Rows(const H16RowsArgs& a) {
  if (a.type == H16Type::BF16) rowsB<true>(a);
  else rowsB<false>(a);
}

// ---------------------------------------------------------------- activations, probe

/** Lanes k .. k+15 that lie below k1 (masked loads read nothing, and give 0, past it). */
inline __mmask16 below(int64_t k, int64_t k1) {
  const int64_t n = k1 - k;
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

/**
 * As quantizeScalar (packed_scalar.cc), 16 lanes at a time; same f32 operations (max,
 * one multiply by 127/amax, round half even by the default MXCSR), same bits. Ba is a
 * multiple of 32, so a block is whole zmm; lanes past K load 0 and quantize to 0.
 */
void quantize(const float* x, int64_t K, int64_t Kp, int64_t Ba, int8_t* q, float* d, int32_t* sum) {
  for (int64_t b = 0; b * Ba < Kp; ++b) {
    const int64_t k0 = b * Ba, k1 = k0 + Ba < K ? k0 + Ba : K;
    __m512 vmax = _mm512_setzero_ps();
    for (int64_t k = k0; k < k0 + Ba; k += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(below(k, k1), x + k)));
    const float amax = _mm512_reduce_max_ps(vmax);
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    __m512i vs = _mm512_setzero_si512();
    for (int64_t k = k0; k < k0 + Ba; k += 16) {
      const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(below(k, k1), x + k), vid));
      vs = _mm512_add_epi32(vs, v);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm512_cvtsepi32_epi8(v));  // |v| ≤ 127
    }
    d[b] = amax / 127.0f;
    sum[b] = _mm512_reduce_add_epi32(vs);
  }
}

/** 4 streams, one 64-byte line (one zmm load) of each per step, xor-folded so nothing is dead. */
uint64_t readStreams(const uint8_t* const* s, size_t bytes) {
  __m512i a[4];
  for (int j = 0; j < 4; ++j) a[j] = _mm512_setzero_si512();
  for (size_t i = 0; i < bytes; i += 64)
    for (int j = 0; j < 4; ++j) a[j] = _mm512_xor_si512(a[j], _mm512_load_si512(s[j] + i));
  const __m512i v = _mm512_xor_si512(_mm512_xor_si512(a[0], a[1]), _mm512_xor_si512(a[2], a[3]));
  alignas(64) uint64_t out[8];
  _mm512_store_si512(out, v);
  uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r ^= out[i];
  return r;
}

}  // namespace
}  // namespace avx512

namespace {
// One line per entry, so that a tile written for this level replaces one line. The
// rows per call (mr*) belong to the tile in the same slot.
constexpr PackedKernels kAvx512 = {
    "avx512",
    avx512::kGemmMrQ4,  // mrQ4: avx512::gemmQ4's
    avx512::kGemmMrQ8,  // mrQ8: avx512::gemmQ8's
    2,                // mrF32: avx2::q4f / q8f's
    avx512::kMrH16,   // mrH16
    avx512::gemmQ4,   // int4 × int8-activation GEMM tile (packed_avx512_gemm.cc)
    avx512::gemmQ8,   // int8 × int8-activation GEMM tile (packed_avx512_gemm.cc)
    avx2::q4f,        // int4, f32 activations (the exact path)
    avx2::q8f,        // int8, f32 activations
    avx512::h16,
    avx512::quantize,
    avx512::readStreams,
    avx512::q4Span,
    avx512::q8Span,
    avx512::kSpanMaxM,  // spanMaxM: the spans run M = 1…8 (decode, batched decode)
    nullptr,            // q4Gemm: the AMX level's (packed_amx.cc)
    nullptr,            // q8Gemm
    0,                  // gemmMinM
    avx512::h16Rows,    // row-major 16-bit views, M ≤ 8 (row streams)
    avx2::h16Pack,      // row-major 16-bit views, larger M: row group → f16x16 panel (packed_avx2_rows.cc)
    8,                  // h16RowsMaxM
};
}  // namespace

const PackedKernels* packedKernelsAvx512() { return &kAvx512; }
}  // namespace qllm
#else
namespace qllm {
const PackedKernels* packedKernelsAvx512() { return nullptr; }  // not an x86 build
}  // namespace qllm
#endif

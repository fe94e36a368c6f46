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
};
}  // namespace

const PackedKernels* packedKernelsAvx512() { return &kAvx512; }
}  // namespace qllm
#else
namespace qllm {
const PackedKernels* packedKernelsAvx512() { return nullptr; }  // not an x86 build
}  // namespace qllm
#endif

// SIMD traits for AVX2 + FMA: 8 f32 lanes, 16 registers.
// Included by kernels_avx2.cc only, inside an anonymous namespace, after <immintrin.h>.

struct SimdAvx2 {
  static constexpr int W = 8;
  static constexpr int REGS = 16;
  using V = __m256;
  using M = __m256i;

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float a) { return _mm256_set1_ps(a); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  /** Mask of the first n lanes (n may be ≤ 0 or ≥ W). */
  static M mask(int64_t n) {
    static const int32_t kTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t c = n < 0 ? 0 : n > W ? W : n;
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTable + W - c));
  }
  static V load(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, V v, M m) { _mm256_maskstore_ps(p, m, v); }
  /** W f16 values (IEEE binary16 bits) widened to f32 (F16C). */
  static V loadH(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  /** W f32 values rounded to f16 bits, to nearest even (F16C imm 0). */
  static void storeH(uint16_t* p, V v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, 0)); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  /** a·b − c */
  static V fms(V a, V b, V c) { return _mm256_fmsub_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  /** Whether a lane of v is > t (= hmax(v) > t, without the horizontal reduction). */
  static bool anyGreater(V v, float t) { return _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(t), _CMP_GT_OQ)) != 0; }
  static float hmax(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  /** Lanes with index < r take `fill`. */
  static V fillBelow(V v, int64_t r, float fill) {
    return _mm256_blendv_ps(v, set1(fill), _mm256_castsi256_ps(mask(r)));
  }
  /** Lanes with index ≥ r take `fill`. */
  static V fillFrom(V v, int64_t r, float fill) { return _mm256_blendv_ps(set1(fill), v, _mm256_castsi256_ps(mask(r))); }

  /** In-place 8×8 transpose: r[i][j] → r[j][i]. */
  [[gnu::always_inline]] static void transpose(V* r) {
    V t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {  // u[i + c], lane L: column 4L + c of rows i..i+3
      u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
      u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c) {
      r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
      r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
  }

  /** exp(x) for x ≤ 0, −inf → 0; same Cephes scheme as SimdAvx512::exp. */
  static V exp(V x) {
    const V keep = _mm256_cmp_ps(x, set1(-87.3f), _CMP_GE_OQ);
    x = _mm256_max_ps(x, set1(-87.3f));
    const V n = _mm256_round_ps(_mm256_mul_ps(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    V p = set1(1.9875691500e-4f);
    p = fma(p, r, set1(1.3981999507e-3f));
    p = fma(p, r, set1(8.3334519073e-3f));
    p = fma(p, r, set1(4.1665795894e-2f));
    p = fma(p, r, set1(1.6666665459e-1f));
    p = fma(p, r, set1(5.0000001201e-1f));
    p = fma(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, set1(1.0f)));
    // 2^n for n ≥ -126 (guaranteed by the clamp above): build the exponent bits.
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
  }
};

// SIMD traits for AVX-512F: 16 f32 lanes, 32 registers.
// Included by kernels_avx512.cc only, inside an anonymous namespace, after <immintrin.h>.

struct SimdAvx512 {
  static constexpr int W = 16;
  static constexpr int REGS = 32;
  using V = __m512;
  using M = __mmask16;

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float a) { return _mm512_set1_ps(a); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  /** Mask of the first n lanes (n may be ≤ 0 or ≥ W). */
  static M mask(int64_t n) {
    return n >= W ? (M)0xFFFF : n <= 0 ? (M)0 : (M)((1u << n) - 1u);
  }
  static V load(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, V v, M m) { _mm512_mask_storeu_ps(p, m, v); }
  /** W f16 values (IEEE binary16 bits) widened to f32. */
  static V loadH(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  /** W f32 values rounded to f16 bits, to nearest even (vcvtps2ph imm 0). */
  static void storeH(uint16_t* p, V v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  /** a·b − c */
  static V fms(V a, V b, V c) { return _mm512_fmsub_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  static float hmax(V v) { return _mm512_reduce_max_ps(v); }
  /** Whether a lane of v is > t (= hmax(v) > t, without the horizontal reduction). */
  static bool anyGreater(V v, float t) { return _mm512_cmp_ps_mask(v, set1(t), _CMP_GT_OQ) != 0; }
  /** Lanes with index < r take `fill`. */
  static V fillBelow(V v, int64_t r, float fill) { return _mm512_mask_blend_ps(mask(r), v, set1(fill)); }
  /** Lanes with index ≥ r take `fill`. */
  static V fillFrom(V v, int64_t r, float fill) { return _mm512_mask_blend_ps(mask(r), set1(fill), v); }

  /** Lanes 2i, 2i + 1 = p[0], p[1] (a 64-bit broadcast: one load, no shuffle). */
  static V bcast2(const float* p) {
    double x;
    __builtin_memcpy(&x, p, sizeof x);
    return _mm512_castpd_ps(_mm512_set1_pd(x));
  }
  /** [a0 + a1, a2 + a3, …, a14 + a15, b0 + b1, …, b14 + b15]: adjacent lanes of a, then b, summed. */
  static V pairSum(V a, V b) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_add_ps(_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b));
  }

  /** In-place 16×16 transpose: r[i][j] → r[j][i] (unpack, 64-bit shuffle, two 128-bit lane shuffles). */
  [[gnu::always_inline]] static void transpose(V* r) {
    V t[16];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // r[i + c], lane L: column 4L + c of rows i..i+3
      r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
      r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
      r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int h = 0; h < 16; h += 8) {
      for (int c = 0; c < 4; ++c) {
        t[h + c] = _mm512_shuffle_f32x4(r[h + c], r[h + 4 + c], 0x88);
        t[h + 4 + c] = _mm512_shuffle_f32x4(r[h + c], r[h + 4 + c], 0xDD);
      }
    }
    for (int c = 0; c < 8; ++c) {
      r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
      r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    }
  }

  /**
   * exp(x) for x ≤ 0 (softmax arguments), −inf → 0. Cephes expf: x = n·ln2 + r,
   * |r| ≤ ln2/2, degree-6 polynomial, ≈ 2 ulp. Results below FLT_MIN flush to 0
   * so that masked and negligible keys never produce denormals.
   */
  static V exp(V x) {
    const M keep = _mm512_cmp_ps_mask(x, set1(-87.3f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, set1(-87.3f));
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    V p = set1(1.9875691500e-4f);
    p = fma(p, r, set1(1.3981999507e-3f));
    p = fma(p, r, set1(8.3334519073e-3f));
    p = fma(p, r, set1(4.1665795894e-2f));
    p = fma(p, r, set1(1.6666665459e-1f));
    p = fma(p, r, set1(5.0000001201e-1f));
    p = fma(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, set1(1.0f)));
    return _mm512_maskz_scalef_ps(keep, p, n);
  }
};

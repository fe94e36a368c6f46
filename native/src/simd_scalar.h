// SIMD traits for the portable fallback: one f32 "lane". The generic kernels
// compile to plain scalar loops (which the compiler may still auto-vectorise for
// the baseline ISA). Included by kernels_scalar.cc only, after <math.h>.

struct SimdScalar {
  static constexpr int W = 1;
  static constexpr int REGS = 16;
  using V = float;
  using M = bool;

  static V zero() { return 0.0f; }
  static V set1(float a) { return a; }
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static M mask(int64_t n) { return n > 0; }
  static V load(const float* p, M m) { return m ? *p : 0.0f; }
  static void store(float* p, V v, M m) { if (m) *p = v; }
  static V loadH(const uint16_t* p) { return halfToFloat(*p); }
  static void storeH(uint16_t* p, V v) { *p = floatToHalf(v); }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V fms(V a, V b, V c) { return a * b - c; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V max(V a, V b) { return a > b ? a : b; }
  static V min(V a, V b) { return a < b ? a : b; }
  static V div(V a, V b) { return a / b; }
  static float hsum(V v) { return v; }
  static float hmax(V v) { return v; }
  static bool anyGreater(V v, float t) { return v > t; }
  static V fillBelow(V v, int64_t r, float fill) { return r > 0 ? fill : v; }
  /** Lanes with index ≥ r take `fill`. */
  static V fillFrom(V v, int64_t r, float fill) { return r > 0 ? v : fill; }
  static void transpose(V*) {}
  static V exp(V x) { return expf(x); }
};

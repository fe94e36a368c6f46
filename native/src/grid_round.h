// f16 rounding of grid scales and the GPTQ grid, shared by the GPTQ lanes (gptq_rows.h), the AWQ
// kernels (awq.cc) and RTN (convert_impl.h): toF16 of src/methods/grid.ts, bit for bit. Internal linkage on
// purpose: the per-SIMD-level files compile these with different target flags, and a
// shared inline copy could hand AVX-512 code to a CPU without it.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace qllm {
namespace {

inline float f16BitsToF32(uint32_t h) {
  const float s = (h & 0x8000) ? -1.0f : 1.0f;
  const int e = static_cast<int>((h >> 10) & 0x1f);
  const int m = static_cast<int>(h & 0x3ff);
  if (e == 0) return s * static_cast<float>(ldexp(static_cast<double>(m), -24));
  if (e == 31) return m ? __builtin_nanf("") : s * __builtin_inff();
  return s * static_cast<float>(ldexp(1.0 + m / 1024.0, e - 15));
}

/** f64 → f32 → f16 (round to nearest even) → f32: toF16 of src/methods/grid.ts. */
inline float roundToF16(double x) {
  const float f = static_cast<float>(x);
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  const uint32_t sign = (bits >> 16) & 0x8000;
  const int exp = static_cast<int>((bits >> 23) & 0xff);
  uint32_t mant = bits & 0x7fffff;
  if (exp == 0xff) return f16BitsToF32(sign | 0x7c00 | (mant ? 0x200 : 0));
  const int e = exp - 127 + 15;
  if (e >= 31) return f16BitsToF32(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return f16BitsToF32(sign);
    mant |= 0x800000;
    const int shift = 14 - e;
    const uint32_t half = 1u << (shift - 1);
    const uint32_t rest = mant & ((1u << shift) - 1);
    uint32_t h = mant >> shift;
    if (rest > half || (rest == half && (h & 1))) h++;
    return f16BitsToF32(sign | h);
  }
  const uint32_t rest = mant & 0x1fff;
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
  return f16BitsToF32(sign | h);
}

constexpr double kRneShift = 6755399441055744.0;  // 1.5·2^52: (t + s) − s rounds |t| < 2^51 to nearest even

/** gptqGrid of src/methods/grid.ts for a group with min lo and max hi. */
inline void gptqGrid(float lo, float hi, int maxq, bool sym, float* scale, int* zero) {
  double xmin = lo < 0.0f ? static_cast<double>(lo) : 0.0;
  double xmax = hi > 0.0f ? static_cast<double>(hi) : 0.0;
  if (sym) {
    xmax = -xmin > xmax ? -xmin : xmax;
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  float s = roundToF16((xmax - xmin) / maxq);
  if (s == 0.0f) s = 0x1p-24f;  // range below f16 resolution: the smallest subnormal keeps codes finite
  *scale = s;
  if (sym) {
    *zero = (maxq + 1) / 2;
  } else {
    const double z = nearbyint(-xmin / s);
    *zero = z < 0 ? 0 : z > maxq ? maxq : static_cast<int>(z);
  }
}

}  // namespace
}  // namespace qllm

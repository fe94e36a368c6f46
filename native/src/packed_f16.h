// IEEE binary16 and bfloat16 <-> f32 in portable code: the scalar reference reads
// f16 scales and 16-bit weights with these; the packer uses floatToHalf to decide
// whether a matrix's scales are exactly representable in f16 (packed_pack.cc).
#pragma once
#include <cstdint>
#include <cstring>

namespace qllm {

inline float bitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint32_t floatToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0x1f) return bitsToFloat(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp != 0) return bitsToFloat(sign | ((exp + 112) << 23) | (man << 13));
  // subnormal: man · 2^-24
  const float v = static_cast<float>(man) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

/** Round-to-nearest-even f32 → f16 (overflow → inf), as F16C's vcvtps2ph with imm 0. */
inline uint16_t floatToHalf(float f) {
  const uint32_t u = floatToBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  const uint32_t au = u & 0x7fffffffu;
  if (au >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00 | (au > 0x7f800000u ? 0x200 : 0));
  if (au >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to ≥ 65520: inf
  if (au < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    const float a = bitsToFloat(au) * 16777216.0f;  // exact scaling by 2^24
    const uint32_t m = static_cast<uint32_t>(__builtin_nearbyintf(a));
    return static_cast<uint16_t>(sign | m);  // m ≤ 0x400 (rounding up into the normal range is right)
  }
  const uint32_t mant = au & 0x7fffff, exp = (au >> 23) - 112;
  uint32_t h = (exp << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

inline float bf16ToFloat(uint16_t b) { return bitsToFloat(static_cast<uint32_t>(b) << 16); }

}  // namespace qllm

// Portable level of the conversion kernels (convert.h): plain C++, the reference the
// faster levels are tested against (test/native/convert.test.ts).
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "convert.h"
#include "grid_round.h"
#include "packed_f16.h"

namespace qllm {
namespace {

/** toF32 of src/tensor/dtype.ts: BF16 keeps its bits; F16 NaN becomes the canonical +NaN, as f16ToF32 returns it. */
void decode(const uint16_t* src, WType t, int64_t n, float* out) {
  if (t == WType::BF16) {
    for (int64_t i = 0; i < n; ++i) out[i] = bf16ToFloat(src[i]);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = src[i];
    out[i] = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0 ? bitsToFloat(0x7fc00000u) : halfToFloat(h);
  }
}

int64_t encodeF16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    if (fabsf(x[i]) > 65504.0f) return i;
    out[i] = floatToHalf(x[i]);  // RNE; NaN → sign | 0x7e00 (f32ToF16 of dtype.ts)
  }
  return -1;
}

#include "convert_impl.h"

void q4_0Row(const float* x, int64_t K, uint8_t* out) { q4_0RowImpl(x, K, out); }
void q8_0Row(const float* x, int64_t K, uint8_t* out) { q8_0RowImpl(x, K, out); }
void rtnRow(const RtnRowArgs& a) { rtnRowImpl(a, rtnGroup); }

constexpr ConvertKernels kTable{"scalar", &decode, &encodeF16, &q4_0Row, &q8_0Row, &rtnRow};
}  // namespace

const ConvertKernels* convertScalar() { return &kTable; }
}  // namespace qllm

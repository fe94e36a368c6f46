// AVX2 packed tiles (placeholder until the SIMD tiles land: the scalar reference serves).
#include "packed.h"

namespace qllm {
const PackedKernels* packedKernelsAvx2() { return nullptr; }
}  // namespace qllm

// AVX-512F level. binding.gyp compiles this file alone with -mavx512f (and AVX2,
// FMA); the dispatcher only selects it when the CPU reports avx512f (dispatch.cc).
#include <stdint.h>

#include "kernels.h"
#include "packed_f16.h"

#if defined(__AVX512F__)
// GCC 12's avx512fintrin.h self-initialises `__Y = __Y` in _mm512_undefined_ps,
// which -Wall reports at every inlined reduction: a known false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace qllm {
namespace {
#include "simd_avx512.h"
#include "kernel_impl.h"

// 12×32 tile: 24 zmm accumulators + 2 B vectors + broadcasts of the 32 registers.
constexpr KernelTable kTable = makeTable<SimdAvx512, 12, 2>("avx512", 256);
}  // namespace

const KernelTable* kernelsAvx512() { return &kTable; }
}  // namespace qllm
#else
namespace qllm {
const KernelTable* kernelsAvx512() { return nullptr; }  // not an x86 build
}  // namespace qllm
#endif

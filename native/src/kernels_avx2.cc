// AVX2 + FMA level. binding.gyp compiles this file alone with -mavx2 -mfma; the
// dispatcher only selects it when the CPU reports both (dispatch.cc).
#include <stdint.h>

#include "kernels.h"
#include "packed_f16.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace qllm {
namespace {
#include "simd_avx2.h"
#include "kernel_impl.h"

// 6×16 tile: 12 ymm accumulators + 2 B vectors + 1 broadcast of the 16 registers.
constexpr KernelTable kTable = makeTable<SimdAvx2, 6, 2>("avx2", 256);
}  // namespace

const KernelTable* kernelsAvx2() { return &kTable; }
}  // namespace qllm
#else
namespace qllm {
const KernelTable* kernelsAvx2() { return nullptr; }  // not an x86 build
}  // namespace qllm
#endif

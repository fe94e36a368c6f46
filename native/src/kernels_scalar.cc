// Portable level: plain C++ compiled with the default flags of the platform.
#include <math.h>
#include <stdint.h>

#include "kernels.h"
#include "packed_f16.h"

namespace qllm {
namespace {
#include "simd_scalar.h"
#include "kernel_impl.h"

// 4×4 register tile of scalars; K block 256.
constexpr KernelTable kTable = makeTable<SimdScalar, 4, 4>("scalar", 256);
}  // namespace

const KernelTable* kernelsScalar() { return &kTable; }
}  // namespace qllm

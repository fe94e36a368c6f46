// AVX-512F level of the GPTQ lane kernel (gptq_rows.h): compiled in the
// qllm_kernels_avx512 library with its flags; 16 rows = one zmm per column.
#include <stdint.h>

#include "gptq.h"

#if defined(__AVX512F__)
#include <math.h>
#include <string.h>

#include "grid_round.h"

namespace qllm {
namespace {
#include "gptq_rows.h"

constexpr GptqRowKernel kRows{"avx512", 16, &gptqBlockLanes<16>};
}  // namespace

const GptqRowKernel* gptqRowsAvx512() { return &kRows; }
}  // namespace qllm
#else
namespace qllm {
const GptqRowKernel* gptqRowsAvx512() { return nullptr; }  // not an x86 build
}  // namespace qllm
#endif

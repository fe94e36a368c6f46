// AVX2 + FMA level of the GPTQ lane kernel (gptq_rows.h): compiled in the
// qllm_kernels_avx2 library with its flags; 8 rows = one ymm per column.
#include <stdint.h>

#include "gptq.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <math.h>
#include <string.h>

#include "grid_round.h"

namespace qllm {
namespace {
#include "gptq_rows.h"

constexpr GptqRowKernel kRows{"avx2", 8, &gptqBlockLanes<8>};
}  // namespace

const GptqRowKernel* gptqRowsAvx2() { return &kRows; }
}  // namespace qllm
#else
namespace qllm {
const GptqRowKernel* gptqRowsAvx2() { return nullptr; }  // not an x86 build
}  // namespace qllm
#endif

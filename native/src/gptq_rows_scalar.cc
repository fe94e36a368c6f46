// Portable level of the GPTQ lane kernel (gptq_rows.h): plain C++ with the
// platform's default flags (SSE2 on x86-64), 8 rows per call.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gptq.h"

#include "grid_round.h"

namespace qllm {
namespace {
#include "gptq_rows.h"

constexpr GptqRowKernel kRows{"scalar", 8, &gptqBlockLanes<8>};
}  // namespace

const GptqRowKernel* gptqRowsScalar() { return &kRows; }
}  // namespace qllm

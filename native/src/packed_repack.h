// Direct repackers (packed_repack.cc): stored quantized bytes → packed.h layouts, on the
// pool. Inputs are trusted (shapes validated in src/backend/native.ts).
#pragma once
#include <cstdint>

#include "packed.h"

namespace qllm {

struct Runtime;

/** What the stored bytes are (src/backend/backend.ts SourceBlocks). */
enum class RepackSource : int32_t { GptqQ4 = 0, GptqQ8 = 1, AwqQ4 = 2, Q4_0 = 3, Q4_1 = 4, Q4_K = 5, Q8_0 = 6 };

struct RepackArgs {
  RepackSource src;
  const uint8_t* data;    // GPTQ qweight [K·b/32, N] / AWQ qweight [K, N/8] (int32 LE words), or the GGUF blocks of [N, K]
  const uint8_t* qzeros;  // GPTQ [G, N·b/32] / AWQ [G, N/8] int32 words; null for GGUF
  const uint8_t* scales;  // GPTQ / AWQ f16 [G, N]; null for GGUF
  const int32_t* perm;    // GPTQ act-order [K] (x'[k] = x[perm[k]]) or null
  const int32_t* rows;    // GGUF: layout row n = stored row rows[n] (llama Q/K rows back in HF order), or null
  int64_t N, K, g;        // g: the group size (K for one group per row)
  int32_t zeroAdd;        // GPTQ v1: 1 (the checkpoint stores zero − 1), else 0
};

enum class RepackStatus : int32_t { Ok = 0, OutOfMemory = 1, Unsupported = 2, NonFiniteScale = 3, NonFiniteMin = 4 };

struct RepackResult {
  PackedWeight* w = nullptr;
  RepackStatus status = RepackStatus::Ok;
  int64_t index = -1;  // NonFinite*: the first bad value's index in the canonical [N, G] order
};

/**
 * The same PackedWeight that packQ4 / packQ8 build from the canonical form of the source
 * (byte for byte). Unsupported: an 8-bit GPTQ whose zeros are not all 128 (the TS path
 * packs it as two planes).
 */
RepackResult repackSource(Runtime& rt, const RepackArgs& a);

}  // namespace qllm

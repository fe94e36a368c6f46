// Per-weight conversions of the paths that touch every weight once (issue 10): reading
// 16-bit checkpoints, RTN, GGUF export. Each is a row kernel per SIMD level (one table per
// level, convert_<level>.cc around the generic convert_impl.h) driven over row chunks on
// the pool by convert.cc. The numerics are those of the TypeScript references, bit for bit:
//
//   decode      src/tensor/dtype.ts toF32 (BF16 / F16 → f32)
//   encodeRow   fromF32 (f32 → F16 RNE, NaN → sign|0x7e00; → F32), plus the |x| ≤ 65504 check
//               of src/export/gguf.ts
//   q4_0/q8_0   quantize_row_q4_0_ref / quantize_row_q8_0_ref (src/pack/gguf-blocks.ts)
//   rtnRow      src/methods/rtn.ts: grid per group from min/max (f64, scale → f32 → f16),
//               codes = clamp(RNE(x / s) + z) with the quotient in f64; the row's
//               Σ(x − s·(q − z))² and Σx² in f64 with 4 interleaved sums (element k into
//               sum k mod 4, then (s0 + s1) + (s2 + s3)): the same order at every level
#pragma once
#include <stdint.h>

namespace qllm {

struct Runtime;

/** Element types of a source or destination tensor (src/backend/backend.ts WeightDType). */
enum class WType : int { F32 = 0, F16 = 1, BF16 = 2 };

/** RTN of one row: K weights (f32, decoded), groups of g. */
struct RtnRowArgs {
  const float* x;  // [K]
  int64_t K, g;
  int maxq;
  bool sym;
  uint8_t* codes;  // [K]
  float* scales;   // [G]
  uint8_t* zeros;  // [G]
  double* err;     // [2]: Σ(x − dq)², Σx²
};

struct ConvertKernels {
  const char* level;
  /** out[i] = f32 of the n 16-bit values src[i] (F16 or BF16). */
  void (*decode)(const uint16_t* src, WType t, int64_t n, float* out);
  /** n f32 → F16 bits (RNE; NaN → sign|0x7e00); returns the first i with |x[i]| > 65504, or −1. */
  int64_t (*encodeF16)(const float* x, int64_t n, uint16_t* out);
  /** K % 32 == 0: one row of Q4_0 (18 B / 32) or Q8_0 (34 B / 32) blocks. */
  void (*q4_0Row)(const float* x, int64_t K, uint8_t* out);
  void (*q8_0Row)(const float* x, int64_t K, uint8_t* out);
  void (*rtnRow)(const RtnRowArgs& a);
};

const ConvertKernels* convertScalar();
const ConvertKernels* convertAvx2();  // null when not compiled in
/** The table for a KernelTable level name (avx512 runs the avx2 table). */
const ConvertKernels& convertKernelsFor(const char* level);

// Drivers (convert.cc): row chunks on the pool. `rows` (or null) gives the source row of each
// destination row (the llama Q/K permutation); src is F32, F16 or BF16 [*, K].
/** dst [N, K] in F32 or F16; returns the first flat destination index with |x| > 65504 when dst is F16, else −1. */
int64_t convertRows(Runtime& rt, const void* src, WType st, const int32_t* rows, int64_t N, int64_t K, void* dst, WType dt);
/** type 0 = Q4_0, 1 = Q8_0; out [N, K/32 blocks]. */
void ggmlQuantizeRows(Runtime& rt, const void* src, WType st, const int32_t* rows, int64_t N, int64_t K, int type, uint8_t* out);
/** RTN of [N, K]; err[2] = (Σ rows Σ(x − dq)², Σ rows Σx²) summed over rows in order; returns the first non-finite flat index or −1. */
int64_t rtnQuantize(Runtime& rt, const void* src, WType st, int64_t N, int64_t K, int bits, int64_t g, bool sym,
                    uint8_t* codes, float* scales, uint8_t* zeros, double* err);
/** HF-GPTQ qweight [K·bits/32, N] from codes [N, K] (bits 2, 4, 8). */
void gptqPackCodes(Runtime& rt, const uint8_t* codes, int64_t N, int64_t K, int bits, int32_t* qweight);

}  // namespace qllm

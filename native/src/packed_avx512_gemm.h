// AVX-512 VNNI int8-activation GEMM tiles (packed_avx512_gemm.cc, compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni): the q4 / q8 entries of the AVX-512
// packed kernel table. A row group (16 rows) is one zmm: each 64-byte chunk is
// 16 rows × 4 k, the u8 operand of one `vpdpbusd` against 4 broadcast s8
// activations (native/LAYOUTS.md).
#pragma once
#include "packed.h"

namespace qllm {
namespace avx512 {

/** Activation rows per tile call the tiles are fastest at (the table's mrQ4 / mrQ8). */
#ifndef QLLM_GEMM_MR
#define QLLM_GEMM_MR 8
#endif
constexpr int kGemmMrQ4 = QLLM_GEMM_MR;
constexpr int kGemmMrQ8 = QLLM_GEMM_MR;

/** t.mr (1…kGemmMrQ4) rows × one row group over all of K; bit-equal to packed_scalar.cc. */
void gemmQ4(const PackedTileArgs& t);
void gemmQ8(const PackedTileArgs& t);

}  // namespace avx512

}  // namespace qllm

// The packers' building blocks (packed_pack.cc), shared with the direct repackers
// (packed_repack.cc) so that both produce the same bytes: the arena, the f16-or-f32
// scale decision, the layout plan, the scale block of a row group, the perm copy.
#pragma once
#include <cstddef>
#include <cstdint>

#include "packed.h"

namespace qllm {
namespace packbuild {

/** 64-byte aligned, zeroed memory for `bytes` (2 MiB-aligned huge-page arena from 1 MiB); sets w.data, w.bytes, w.mapBytes. */
bool allocData(PackedWeight& w, size_t bytes);
/** 2 (f16) when every value of a (and b, when given) is exactly an f16, else 4. */
int32_t scaleBytesFor(const float* a, size_t n, const float* b);
/** Shape, activation block, strides of an int4 (bytesPerSub 256) / int8 (512) layout; L.kind, L.mins, L.scaleBytes first. */
void planQuant(PackedLayout& L, int64_t N, int64_t K, int64_t g, int64_t bytesPerSub);
/** Writes the scales (and mins) [N, G] of row group rg after its codes. */
void writeScales(const PackedLayout& L, uint8_t* rgp, int64_t rg, const float* scales, const float* mins);
/** Copies perm (when given) into w; frees w and returns null when that allocation fails. */
PackedWeight* finish(PackedWeight* w, const int32_t* perm);

}  // namespace packbuild
}  // namespace qllm

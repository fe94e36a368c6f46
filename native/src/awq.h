// AWQ search kernels (ALGORITHMS.md §3; the specification is src/methods/awq-grid.ts
// awqScaledFakeQuantize and src/methods/awq-clip.ts awqClipSearchLayer, which these
// reproduce bit for bit; test/native-async.test.ts, test/quant/awq-native.test.ts):
//
//   awqFakeQuantize  out[n, k] = Q(w[n, k]·s[k]) / s[k] on the AWQ grid (one scale
//                    candidate of the scale search; s = null: plain Q(w))
//   awqClipSearch    the per-(row, group) clip threshold search (AutoAWQ
//                    `_compute_best_clip`), GEMMs through the matmul driver
//
// Arguments are trusted: src/backend/native.ts validates them.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "control.h"

namespace qllm {

struct Runtime;

/** w, out [N, K] (out may be w); s [K] or null; groups of g along K (g divides K). */
void awqFakeQuantize(Runtime& rt, const float* w, const float* s, int64_t N, int64_t K, int bits, int64_t g, float* out);

/** Clip candidates: max_val = amax·(1 − i/kAwqClipGrid) for i < kAwqClipSteps (awq-clip.ts AWQ_CLIP_GRID / AWQ_CLIP_STEPS). */
constexpr int kAwqClipGrid = 20;
constexpr int kAwqClipSteps = 10;

/**
 * maxVal [N, K/g] = the best clip threshold of every (row, group) of w [N, K] for
 * the sampled inputs x [T, K]: the candidate minimising mean_t (x_G,t·w_G −
 * x_G,t·Q(clamp(w_G, ±max_val)))², no clip (amax) unless one is strictly better.
 * Cancellable between groups; one progress unit per group.
 */
void awqClipSearch(Runtime& rt, const float* w, const float* x, int64_t N, int64_t K, int64_t T, int bits, int64_t g,
                   float* maxVal, const CallControl* ctl = nullptr);

}  // namespace qllm

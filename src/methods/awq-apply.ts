/**
 * Apply an AWQ search result to a block's f32 weights, in place (ALGORITHMS.md §3.3–4;
 * AutoAWQ `scale.py` `apply_scale` / `apply_clip`). Both functions are pure data
 * transforms: no calibration data, no search.
 *
 * Scales: for each group with scale vector s [K] —
 *   previous op:   norm weight[j] /= s[j]                 (`scale_ln_fcs`)
 *                  or previous linear W_p[j, :] /= s[j], b_p[j] /= s[j]   (`scale_fc_fc`)
 *   scaled layers: W[:, j] *= s[j]  (input columns)
 * The function the block computes is unchanged in exact arithmetic: the layers see
 * (x / s) · (W·diag(s))ᵀ = x·Wᵀ. RMSNorm is linear in its weight, attention is linear
 * in v and silu(gate)·up is linear in up, so the division passes straight through.
 *
 * Clip: W[n, k] = clamp(W[n, k], −maxVal[n, k/g], +maxVal[n, k/g]).
 * Apply the scales first, then the clip (the thresholds were searched on scaled weights).
 */
import type { ModelConfig } from "../arch/config.ts";
import type { LinearName } from "../arch/registry.ts";
import { type BlockWeights } from "../nn/weights.ts";
import { linearShapes } from "../arch/shapes.ts";
import { UsageError } from "../util/errors.ts";
import type { AwqBlockSearch } from "./awq-types.ts";

function mismatch(what: string, expected: string, found: string): UsageError {
  return new UsageError(`AWQ search result does not fit this model: ${what}`, {
    expected, found, hint: "the search was made for another model or other settings; search again or pass the matching --load-search file",
  });
}

/** Fold the scales of `search` into `w` (in place). */
export function applyAwqScales(cfg: ModelConfig, w: BlockWeights, search: Pick<AwqBlockSearch, "block" | "scales">): void {
  const shapes = linearShapes(cfg);
  for (const g of search.scales) {
    const s = g.scales;
    const K = s.length;
    for (const n of g.layers) {
      if (shapes[n][1] !== K) throw mismatch(`block ${search.block}: ${K} scales for ${n}_proj`, `${shapes[n][1]} (its in_features)`, String(K));
    }
    // Previous op: divide its output by s.
    if (g.prev === "attnNorm" || g.prev === "mlpNorm") {
      const norm = w[g.prev]; // [H]
      if (norm.length !== K) throw mismatch(`block ${search.block}: ${K} scales for ${g.prev}`, String(norm.length), String(K));
      for (let j = 0; j < K; j++) norm[j] = norm[j]! / s[j]!;
    } else {
      const p = w.linears[g.prev];
      if (p.N !== K) throw mismatch(`block ${search.block}: ${K} scales for the output of ${g.prev}_proj`, `${p.N} (its out_features)`, String(K));
      for (let j = 0; j < K; j++) {
        const r = s[j]!;
        for (let k = 0; k < p.K; k++) p.weight[j * p.K + k] = p.weight[j * p.K + k]! / r;
        if (p.bias) p.bias[j] = p.bias[j]! / r;
      }
    }
    // Scaled layers: multiply their input columns by s.
    for (const n of g.layers as LinearName[]) {
      const l = w.linears[n];
      for (let r = 0; r < l.N; r++) for (let j = 0; j < K; j++) l.weight[r * K + j] = l.weight[r * K + j]! * s[j]!;
    }
  }
}

/** Clamp each (row, group) of the clipped layers to ±maxVal (in place). */
export function applyAwqClip(w: BlockWeights, search: Pick<AwqBlockSearch, "block" | "clips">): void {
  for (const c of search.clips) {
    const l = w.linears[c.layer];
    if (l.N !== c.N || l.K !== c.G * c.groupSize || c.maxVal.length !== c.N * c.G) {
      throw mismatch(`block ${search.block}: clip thresholds of ${c.layer}_proj`, `[${l.N}, K/g] for a [${l.N}, ${l.K}] weight`, `[${c.N}, ${c.G}] with group size ${c.groupSize}`);
    }
    const { K } = l, g = c.groupSize;
    for (let n = 0; n < l.N; n++) {
      for (let k = 0; k < K; k++) {
        const mv = c.maxVal[n * c.G + Math.floor(k / g)]!;
        const v = l.weight[n * K + k]!;
        l.weight[n * K + k] = v > mv ? mv : v < -mv ? -mv : v;
      }
    }
  }
}

/**
 * AWQ clip search (AutoAWQ `quantizer.py` `_search_best_clip`, `_compute_best_clip`;
 * llm-awq `auto_clip.py` `auto_clip_layer`; ALGORITHMS.md §3), step 2 of the search of
 * one block (awq.ts), run on the SCALED weights:
 *   per (output row n, group G) try max_val = amax·(1 − i/20), i < 10, and keep the one
 *   minimising mean_t (x_G,t · w_G − x_G,t · Q(clamp(w_G, ±max_val)))² over ≈512 tokens.
 * The tokens (awq.ts `clipSampling`): "random" (sampleTokens), a seeded random sample
 * (AWQ_CLIP_SEED) of all calibration tokens; or "stride" (strideTokens), llm-awq's and
 * AutoAWQ's `input_feat[:, 0::T // 512]` (every ⌊T/512⌋-th token from token 0), which
 * aliases with the sequence length when the windows are many (128×512 tokens → only
 * positions 0, 128, 256, 384 of each).
 *
 * `awqClipSearchLayer` is the TypeScript specification; `awqClipSearch` runs the
 * backend's native kernel (native/src/awq.cc, bit-identical on the same GEMM) when it
 * has one, off the JS thread, and the specification otherwise (`--backend ref`).
 * Cost: 11·T·N·K multiply-adds (10 candidates + the unclipped output) per layer.
 */
import type { LinearName } from "../arch/registry.ts";
import type { Backend, KernelCallOptions } from "../backend/backend.ts";
import { groupLength } from "../tensor/quantized.ts";
import { invariant } from "../util/errors.ts";
import { mulberry32 } from "../util/random.ts";
import { awqFakeQuantizeGroup } from "./awq-grid.ts";

/** Clip candidates: max_val = amax·(1 − i/20) for i < 10 (AutoAWQ `n_grid=20, max_shrink=0.5`). */
export const AWQ_CLIP_GRID = 20;
export const AWQ_CLIP_STEPS = 10;
/** Tokens sampled for the clip search (AutoAWQ `n_sample_token=512`). */
export const AWQ_CLIP_TOKENS = 512;
/** Seed of the clip-token sample, so a search is reproducible. */
export const AWQ_CLIP_SEED = 1;
/** Layers never clipped: "due to qk bmm, it is hard to clip precisely" (AutoAWQ `avoid_clipping`). */
export const AWQ_NO_CLIP: readonly LinearName[] = ["q", "k"];

export interface AwqClipLayerOptions {
  backend: Backend;
  /** [N, K] the (already scaled) weight */
  weight: Float32Array;
  N: number;
  K: number;
  /** [T, K] sampled input rows (already divided by the scales, like the scaled model sees them) */
  x: Float32Array;
  T: number;
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
}

/** Best clip threshold per (row, group) → maxVal [N, G] (AutoAWQ `_compute_best_clip`). The specification. */
export function awqClipSearchLayer(o: AwqClipLayerOptions): Float32Array {
  const { backend, weight: W, N, K, x, T, bits } = o;
  const g = groupLength(o.groupSize, K);
  invariant(K % g === 0, () => `group size ${g} does not divide ${K}`);
  invariant(T >= 1, "the clip search needs at least one token");
  const G = K / g;
  const maxVal = new Float32Array(N * G); // [N, G]
  const Xg = new Float32Array(T * g); // [T, g] this group's input columns
  const Wg = new Float32Array(N * g); // [N, g] this group's weights
  const Qg = new Float32Array(N * g); // [N, g] clamped + fake-quantized
  const cur = new Float32Array(T * N); // [T, N]
  const amax = new Float32Array(N); // [N]
  const bestErr = new Float64Array(N); // [N]
  for (let gi = 0; gi < G; gi++) {
    const k0 = gi * g;
    for (let t = 0; t < T; t++) Xg.set(x.subarray(t * K + k0, t * K + k0 + g), t * g);
    for (let n = 0; n < N; n++) {
      Wg.set(W.subarray(n * K + k0, n * K + k0 + g), n * g);
      let a = 0;
      for (let j = 0; j < g; j++) a = Math.max(a, Math.abs(Wg[n * g + j]!));
      amax[n] = a;
    }
    const org = backend.matmul(Xg, Wg, T, g, N); // [T, N] partial outputs x_G · w_G
    bestErr.fill(Infinity);
    for (let n = 0; n < N; n++) maxVal[n * G + gi] = amax[n]!; // no clip unless a candidate is strictly better
    for (let i = 0; i < AWQ_CLIP_STEPS; i++) {
      for (let n = 0; n < N; n++) {
        const mv = Math.fround(amax[n]! * (1 - i / AWQ_CLIP_GRID));
        for (let j = 0; j < g; j++) { const v = Wg[n * g + j]!; Qg[n * g + j] = v > mv ? mv : v < -mv ? -mv : v; }
        awqFakeQuantizeGroup(Qg, n * g, g, bits, Qg, n * g);
      }
      backend.matmul(Xg, Qg, T, g, N, undefined, cur);
      for (let n = 0; n < N; n++) {
        let e = 0;
        for (let t = 0; t < T; t++) { const d = cur[t * N + n]! - org[t * N + n]!; e += d * d; }
        e /= T;
        if (e < bestErr[n]!) { bestErr[n] = e; maxVal[n * G + gi] = Math.fround(amax[n]! * (1 - i / AWQ_CLIP_GRID)); }
      }
    }
  }
  return maxVal;
}

/**
 * awqClipSearchLayer on the backend's AWQ kernel when it has one (same thresholds: the
 * kernel's GEMMs are the backend's matmul, test/quant/awq-native.test.ts), else the
 * specification itself. Aborting `opts.signal` stops the kernel between groups.
 */
export async function awqClipSearch(o: AwqClipLayerOptions, opts: KernelCallOptions = {}): Promise<Float32Array> {
  const { backend } = o;
  if (!backend.awqClipSearch) return awqClipSearchLayer(o);
  const g = groupLength(o.groupSize, o.K);
  const maxVal = new Float32Array(o.N * (o.K / g)); // [N, G]
  await backend.awqClipSearch(o.weight, o.x, o.N, o.K, o.T, o.bits, g, maxVal, opts);
  return maxVal;
}

/** `count` distinct token indices out of `total`, seeded, ascending (all of them when total ≤ count). */
export function sampleTokens(total: number, count: number, seed: number): Int32Array {
  const idx = Int32Array.from({ length: total }, (_, i) => i);
  if (total <= count) return idx;
  const rand = mulberry32(seed);
  for (let i = 0; i < count; i++) { // partial Fisher–Yates
    const j = i + Math.floor(rand() * (total - i));
    const t = idx[i]!; idx[i] = idx[j]!; idx[j] = t;
  }
  return idx.slice(0, count).sort();
}

/** llm-awq `auto_clip_layer`: token indices 0, s, 2s, … < total with s = ⌊total / count⌋ (1 when total < count). */
export function strideTokens(total: number, count: number): Int32Array {
  const step = Math.max(1, Math.floor(total / count));
  return Int32Array.from({ length: Math.ceil(total / step) }, (_, i) => i * step);
}

/** Rows `tokens` (global index = sample·T + position) of per-sample X [T, K] → [n, K]. */
export function gatherRows(X: readonly Float32Array[], T: number, K: number, tokens: Int32Array): Float32Array {
  const out = new Float32Array(tokens.length * K);
  tokens.forEach((tok, r) => {
    const x = X[Math.floor(tok / T)]!;
    const t = tok % T;
    out.set(x.subarray(t * K, (t + 1) * K), r * K);
  });
  return out;
}

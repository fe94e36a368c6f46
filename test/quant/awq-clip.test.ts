import { describe, expect, it } from "vitest";
import { refBackend } from "../../src/backend/ref.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { AWQ_CLIP_GRID, AWQ_CLIP_STEPS, awqClipSearchLayer, sampleTokens, strideTokens } from "../../src/methods/awq-clip.ts";
import { awqGrid } from "../../src/methods/awq-grid.ts";
import { randn } from "../helpers/random-weights.ts";

const N = 4, K = 64, g = 32, G = 2, T = 256;

/** Inputs [T, K]: N(0, 1) everywhere except columns 5 and 6, which are always 0. */
function inputs(): Float32Array {
  const rand = mulberry32(7);
  const x = new Float32Array(T * K);
  for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) x[t * K + k] = k === 5 || k === 6 ? 0 : randn(rand);
  return x;
}

/** The candidate thresholds of a group with max |w| = amax (AutoAWQ `_compute_best_clip`). */
const candidates = (amax: number): number[] => Array.from({ length: AWQ_CLIP_STEPS }, (_, i) => Math.fround(amax * (1 - i / AWQ_CLIP_GRID)));

describe("AWQ clip search", () => {
  const rand = mulberry32(3);
  const W = new Float32Array(N * K); // [N, K]
  for (let i = 0; i < W.length; i++) W[i] = 0.2 * randn(rand);

  // Row 0, group 0: outliers ±A at the dead input channels 5 and 6; every other weight lies
  // exactly on the grid of the SMALLEST candidate, so clipping to it costs nothing on the
  // outliers (x = 0) and is exact on the rest: error 0, strictly below every other candidate.
  const A = 1;
  const mvSmallest = candidates(A)[AWQ_CLIP_STEPS - 1]!;
  const p = awqGrid(-mvSmallest, mvSmallest, 4);
  for (let k = 0; k < g; k++) W[k] = p.scale * (1 + Math.floor(rand() * 14) - p.zero); // codes 1..14: inside ±mv
  W[5] = A; W[6] = -A;

  // Row 1, group 0: exactly representable on its own full-range grid (scale 1/16, zero 7,
  // codes 0..15 with both ends used by live channels): no clipping is best.
  for (let k = 0; k < g; k++) W[K + k] = (Math.floor(rand() * 16) - 7) / 16;
  W[K + 10] = (15 - 7) / 16; // max 0.5 = amax
  W[K + 11] = (0 - 7) / 16; // min −0.4375

  const x = inputs();
  const maxVal = awqClipSearchLayer({ backend: refBackend, weight: W, N, K, x, T, bits: 4, groupSize: g });

  it("an outlier on a dead input channel is clipped to the smallest candidate (0.55·amax)", () => {
    expect(maxVal[0 * G + 0]).toBe(mvSmallest);
    expect(mvSmallest).toBe(Math.fround(0.55));
  });

  it("a group that is already exactly representable is not clipped (max_val = amax)", () => {
    expect(maxVal[1 * G + 0]).toBe(0.5);
  });

  it("every threshold is one of the candidates of its (row, group)", () => {
    for (let n = 0; n < N; n++) for (let gi = 0; gi < G; gi++) {
      let amax = 0;
      for (let k = gi * g; k < (gi + 1) * g; k++) amax = Math.max(amax, Math.abs(W[n * K + k]!));
      expect(candidates(amax)).toContain(maxVal[n * G + gi]);
    }
  });

  it("group size -1 (one group per row) gives one threshold per row", () => {
    const mv = awqClipSearchLayer({ backend: refBackend, weight: W, N, K, x, T, bits: 4, groupSize: -1 });
    expect(mv.length).toBe(N);
  });
});

describe("clip token sample", () => {
  it("is seeded, distinct, sorted, and everything when there are few tokens", () => {
    const a = sampleTokens(10_000, 512, 1);
    expect(Array.from(a)).toEqual(Array.from(sampleTokens(10_000, 512, 1)));
    expect(new Set(a).size).toBe(512);
    expect(Array.from(a)).toEqual(Array.from(a).sort((p, q) => p - q));
    expect(Array.from(sampleTokens(300, 512, 1))).toEqual(Array.from({ length: 300 }, (_, i) => i));
  });
});

describe("clip token stride (llm-awq auto_clip_layer: input_feat[:, 0::n_token // 512])", () => {
  // Python: list(range(T))[0::T // 512], counted and spot-checked by hand.
  it.each([
    [65_536, 512, 128], // 128 windows × 512: positions 0, 128, 256, 384 of every window
    [12_800, 512, 25], // 25 windows × 512 (the records rule on the bundled calibration text)
    [12_900, 516, 25], // a remainder: ⌈12900 / 25⌉ = 516 tokens, more than 512
    [1_000, 1_000, 1], // fewer than 1024 tokens: step 1 (llm-awq's step 0 would raise; we take all)
    [300, 300, 1],
  ])("T = %i → %i tokens, step %i", (T, count, step) => {
    const t = strideTokens(T, 512);
    expect(t.length).toBe(count);
    expect(t[0]).toBe(0);
    expect(t[1]).toBe(step);
    expect(t[t.length - 1]).toBe((count - 1) * step);
    expect(t[t.length - 1]!).toBeLessThan(T);
  });
});

import { describe, expect, it } from "vitest";
import type { ModelConfig } from "../../src/arch/config.ts";
import { refBackend } from "../../src/backend/ref.ts";
import { blockForward, rmsNorm } from "../../src/nn/block.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { Model } from "../../src/nn/model.ts";
import { RopeTable } from "../../src/nn/rope.ts";
import { type BlockWeights } from "../../src/nn/weights.ts";
import { linearShapes } from "../../src/arch/shapes.ts";
import { applyAwqClip, applyAwqScales } from "../../src/methods/awq-apply.ts";
import { awqGroupsFor, runAwqModule } from "../../src/methods/awq.ts";
import type { AwqGroupScales } from "../../src/methods/awq-types.ts";
import { UsageError } from "../../src/util/errors.ts";
import { randn, randomArray, randomWeights, tinyConfig } from "../helpers/random-weights.ts";

/**
 * Folding is exact in real arithmetic; in f32 each fold adds one rounding (2⁻²⁴ relative)
 * per weight and the reordered products shift dot-product sums by a few ulps. Measured:
 * ≈2e-7 of the largest |output| for the block and the 2-layer model; allow 50× that.
 */
const FOLD_TOL = 1e-5;

function relMaxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); m = Math.max(m, Math.abs(a[i]!)); }
  return d / m;
}

/** Arbitrary positive scales exp(N(0, 1)) (spanning ≈ 0.05…20) for the chosen groups. */
function randomScales(cfg: ModelConfig, seed: number, only?: number): AwqGroupScales[] {
  const rand = mulberry32(seed);
  const shapes = linearShapes(cfg);
  return awqGroupsFor(cfg).filter((_, i) => only === undefined || i === only).map((g) => ({
    prev: g.prev, layers: [...g.layers], alpha: 0, losses: [],
    scales: Float32Array.from({ length: shapes[g.layers[0]!][1] }, () => Math.exp(randn(rand))),
  }));
}

const clone = (b: BlockWeights): BlockWeights => structuredClone(b);

describe.each([
  ["llama MHA (all four folds incl. v→o)", { num_key_value_heads: 4 }, 4],
  ["llama GQA (v→o skipped)", {}, 3],
  ["qwen2 MHA with q/k/v biases (v bias folded)", { model_type: "qwen2", num_key_value_heads: 4 }, 4],
])("AWQ scale folding (%s)", (_name, over, nGroups) => {
  const cfg = tinyConfig(over);
  const rope = new RopeTable(cfg);
  const T = 12, H = cfg.hiddenSize;
  const x = randomArray(T * H, 1, mulberry32(2)); // [T, H]
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const cache = () => ({ k: new Float32Array(T * kvDim), v: new Float32Array(T * kvDim) });
  const block = (w: BlockWeights): Float32Array => blockForward({ cfg, backend: refBackend, rope }, 0, w, x, T, 0, cache());

  it(`has ${nGroups} scaling groups`, () => {
    expect(awqGroupsFor(cfg).map((g) => `${g.prev}>${g.layers.join(",")}`)).toEqual(
      ["attnNorm>q,k,v", ...(nGroups === 4 ? ["v>o"] : []), "mlpNorm>gate,up", "up>down"],
    );
  });

  for (let gi = 0; gi <= nGroups; gi++) {
    const label = gi === nGroups ? "all groups at once" : `group ${gi} alone`;
    it(`block output unchanged: ${label}`, () => {
      const w = randomWeights(cfg, 3).blocks[0]!;
      const y0 = block(w);
      const scaled = clone(w);
      applyAwqScales(cfg, scaled, { block: 0, scales: randomScales(cfg, 10 + gi, gi === nGroups ? undefined : gi) });
      // The weights really changed (a fold that does nothing would pass trivially)...
      const changed = Object.values(scaled.linears).some((l, i) => relMaxDiff(Object.values(w.linears)[i]!.weight, l.weight) > 0.1);
      expect(changed).toBe(true);
      // ...and the block computes the same function.
      expect(relMaxDiff(y0, block(scaled))).toBeLessThan(FOLD_TOL);
    });
  }

  it("control: scaling the layers without folding into the previous op changes the output", () => {
    const w = randomWeights(cfg, 3).blocks[0]!;
    const broken = clone(w);
    const s = randomScales(cfg, 10);
    applyAwqScales(cfg, broken, { block: 0, scales: s });
    broken.attnNorm.set(w.attnNorm); // undo only the norm fold of group 0
    expect(relMaxDiff(block(w), block(broken))).toBeGreaterThan(1e-2);
  });

  it("whole model: logits unchanged after folding scales into every block", () => {
    const tokens = [3, 17, 42, 8, 8, 1, 33, 49, 0, 12];
    const m0 = new Model(cfg, randomWeights(cfg, 4), refBackend);
    const weights = randomWeights(cfg, 4);
    weights.blocks.forEach((b, i) => applyAwqScales(cfg, b, { block: i, scales: randomScales(cfg, 20 + i) }));
    const m1 = new Model(cfg, weights, refBackend);
    const d = relMaxDiff(m0.forward(tokens, m0.newCache(16)), m1.forward(tokens, m1.newCache(16)));
    expect(d).toBeLessThan(FOLD_TOL);
  });

  it("the inspected modules equal the attention and MLP halves of blockForward", () => {
    const w = randomWeights(cfg, 5).blocks[0]!;
    const m = { cfg, backend: refBackend, rope, cache: cache() };
    // Zeroing down_proj leaves out = x + attention(norm(x)); zeroing o_proj leaves out = x + mlp(norm(x)).
    const noMlp = clone(w); noMlp.linears.down.weight.fill(0);
    const attn = runAwqModule(m, "attention", "q", w.linears, rmsNorm(x, w.attnNorm, T, H, cfg.rmsNormEps), T);
    const yA = block(noMlp).map((v, i) => v - x[i]!);
    expect(relMaxDiff(yA, attn)).toBeLessThan(FOLD_TOL);
    const noAttn = clone(w); noAttn.linears.o.weight.fill(0);
    const mlp = runAwqModule(m, "mlp", "gate", w.linears, rmsNorm(x, w.mlpNorm, T, H, cfg.rmsNormEps), T);
    const yM = block(noAttn).map((v, i) => v - x[i]!);
    expect(relMaxDiff(yM, mlp)).toBeLessThan(FOLD_TOL);
  });
});

describe("applyAwqClip", () => {
  it("clamps each (row, group) to ±maxVal", () => {
    const cfg = tinyConfig();
    const w = randomWeights(cfg, 1).blocks[0]!;
    const l = w.linears.down; // [32, 48]
    const G = 3, g = 16;
    const maxVal = Float32Array.from({ length: l.N * G }, (_, i) => 0.01 + 0.01 * (i % 7));
    const before = l.weight.slice();
    applyAwqClip(w, { block: 0, clips: [{ layer: "down", N: l.N, G, groupSize: g, maxVal }] });
    for (let n = 0; n < l.N; n++) for (let k = 0; k < l.K; k++) {
      const mv = maxVal[n * G + Math.floor(k / g)]!;
      expect(l.weight[n * l.K + k]).toBe(Math.min(mv, Math.max(-mv, before[n * l.K + k]!)));
    }
  });

  it("refuses results that do not fit the layer", () => {
    const cfg = tinyConfig();
    const w = randomWeights(cfg, 1).blocks[0]!;
    expect(() => applyAwqClip(w, { block: 0, clips: [{ layer: "down", N: 32, G: 2, groupSize: 16, maxVal: new Float32Array(64) }] })).toThrow(UsageError);
    const s = randomScales(cfg, 1);
    s[0]!.scales = new Float32Array(7);
    expect(() => applyAwqScales(cfg, w, { block: 0, scales: s })).toThrow(/7 scales/);
  });
});

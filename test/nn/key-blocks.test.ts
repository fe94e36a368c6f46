/**
 * The f16 KV cache with its keys in blocks of 32 positions (KvCache keyBlocks, AttentionShape.keyBlocks,
 * native/LAYOUTS.md "KV cache"): the native backend's f16 default. The whole model on it against the
 * row-major f16 cache, which holds the same f16 bits: on the reference backend (which reads the blocks
 * as its specification) the logits are bit-identical; on the native backend the prefill (the tiled
 * form widens the same keys) too, and the decode steps (no key transposes, another summation order
 * of each score) within a tolerance, with the same greedy tokens over 32 steps crossing blocks.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createNativeBackend } from "../../src/backend/native.ts";
import { refBackend } from "../../src/backend/ref.ts";
import { loadModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { argmax } from "../../src/nn/generate.ts";
import { KvCache, Model } from "../../src/nn/model.ts";
import { UsageError } from "../../src/util/errors.ts";
import { randomWeights, tinyConfig } from "../helpers/random-weights.ts";

const HAS_WEIGHTS = existsSync(join(BUNDLED_MODEL_DIR, "model.safetensors"));

/**
 * Blocked vs row-major keys on the native backend: the same f16 values, each decode score summed in
 * another order (d = 32 terms in f32: ~d·2⁻²⁴ relative of Σ|q k|); the step's output differs in the
 * last bits, which reach the next steps' keys and values, so the logits (|l| ≤ 13.5) drift apart over
 * the 32 steps: measured 2.2e-4 at most on the bundled model (4 layers); 1e-3 bounds it.
 */
const ORDER_TOL = 1e-3;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Prompt logits, then `steps` greedy steps (their logits and tokens). */
function run(model: Model, cache: KvCache, prompt: number[], steps: number): { prompt: Float32Array; logits: Float32Array[]; ids: number[] } {
  const V = model.cfg.vocabSize;
  const all = model.forward(prompt, cache, { logits: "all" }).slice();
  let l = all.subarray((prompt.length - 1) * V);
  const logits: Float32Array[] = [], ids: number[] = [];
  for (let i = 0; i < steps; i++) {
    const id = argmax(l, 0, V);
    ids.push(id);
    l = model.forward([id], cache, { logits: "last" }).slice();
    logits.push(l);
  }
  return { prompt: all, logits, ids };
}

describe("a blocked key cache", () => {
  it("holds whole blocks of 32 positions, only for f16, and is the native backend's f16 default", () => {
    const cfg = tinyConfig();
    const kvDim = cfg.numKvHeads * cfg.headDim;
    const c = new KvCache(cfg, 45, "f16", true);
    expect(c.layers[0]!.k.length).toBe(64 * kvDim);
    expect(c.layers[0]!.v.length).toBe(45 * kvDim);
    expect(c.layers[0]!.keyBlocks).toBe(true);
    expect(() => new KvCache(cfg, 45, "f32", true)).toThrow(UsageError);
    const nb = createNativeBackend({ threads: 1 });
    const m = new Model(cfg, randomWeights(cfg, 3), nb);
    expect(m.newCache(40, "f16").keyBlocks).toBe(nb.keyBlocks);
    expect(m.newCache(40, "f16", false).keyBlocks).toBe(false);
    expect(m.newCache(40, "f32").keyBlocks).toBe(false);
    expect(new Model(cfg, randomWeights(cfg, 3), refBackend).newCache(40, "f16").keyBlocks).toBe(false);
  });

  it("gives the reference backend's logits bit for bit (prefill and decode across blocks)", () => {
    const cfg = tinyConfig();
    const model = new Model(cfg, randomWeights(cfg, 11), refBackend);
    const prompt = Array.from({ length: 30 }, (_, i) => (i * 7 + 3) % cfg.vocabSize);
    const rows = run(model, new KvCache(cfg, 45, "f16"), prompt, 12);
    const blocks = run(model, new KvCache(cfg, 45, "f16", true), prompt, 12);
    expect(Array.from(blocks.prompt)).toEqual(Array.from(rows.prompt));
    blocks.logits.forEach((l, i) => expect(Array.from(l)).toEqual(Array.from(rows.logits[i]!)));
    // the comparison can fail: the f32 cache's logits differ
    expect(maxAbsDiff(run(model, new KvCache(cfg, 45, "f32"), prompt, 1).logits[0]!, rows.logits[0]!)).toBeGreaterThan(0);
  });

  it.skipIf(!HAS_WEIGHTS)("on the native backend: the row-major f16 cache's logits within ORDER_TOL, the same 32 greedy tokens, plan and eager", async () => {
    const nb = createNativeBackend({ threads: 2 });
    expect(nb.keyBlocks).toBe(process.env.QLLM_KEY_BLOCKS !== "0");
    const { model } = await loadModel(BUNDLED_MODEL_DIR, nb, { weights: "packed" });
    const prompt = Array.from({ length: 29 }, (_, i) => (i * 13 + 5) % model.cfg.vocabSize);
    const steps = 32, capacity = prompt.length + steps + 7; // 68 positions: not a multiple of 32
    for (const plans of [true, false]) {
      model.stepPlans = plans;
      const rows = run(model, new KvCache(model.cfg, capacity, "f16", false), prompt, steps);
      const blocks = run(model, new KvCache(model.cfg, capacity, "f16", true), prompt, steps);
      expect(Array.from(blocks.prompt)).toEqual(Array.from(rows.prompt)); // prefill widens the same keys
      expect(blocks.ids).toEqual(rows.ids);
      let worst = 0;
      blocks.logits.forEach((l, i) => { worst = Math.max(worst, maxAbsDiff(l, rows.logits[i]!)); });
      expect(worst).toBeLessThan(ORDER_TOL);
      expect(new Set(rows.ids).size).toBeGreaterThan(1); // the greedy tokens are not one repeated id
    }
    model.stepPlans = true;
  }, 120_000);
});

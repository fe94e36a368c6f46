import { describe, expect, it } from "vitest";
import { refBackend } from "../../src/backend/ref.ts";
import { Model } from "../../src/nn/model.ts";
import { generate } from "../../src/nn/generate.ts";
import { perplexity } from "../../src/metrics/perplexity.ts";
import { randomWeights, tinyConfig } from "../helpers/random-weights.ts";

/** Batch vs incremental decoding differ only by f32 summation order: ~1e-5 relative on O(1) logits. */
const INCREMENTAL_TOL = 1e-4;
/**
 * An f16 KV cache rounds every key and value to 11 significant bits (≤ 2⁻¹¹ relative): through
 * the scores, softmax and o_proj of two blocks that moves these O(1) logits by ~1e-3 (measured
 * 6.6e-4 … 1.1e-3 on the three configs); 1e-2 bounds it.
 */
const F16_CACHE_TOL = 1e-2;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe.each([
  ["llama GQA", {}],
  ["qwen2 with q/k/v biases", { model_type: "qwen2" }],
  ["mistral MHA", { model_type: "mistral", num_key_value_heads: 4 }],
])("forward pass (%s)", (_name, over) => {
  const cfg = tinyConfig(over);
  const model = new Model(cfg, randomWeights(cfg, 7), refBackend);
  const tokens = [3, 17, 42, 8, 8, 1, 33, 49, 0, 12];
  const V = cfg.vocabSize;

  it("one batch equals token-by-token decoding with the KV cache", () => {
    const all = model.forward(tokens, model.newCache(32)); // [T, V]
    const cache = model.newCache(32);
    for (let t = 0; t < tokens.length; t++) {
      const row = model.forward([tokens[t]!], cache, { logits: "last" });
      expect(maxAbsDiff(row, all.subarray(t * V, (t + 1) * V))).toBeLessThan(INCREMENTAL_TOL);
    }
    // chunked prefill (4 + 6) too
    const c2 = model.newCache(32);
    model.forward(tokens.slice(0, 4), c2, { logits: "none" });
    const rest = model.forward(tokens.slice(4), c2);
    expect(maxAbsDiff(rest, all.subarray(4 * V))).toBeLessThan(INCREMENTAL_TOL);
  });

  it("an f16 KV cache: one batch equals token-by-token on it, near the f32 cache but rounded", () => {
    const all = model.forward(tokens, model.newCache(32, "f16")); // [T, V]
    const cache = model.newCache(32, "f16");
    expect(cache.layers[0]!.k).toBeInstanceOf(Uint16Array);
    for (let t = 0; t < tokens.length; t++) {
      const row = model.forward([tokens[t]!], cache, { logits: "last" });
      expect(maxAbsDiff(row, all.subarray(t * V, (t + 1) * V))).toBeLessThan(INCREMENTAL_TOL);
    }
    const f32 = model.forward(tokens, model.newCache(32));
    const diff = maxAbsDiff(all, f32);
    expect(diff).toBeLessThan(F16_CACHE_TOL);
    expect(diff).toBeGreaterThan(0); // the rows really were rounded
  });

  it("is causal: logits at t do not depend on later tokens", () => {
    const a = model.forward(tokens, model.newCache(32));
    const changed = [...tokens.slice(0, 5), 9, 9, 9, 9, 9];
    const b = model.forward(changed, model.newCache(32));
    expect(maxAbsDiff(a.subarray(0, 5 * V), b.subarray(0, 5 * V))).toBe(0);
    expect(maxAbsDiff(a.subarray(5 * V), b.subarray(5 * V))).toBeGreaterThan(1e-3);
  });

  it("taps the input of every linear layer with its shape", () => {
    const seen: string[] = [];
    model.forward(tokens, model.newCache(32), {
      tap: ({ block, input, x, T, K }) => { expect(x.length).toBe(T * K); seen.push(`${block}:${input}:${K}`); },
    });
    const H = cfg.hiddenSize, I = cfg.intermediateSize, QD = cfg.numHeads * cfg.headDim;
    expect(seen).toEqual([0, 1].flatMap((b) => [`${b}:attn_norm:${H}`, `${b}:attn_out:${QD}`, `${b}:mlp_norm:${H}`, `${b}:mlp_act:${I}`]));
  });

  it("greedy generation is deterministic and matches argmax of a full forward", () => {
    const out = generate(model, tokens.slice(0, 3), { maxTokens: 5 });
    expect(out).toHaveLength(5);
    const seq = [...tokens.slice(0, 3), ...out];
    const logits = model.forward(seq, model.newCache(32));
    for (let i = 0; i < 5; i++) {
      const row = logits.subarray((2 + i) * V, (3 + i) * V);
      expect(out[i]).toBe(row.indexOf(Math.max(...row)));
    }
  });
});

describe("perplexity", () => {
  it("a model with zero lm_head is uniform: ppl = vocab size exactly, under both protocols", () => {
    const cfg = tinyConfig();
    const w = randomWeights(cfg, 3);
    w.lmHead = new Float32Array(w.lmHead.length);
    const model = new Model(cfg, w, refBackend);
    const tokens = Array.from({ length: 70 }, (_, i) => (i * 7) % cfg.vocabSize);
    const g = perplexity(model, tokens, { protocol: "gptq", ctx: 16, bosId: 0 });
    expect(g.ppl).toBeCloseTo(cfg.vocabSize, 9);
    expect(g.windows).toBe(4);
    expect(g.tokensScored).toBe(4 * 15);
    const l = perplexity(model, tokens, { protocol: "llama.cpp", ctx: 16, bosId: 0 });
    expect(l.ppl).toBeCloseTo(cfg.vocabSize, 9);
    expect(l.tokensScored).toBe(4 * 7); // positions 8..14 predict 9..15
  });
});

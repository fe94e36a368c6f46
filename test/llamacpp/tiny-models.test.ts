/**
 * Our forward pass and GGUF export against llama.cpp (node-llama-cpp's prebuilt CPU build)
 * on tiny random models of every supported family: the same token ids must give the same
 * logits, the same llama.cpp-protocol perplexity and the same greedy continuation.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Backend } from "../../src/backend/backend.ts";
import { refBackend } from "../../src/backend/ref.ts";
import { selectBackend } from "../../src/backend/select.ts";
import { exportGguf } from "../../src/export/gguf.ts";
import { loadHfModel, type LoadedModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { perplexity } from "../../src/metrics/perplexity.ts";
import { generate } from "../../src/nn/generate.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { Model } from "../../src/nn/model.ts";
import { DependencyError } from "../../src/util/errors.ts";
import { makeTinyModel, type TinyModel, type TinyModelOptions } from "../helpers/tiny-model.ts";
import { llamaGreedy, llamaLogits, llamaPerplexity, openLlamaRef, type LlamaRef } from "./llama-ref.ts";

/**
 * Both engines compute in f32 with different summation orders (ggml's SIMD dot products vs
 * our sequential loops). Observed max |Δlogit| ≈ 2e-6 on these models (logits of magnitude
 * ≤ ~10, K ≤ 128); 1e-4 leaves a wide margin while still catching any real layout error
 * (a wrong permutation or norm moves logits by O(1)).
 */
const LOGIT_ABS_TOL = 1e-4;
/** Perplexity relative difference allowed by the brief (observed ~1e-7). */
const PPL_REL_TOL = 1e-3;
const CTX = 64;
const WINDOWS = 4;
const DECODE = 32;

const CASES: { label: string; opts: TinyModelOptions }[] = [
  { label: "llama (GQA 4/2)", opts: { modelType: "llama", hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 320, seed: 11 } },
  { label: "mistral (GQA 4/1)", opts: { modelType: "mistral", hidden: 64, intermediate: 96, layers: 2, heads: 4, kvHeads: 1, vocab: 320, seed: 12 } },
  { label: "qwen2 (q/k/v biases, tied)", opts: { modelType: "qwen2", hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 320, seed: 13, tieEmbeddings: true } },
  {
    label: "llama (head_dim 32 ≠ hidden/heads, rope_theta 5e5)",
    opts: { modelType: "llama", hidden: 64, intermediate: 128, layers: 1, heads: 4, kvHeads: 2, headDim: 32, ropeTheta: 500000, vocab: 320, seed: 14 },
  },
  {
    // head_dim 16, theta 1e4: wavelengths 6..19869 cover all three llama3 regimes (kept, smoothed, divided by factor).
    label: "llama (llama3 rope scaling → rope_freqs.weight)",
    opts: {
      modelType: "llama", hidden: 64, intermediate: 128, layers: 1, heads: 4, kvHeads: 2, vocab: 320, seed: 15,
      ropeScaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    },
  },
  {
    // q/k biases must be permuted like the weight rows; o and MLP biases are plain.
    label: "llama (attention_bias + mlp_bias)",
    opts: { modelType: "llama", hidden: 64, intermediate: 96, layers: 1, heads: 4, kvHeads: 2, vocab: 320, seed: 17, extraConfig: { attention_bias: true, mlp_bias: true } },
  },
  {
    label: "llama (linear rope scaling)",
    opts: { modelType: "llama", hidden: 64, intermediate: 128, layers: 1, heads: 4, kvHeads: 4, vocab: 320, seed: 16, ropeScaling: { type: "linear", factor: 4 } },
  },
];

/** The native backend with one thread, or undefined when the addon is not built. */
function nativeBackend(): Backend | undefined {
  try {
    return selectBackend({ backend: "native", threads: 1 });
  } catch (e) {
    if (e instanceof DependencyError) {
      console.warn(`native backend not checked against llama.cpp: ${e.message.split("\n")[0]}`);
      return undefined;
    }
    throw e;
  }
}

function randomTokens(n: number, vocab: number, seed: number): number[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => 3 + Math.floor(rand() * (vocab - 3)));
}

describe.each(CASES)("$label: our engine vs llama.cpp on an exported F32 GGUF", ({ opts }) => {
  let tiny: TinyModel;
  let ours: LoadedModel;
  let ref: LlamaRef;

  beforeAll(async () => {
    tiny = await makeTinyModel({ ...opts, tokenizer: "generated" });
    const gguf = join(tiny.dir, "model-f32.gguf");
    await exportGguf(tiny.dir, gguf, { type: "f32" });
    ours = await loadHfModel(tiny.dir, refBackend);
    ref = await openLlamaRef(gguf, { contextSize: CTX, threads: 1, vocab: tiny.cfg.vocabSize });
  });

  afterAll(async () => {
    await ref?.dispose();
    await tiny?.cleanup();
  });

  test("per-position logits agree", async () => {
    const V = tiny.cfg.vocabSize;
    const tokens = [0, ...randomTokens(CTX - 1, V, 1)];
    const theirs = await llamaLogits(ref, tokens);
    const native = nativeBackend();
    const engines: [string, Model][] = [["ref", ours.model]];
    if (native !== undefined) engines.push([native.name, new Model(ours.cfg, ours.model.weights, native)]);
    for (const [name, model] of engines) {
      const mine = model.forward(tokens, model.newCache(CTX), { logits: "all" });
      let maxDiff = 0;
      for (let i = 0; i < mine.length; i++) maxDiff = Math.max(maxDiff, Math.abs(mine[i]! - theirs[i]!));
      console.log(`${name} backend: max |Δlogit| over ${CTX} positions × ${V}: ${maxDiff.toExponential(2)}`);
      expect(maxDiff).toBeLessThan(LOGIT_ABS_TOL);
    }
  });

  test(`llama.cpp-protocol perplexity agrees (ctx ${CTX}, ${WINDOWS} windows)`, async () => {
    const tokens = randomTokens(CTX * WINDOWS, tiny.cfg.vocabSize, 2);
    const mine = perplexity(ours.model, tokens, { protocol: "llama.cpp", ctx: CTX, bosId: 0 });
    const theirs = await llamaPerplexity(ref, tokens, CTX, 0);
    const rel = Math.abs(mine.ppl - theirs.ppl) / theirs.ppl;
    console.log(`ppl ours ${mine.ppl.toFixed(6)} llama.cpp ${theirs.ppl.toFixed(6)} rel diff ${rel.toExponential(2)}`);
    expect(mine.tokensScored).toBe(theirs.tokensScored);
    expect(rel).toBeLessThan(PPL_REL_TOL);
  });

  test(`greedy decoding of ${DECODE} tokens is identical`, async () => {
    const prompt = [0, ...randomTokens(7, tiny.cfg.vocabSize, 3)];
    const mine = generate(ours.model, prompt, { maxTokens: DECODE });
    const theirs = await llamaGreedy(ref, prompt, DECODE);
    expect(mine).toEqual(theirs);
  });
});

/**
 * F16 export: the model is stored in F16, so both engines use the same (F16-exact) weights;
 * llama.cpp's F16 matmul also rounds the ACTIVATIONS to f16 (ggml_vec_dot_f16), which moves
 * logits by ~1e-3 relative (observed max |Δlogit| ≈ 5e-3). Perplexity must still agree to PPL_REL_TOL.
 */
const F16_LOGIT_ABS_TOL = 2e-2;

describe("llama, F16 weights: our engine vs llama.cpp on an exported F16 GGUF", () => {
  let tiny: TinyModel;
  let ours: LoadedModel;
  let ref: LlamaRef;

  beforeAll(async () => {
    tiny = await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, vocab: 320, seed: 21, dtype: "F16", tokenizer: "generated" });
    const gguf = join(tiny.dir, "model-f16.gguf");
    await exportGguf(tiny.dir, gguf, { type: "f16" });
    ours = await loadHfModel(tiny.dir, refBackend);
    ref = await openLlamaRef(gguf, { contextSize: CTX, threads: 1, vocab: tiny.cfg.vocabSize });
  });

  afterAll(async () => {
    await ref?.dispose();
    await tiny?.cleanup();
  });

  test("logits close and perplexity agrees", async () => {
    const V = tiny.cfg.vocabSize;
    const tokens = [0, ...randomTokens(CTX - 1, V, 4)];
    const theirs = await llamaLogits(ref, tokens);
    const mine = ours.model.forward(tokens, ours.model.newCache(CTX), { logits: "all" });
    let maxDiff = 0;
    for (let i = 0; i < mine.length; i++) maxDiff = Math.max(maxDiff, Math.abs(mine[i]! - theirs[i]!));
    const ppTokens = randomTokens(CTX * WINDOWS, V, 5);
    const p1 = perplexity(ours.model, ppTokens, { protocol: "llama.cpp", ctx: CTX, bosId: 0 });
    const p2 = await llamaPerplexity(ref, ppTokens, CTX, 0);
    const rel = Math.abs(p1.ppl - p2.ppl) / p2.ppl;
    console.log(`F16: max |Δlogit| ${maxDiff.toExponential(2)}, ppl ours ${p1.ppl.toFixed(4)} llama.cpp ${p2.ppl.toFixed(4)} rel diff ${rel.toExponential(2)}`);
    expect(maxDiff).toBeLessThan(F16_LOGIT_ABS_TOL);
    expect(rel).toBeLessThan(PPL_REL_TOL);
  });
});

/** Text exercising the GPT-2 pre-tokenizer: contractions, digits, punctuation runs, whitespace runs, non-ASCII. */
const TRICKY_TEXT = "Héllo wörld! 123 4567 — naïve café\t\ttabs  \n\n  spaces   \r\n日本語 🦙🦙 I've you'll 'S 'RE x'd...!!?? (a) [b] {c}\n" +
  "The  quick brown fox's 3.14 jumps; over the lazy dog.\n\n\n   end   ";

describe.each([
  { tokenizer: "generated" as const },
  ...(existsSync(join(BUNDLED_MODEL_DIR, "tokenizer.json")) ? [{ tokenizer: "bundled" as const }] : []),
])("$tokenizer tokenizer: llama.cpp tokenizes exactly like ours", ({ tokenizer }) => {
  let tiny: TinyModel;
  let ref: LlamaRef;
  let ours: LoadedModel;

  beforeAll(async () => {
    tiny = await makeTinyModel({ modelType: "llama", hidden: 16, intermediate: 32, layers: 1, heads: 2, seed: 31, tokenizer });
    const gguf = join(tiny.dir, "tok.gguf");
    await exportGguf(tiny.dir, gguf, { type: "f32" });
    ours = await loadHfModel(tiny.dir, refBackend);
    ref = await openLlamaRef(gguf, { contextSize: CTX, threads: 1, vocab: tiny.cfg.vocabSize });
  });

  afterAll(async () => {
    await ref?.dispose();
    await tiny?.cleanup();
  });

  test("plain text, BOS, and special tokens", () => {
    const texts = [TRICKY_TEXT, existsSync(BUNDLED_EVAL_TEXT) ? readFileSync(BUNDLED_EVAL_TEXT, "utf8").slice(0, 20_000) : TRICKY_TEXT.repeat(50)];
    for (const text of texts) expect(ref.model.tokenize(text, false)).toEqual(ours.tokenizer.encode(text, { addSpecial: false }));
    expect(ref.model.tokens.shouldPrependBosToken).toBe(true);
    expect(ref.model.tokens.bos).toBe(ours.tokenizer.bosId);
    const chat = ours.tokenizer.applyChatTemplate([{ role: "user", content: "Hi there, what's up?" }]);
    const withSpecials = ours.tokenizer.encode(chat, { addSpecial: false });
    expect(withSpecials.slice(0, 1)).toEqual([1]);
    expect(ref.model.tokenize(chat, true)).toEqual(withSpecials);
  });
});

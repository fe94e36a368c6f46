/**
 * The bundled trained model (models/qllm-tiny) exported to an F32 GGUF and run in llama.cpp
 * (node-llama-cpp's prebuilt CPU build): identical tokenization of the held-out text, the
 * same llama.cpp-protocol perplexity, the same greedy continuation.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
import { exportGguf } from "../../src/export/gguf.ts";
import { loadHfModel, type LoadedModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { perplexity } from "../../src/metrics/perplexity.ts";
import { generate } from "../../src/nn/generate.ts";
import { llamaGreedy, llamaLogits, llamaPerplexity, openLlamaRef, type LlamaRef } from "./llama-ref.ts";

const HAS_WEIGHTS = existsSync(join(BUNDLED_MODEL_DIR, "config.json"))
  && (existsSync(join(BUNDLED_MODEL_DIR, "model.safetensors")) || existsSync(join(BUNDLED_MODEL_DIR, "model.safetensors.index.json")));
if (!HAS_WEIGHTS) console.warn(`skipping bundled-model llama.cpp tests: ${BUNDLED_MODEL_DIR} has no config.json + model.safetensors`);

/** Same tolerance as the tiny models (brief: ≤ 1e-3). */
const PPL_REL_TOL = 1e-3;
/**
 * f32 on both sides, different summation orders over K ≤ ffn size and 512 positions of
 * attention: observed max |Δlogit| ≈ 1e-5–1e-4 on the trained model; 1e-3 still catches any
 * layout or tokenizer-independent arithmetic error (those move logits by O(0.1–1)).
 */
const LOGIT_ABS_TOL = 1e-3;
const CTX = 512;
/** 8 windows × 512 tokens (2048 scored) keeps this file well under a minute with one thread. */
const WINDOWS = 8;
const DECODE = 32;

const TITLE = "bundled model vs llama.cpp (F32 GGUF export)";
describe.skipIf(!HAS_WEIGHTS)(HAS_WEIGHTS ? TITLE : `${TITLE} — skipped: models/qllm-tiny has no weights`, () => {
  let tmp: string;
  let ours: LoadedModel;
  let ref: LlamaRef;
  let text: string;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "qllm-bundled-gguf-"));
    const gguf = join(tmp, "qllm-tiny-f32.gguf");
    await exportGguf(BUNDLED_MODEL_DIR, gguf, { type: "f32" });
    ours = await loadHfModel(BUNDLED_MODEL_DIR, selectBackend({ backend: "auto", threads: 1 }));
    ref = await openLlamaRef(gguf, { contextSize: CTX, threads: 1, vocab: ours.cfg.vocabSize });
    text = readFileSync(BUNDLED_EVAL_TEXT, "utf8");
  });

  afterAll(async () => {
    await ref?.dispose();
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  });

  test("tokenization of the whole held-out text is identical, without and with BOS", () => {
    const mine = ours.tokenizer.encode(text, { addSpecial: false });
    const theirs = ref.model.tokenize(text, false);
    expect(theirs.length).toBe(mine.length);
    expect(theirs).toEqual(mine);
    expect(ref.model.tokenize(text, true)).toEqual(mine); // the text holds no special-token strings
    // BOS: our post-processor prepends it; llama.cpp prepends tokens.bos when add_bos_token is set.
    const withBos = ours.tokenizer.encode(text, { addSpecial: true });
    expect(ref.model.tokens.shouldPrependBosToken).toBe(true);
    expect([ref.model.tokens.bos, ...theirs]).toEqual(withBos);
    expect(ref.model.detokenize(theirs)).toBe(text);
  });

  test("special tokens in a chat prompt are parsed the same way", () => {
    const chat = ours.tokenizer.applyChatTemplate([
      { role: "system", content: "You are terse." },
      { role: "user", content: "What's the capital of France? Don't ramble.\n\n  Thanks!" },
    ]);
    const mine = ours.tokenizer.encode(chat, { addSpecial: false });
    expect(mine).toContain(1); // <|im_start|>
    expect(mine).toContain(2); // <|im_end|>
    expect(ref.model.tokenize(chat, true)).toEqual(mine);
    // Without special-token parsing llama.cpp spells "<|im_start|>" out as plain text instead.
    expect(ref.model.tokenize(chat, false)).not.toContain(1);
  });

  test(`llama.cpp-protocol perplexity agrees (ctx ${CTX}, ${WINDOWS} windows) and logits are close`, async () => {
    const tokens = ours.tokenizer.encode(text, { addSpecial: true }).slice(0, CTX * WINDOWS);
    const bos = ours.tokenizer.bosId;
    const mine = perplexity(ours.model, tokens, { protocol: "llama.cpp", ctx: CTX, bosId: bos });
    const theirs = await llamaPerplexity(ref, tokens, CTX, bos);
    const rel = Math.abs(mine.ppl - theirs.ppl) / theirs.ppl;
    const win = tokens.slice(0, CTX);
    win[0] = bos ?? win[0]!;
    const positions = [0, 1, 100, 255, 256, 400, CTX - 2];
    const a = await llamaLogits(ref, win, positions);
    const all = ours.model.forward(win, ours.model.newCache(CTX), { logits: "all" });
    const V = ours.cfg.vocabSize;
    let maxDiff = 0;
    positions.forEach((p, r) => { for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(all[p * V + i]! - a[r * V + i]!)); });
    console.log(`bundled: ppl ours ${mine.ppl.toFixed(5)} (${mine.seconds.toFixed(1)} s) llama.cpp ${theirs.ppl.toFixed(5)} (${theirs.seconds.toFixed(1)} s)` +
      ` rel diff ${rel.toExponential(2)}; max |Δlogit| at ${positions.length} positions ${maxDiff.toExponential(2)}`);
    expect(mine.tokensScored).toBe(theirs.tokensScored);
    expect(rel).toBeLessThan(PPL_REL_TOL);
    expect(maxDiff).toBeLessThan(LOGIT_ABS_TOL);
  });

  test(`greedy decoding of ${DECODE} tokens is identical`, async () => {
    const prompt = ours.tokenizer.encode("The president of the company said that", { addSpecial: true });
    const mine = generate(ours.model, prompt, { maxTokens: DECODE });
    const theirs = await llamaGreedy(ref, prompt, DECODE);
    console.log(`bundled greedy: ${JSON.stringify(ours.tokenizer.decode(mine))}`);
    expect(mine).toEqual(theirs);
  });
});

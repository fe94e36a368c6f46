/**
 * Quantized GGUF export of the bundled model (models/qllm-tiny), checked against llama.cpp
 * (node-llama-cpp's prebuilt CPU build, 1 thread):
 *  (a) GPTQ 4-bit sym g32 → Q4_0 is exact: the GGUF's dequantized block weights equal our
 *      dequantized weights bit for bit after un-permutation, and our perplexity of the GGUF
 *      equals llama.cpp's;
 *  (b) plain Q4_0 export equals llama.cpp's reference quantizer byte for byte and loads in llama.cpp;
 *  (c) AWQ 4-bit g32 → Q4_1 is exact up to the reported f16 rounding of m = −s·z.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { linearTensorName } from "../../src/arch/registry.ts";
import { selectBackend } from "../../src/backend/select.ts";
import { exportQuantizedGguf } from "../../src/export/gguf-quant.ts";
import { unpermuteQK } from "../../src/arch/gguf-tensors.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { openGguf } from "../../src/io/gguf.ts";
import { loadGgufModel } from "../../src/load/gguf-model.ts";
import { loadHfModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { perplexity } from "../../src/metrics/perplexity.ts";
import { asF32 } from "../../src/nn/weights.ts";
import { GGML_BLOCK_TYPES, quantizeMatrix } from "../../src/pack/gguf-blocks.ts";
import { quantizeModel } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";
import { llamaPerplexity, openLlamaRef } from "./llama-ref.ts";

const HAS_WEIGHTS = existsSync(join(BUNDLED_MODEL_DIR, "model.safetensors"));
/**
 * llama.cpp quantizes activations to Q8_0 for its Q4_0/Q8_0 dot products (ggml-cpu
 * `vec_dot_q4_0_q8_0`), we multiply in f32: measured relative ppl gap ≈ 2e-4 on 2 windows.
 */
const PPL_REL_TOL = 1e-3;
/**
 * k-quant dot products quantize activations to Q8_K (`vec_dot_q4_K_q8_K`, `vec_dot_q6_K_q8_K`)
 * in every layer: measured gap 9.4e-4 on 2 windows. A wrong block layout moves ppl by > 10%.
 */
const PPL_REL_TOL_KQUANT = 3e-3;
const CTX = 512;
const WINDOWS = 3;
/** AWQ → Q4_1: m = f16(−s·z) moves a weight by at most half an f16 ulp of |s·z| (≤ ~1e-3 for these scales). */
const Q4_1_M_TOL = 2e-3;

function settings(over: Partial<QuantSettings>): QuantSettings {
  return {
    method: "gptq", bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
    trueSequential: true, format: "gptq", calibSamples: 16, calibSeqlen: 128, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT, ...over,
  };
}

describe.skipIf(!HAS_WEIGHTS)("quantized GGUF export of the bundled model vs llama.cpp", () => {
  let tmp: string;
  const backend = selectBackend({ backend: "auto", threads: 1 });

  beforeAll(() => { tmp = mkdtempSync(join(tmpdir(), "qllm-qgguf-")); });
  afterAll(() => { if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true }); });

  test("(a) GPTQ sym g32 → Q4_0: bit-exact weights, perplexity equals llama.cpp's", async () => {
    const qdir = join(tmp, "gptq");
    await quantizeModel({ modelDir: BUNDLED_MODEL_DIR, outDir: qdir, settings: settings({}), backend });
    const gguf = join(tmp, "gptq-q4_0.gguf");
    const r = await exportQuantizedGguf(qdir, gguf, {});
    expect(r.source).toBe("gptq");
    expect(r.requantizedLayers).toBe(0);
    expect(r.exactLayers).toBe(4 * 7);
    expect(r.types["Q4_0"]).toBe(28);

    const ckptDq = await loadHfModel(qdir, backend, { weights: "f32" }); // the checkpoint's dequantized f32 weights, HF row order
    const f = openGguf(gguf);
    try {
      const cfg = ckptDq.cfg;
      for (let b = 0; b < cfg.numLayers; b++) {
        for (const spec of cfg.arch.linears) {
          let x = f.readF32Sync(`blk.${b}.${spec.gguf}.weight`);
          const heads = spec.name === "q" ? cfg.numHeads : spec.name === "k" ? cfg.numKvHeads : undefined;
          if (heads !== undefined) x = unpermuteQK(x, heads, cfg.hiddenSize);
          const want = asF32(ckptDq.model.weights.blocks[b]!.linears[spec.name].weight);
          expect(x.length, linearTensorName(cfg.arch, b, spec)).toBe(want.length);
          let diff = 0;
          for (let i = 0; i < x.length; i++) if (!Object.is(x[i], want[i]) && x[i] !== want[i]) diff++;
          expect(diff, `${linearTensorName(cfg.arch, b, spec)}: elements differing`).toBe(0);
        }
      }
    } finally {
      f.close();
    }

    const g = await loadGgufModel(gguf, backend);
    const tokens = g.tokenizer.encode(readFileSync(BUNDLED_EVAL_TEXT, "utf8"), { addSpecial: false }).slice(0, CTX * WINDOWS);
    const mine = perplexity(g.model, tokens, { protocol: "llama.cpp", ctx: CTX, bosId: g.tokenizer.bosId });
    const ref = await openLlamaRef(gguf, { contextSize: CTX, threads: 1, vocab: g.cfg.vocabSize });
    try {
      const theirs = await llamaPerplexity(ref, tokens, CTX, g.tokenizer.bosId, WINDOWS);
      expect(theirs.tokensScored).toBe(mine.tokensScored);
      console.log(`GPTQ→Q4_0 ppl: ours ${mine.ppl.toFixed(4)} llama.cpp ${theirs.ppl.toFixed(4)} (llama.cpp protocol, ctx ${CTX}, ${mine.tokensScored} tokens)`);
      expect(Math.abs(mine.ppl - theirs.ppl) / theirs.ppl).toBeLessThan(PPL_REL_TOL);
    } finally {
      await ref.dispose();
    }
  });

  test("(b) plain Q4_0 export = llama.cpp's reference quantizer, and loads in llama.cpp", async () => {
    const gguf = join(tmp, "plain-q4_0.gguf");
    const r = await exportQuantizedGguf(BUNDLED_MODEL_DIR, gguf, { type: "q4_0", embedType: "q4_0", headType: "q4_0" });
    expect(r.types["Q4_0"]).toBe(30);
    const f = openGguf(gguf);
    const ckpt = await openCheckpoint(BUNDLED_MODEL_DIR);
    try {
      const x = ckpt.readF32Sync("model.layers.0.mlp.down_proj.weight");
      const K = f.tensor("blk.0.ffn_down.weight").dims[0]!;
      expect(Buffer.from(f.readBytesSync("blk.0.ffn_down.weight")).equals(Buffer.from(quantizeMatrix(GGML_BLOCK_TYPES.Q4_0, x, K)))).toBe(true);
      const e = ckpt.readF32Sync("model.embed_tokens.weight");
      expect(Buffer.from(f.readBytesSync("token_embd.weight")).equals(Buffer.from(quantizeMatrix(GGML_BLOCK_TYPES.Q4_0, e, 256)))).toBe(true);
    } finally {
      f.close();
      await ckpt.close();
    }
    const g = await loadGgufModel(gguf, backend);
    const tokens = g.tokenizer.encode(readFileSync(BUNDLED_EVAL_TEXT, "utf8"), { addSpecial: false }).slice(0, CTX * 2);
    const mine = perplexity(g.model, tokens, { protocol: "llama.cpp", ctx: CTX, bosId: g.tokenizer.bosId });
    const ref = await openLlamaRef(gguf, { contextSize: CTX, threads: 1, vocab: g.cfg.vocabSize });
    try {
      const theirs = await llamaPerplexity(ref, tokens, CTX, g.tokenizer.bosId, 2);
      console.log(`plain Q4_0 ppl: ours ${mine.ppl.toFixed(4)} llama.cpp ${theirs.ppl.toFixed(4)}`);
      expect(Math.abs(mine.ppl - theirs.ppl) / theirs.ppl).toBeLessThan(PPL_REL_TOL);
    } finally {
      await ref.dispose();
    }
  });

  test("(c) AWQ 4-bit g32 → Q4_1: exact codes, m rounding reported and small", async () => {
    const qdir = join(tmp, "awq");
    await quantizeModel({ modelDir: BUNDLED_MODEL_DIR, outDir: qdir, settings: settings({ method: "awq", sym: false, format: "gptq_v2" }), backend });
    const gguf = join(tmp, "awq-q4_1.gguf");
    const r = await exportQuantizedGguf(qdir, gguf, {});
    expect(r.source).toBe("awq");
    expect(r.requantizedLayers).toBe(0);
    expect(r.types["Q4_1"]).toBe(28);
    expect(r.maxMRoundingError).toBeLessThan(Q4_1_M_TOL);
    const ours = await loadHfModel(qdir, backend, { weights: "f32" });
    const g = await loadGgufModel(gguf, backend, { weights: "f32" });
    let maxDiff = 0;
    for (let b = 0; b < ours.cfg.numLayers; b++) {
      for (const spec of ours.cfg.arch.linears) {
        const a = asF32(ours.model.weights.blocks[b]!.linears[spec.name].weight), c = asF32(g.model.weights.blocks[b]!.linears[spec.name].weight);
        for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - c[i]!));
      }
    }
    expect(maxDiff).toBeLessThanOrEqual(r.maxMRoundingError + 1e-7);
  });

  test("(d) plain Q4_K_M-style export (Q4_K + Q6_K): our dequantization agrees with llama.cpp's", async () => {
    const gguf = join(tmp, "plain-q4_k_m.gguf");
    const r = await exportQuantizedGguf(BUNDLED_MODEL_DIR, gguf, { type: "q4_k_m" });
    expect(r.types["Q4_K"]).toBeGreaterThan(0);
    expect(r.types["Q6_K"]).toBeGreaterThan(0);
    const g = await loadGgufModel(gguf, backend);
    const tokens = g.tokenizer.encode(readFileSync(BUNDLED_EVAL_TEXT, "utf8"), { addSpecial: false }).slice(0, CTX * 2);
    const mine = perplexity(g.model, tokens, { protocol: "llama.cpp", ctx: CTX, bosId: g.tokenizer.bosId });
    const ref = await openLlamaRef(gguf, { contextSize: CTX, threads: 1, vocab: g.cfg.vocabSize });
    try {
      const theirs = await llamaPerplexity(ref, tokens, CTX, g.tokenizer.bosId, 2);
      console.log(`plain Q4_K_M ppl: ours ${mine.ppl.toFixed(4)} llama.cpp ${theirs.ppl.toFixed(4)}, ${r.bitsPerWeight.toFixed(2)} bpw`);
      expect(Math.abs(mine.ppl - theirs.ppl) / theirs.ppl).toBeLessThan(PPL_REL_TOL_KQUANT);
    } finally {
      await ref.dispose();
    }
  });
});

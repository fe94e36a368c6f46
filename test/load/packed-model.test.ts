/**
 * The bundled model's quantized outputs run on the native packed kernels like their
 * dequantized-f32 weights (the reference path): GPTQ 4-bit act-order (permuted columns,
 * gathered activations), AutoAWQ GEMM, GGUF Q4_0 and Q4_K_M (Q4_K + Q6_K planes).
 *   - perplexity with int8 activations (llama.cpp's precision) within PPL_INT8_TOL,
 *     with f32 activations within PPL_F32_TOL, relative to the f32 weights;
 *   - 32 greedy tokens identical.
 * One window of 512 tokens and a small calibration set keep it fast (the model is 5M parameters).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { isPackedWeight, withPackedActivations } from "../../src/backend/backend.ts";
import { selectBackend } from "../../src/backend/select.ts";
import { exportQuantizedGguf } from "../../src/export/gguf-quant.ts";
import { loadModel } from "../../src/load/hf-folder.ts";
import { describeKernelPath } from "../../src/load/kernel-path.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { perplexity } from "../../src/metrics/perplexity.ts";
import { generate } from "../../src/nn/generate.ts";
import type { Model } from "../../src/nn/model.ts";
import { quantizeModel } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";

const HAS_WEIGHTS = existsSync(join(BUNDLED_MODEL_DIR, "model.safetensors"));
/** int8 activations per block (as llama.cpp): the bound; measured figures are printed. */
const PPL_INT8_TOL = 1e-3;
/** f32 activations: the same products as the f32 path up to the f32 summation order. */
const PPL_F32_TOL = 1e-5;
const CTX = 512;
const GREEDY = 32;

function settings(over: Partial<QuantSettings>): QuantSettings {
  return {
    method: "gptq", bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
    trueSequential: true, format: "gptq", calibSamples: 4, calibSeqlen: 64, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT, ...over,
  };
}

describe.skipIf(!HAS_WEIGHTS)("bundled model's quantized outputs on the packed kernels", () => {
  const native = selectBackend({ backend: "auto", threads: 2 });
  let tmp: string;
  const sources: Record<string, string> = {};

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "qllm-packed-model-"));
    sources["gptq act-order"] = join(tmp, "gptq");
    await quantizeModel({ modelDir: BUNDLED_MODEL_DIR, outDir: sources["gptq act-order"], settings: settings({ actOrder: true }), backend: native });
    sources["awq"] = join(tmp, "awq");
    await quantizeModel({ modelDir: BUNDLED_MODEL_DIR, outDir: sources["awq"], settings: settings({ method: "awq", sym: false, format: "gptq_v2" }), backend: native });
    sources["gguf q4_0"] = join(tmp, "q4_0.gguf");
    await exportQuantizedGguf(BUNDLED_MODEL_DIR, sources["gguf q4_0"], { type: "q4_0" });
    sources["gguf q4_k_m"] = join(tmp, "q4_k_m.gguf");
    await exportQuantizedGguf(BUNDLED_MODEL_DIR, sources["gguf q4_k_m"], { type: "q4_k_m" });
  }, 300_000);
  afterAll(() => { if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true }); });

  const tokensOf = (m: { tokenizer: { encode(t: string, o: { addSpecial: boolean }): number[] } }): number[] =>
    m.tokenizer.encode(readFileSync(BUNDLED_EVAL_TEXT, "utf8"), { addSpecial: true }).slice(0, CTX);
  const ppl = (model: Model, tokens: number[]): number => perplexity(model, tokens, { protocol: "gptq", ctx: CTX, bosId: null }).ppl;
  const greedy = (model: Model, tokens: number[]): number[] => generate(model, tokens.slice(0, 16), { maxTokens: GREEDY, temperature: 0 });

  for (const name of ["gptq act-order", "awq", "gguf q4_0", "gguf q4_k_m"]) {
    test(name, async () => {
      if (native.name !== "native") return; // the packed kernels are native; nothing to compare on a ref-only build
      const path = sources[name]!;
      const f32 = await loadModel(path, native, { weights: "f32" });
      const packed = await loadModel(path, native, { weights: "auto" });
      const exact = await loadModel(path, withPackedActivations(native, "f32"), { weights: "auto" });
      expect(packed.weights).toBe("packed");
      const blocks = packed.model.weights.blocks;
      // every linear of every block is packed (int4 for these 4-bit sources; Q4_K_M's Q6_K layers as int8 planes)
      expect(blocks.flatMap((b) => Object.values(b.linears)).every((l) => isPackedWeight(l.weight))).toBe(true);
      const tokens = tokensOf(f32);
      const want = ppl(f32.model, tokens);
      const int8 = ppl(packed.model, tokens);
      const f32acts = ppl(exact.model, tokens);
      const r8 = Math.abs(int8 - want) / want, r32 = Math.abs(f32acts - want) / want;
      console.log(`${name}: ppl f32 weights ${want.toFixed(5)}, packed int8-act ${int8.toFixed(5)} (rel ${r8.toExponential(2)}), ` +
        `packed f32-act ${f32acts.toFixed(5)} (rel ${r32.toExponential(2)}); ${describeKernelPath(packed.model)}`);
      expect(r8).toBeLessThan(PPL_INT8_TOL);
      expect(r32).toBeLessThan(PPL_F32_TOL);
      const g = greedy(f32.model, tokens);
      expect(g.length).toBe(GREEDY);
      expect(greedy(packed.model, tokens)).toEqual(g);
      expect(greedy(exact.model, tokens)).toEqual(g);
    }, 120_000);
  }
});

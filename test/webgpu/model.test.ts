/**
 * The whole forward pass on the GPU (src/nn/webgpu-model.ts) against the CPU path on the
 * bundled model and its 4-bit outputs (GPTQ act-order, AWQ, GGUF Q4_0):
 *   - perplexity within PPL_TOL (relative) of the CPU's f32-weight perplexity;
 *   - 16 greedy ids identical;
 * each with an f32 KV cache on both sides and with an f16 one on both sides (the GPU rounds
 * new rows as the CPU does, so the f16 case needs no wider tolerance).
 * The GPU holds the 4-bit linears as int4 with f16 scales/zeros (equal to the CPU's
 * dequantized weights for these sources) and the rest as f16; activations are f32.
 * One window of CTX tokens keeps it short on a software adapter (lavapipe).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
import type { GpuContext } from "../../src/backend/webgpu-device.ts";
import { loadGpuModel } from "../../src/load/webgpu-load.ts";
import { generateGpu } from "../../src/nn/webgpu-model.ts";
import { exportQuantizedGguf } from "../../src/export/gguf-quant.ts";
import { loadModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { perplexity, perplexityAsync } from "../../src/metrics/perplexity.ts";
import { generate } from "../../src/nn/generate.ts";
import { quantizeModel } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";
import { tryOpenGpu } from "./gpu.ts";

const HAS_WEIGHTS = existsSync(join(BUNDLED_MODEL_DIR, "model.safetensors"));
/** The bound on the perplexity of the GPU path, relative to the CPU's. */
const PPL_TOL = 1e-3;
const CTX = 128;
const GREEDY = 16;

function settings(over: Partial<QuantSettings>): QuantSettings {
  return {
    method: "gptq", bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
    trueSequential: true, format: "gptq", calibSamples: 4, calibSeqlen: 64, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT, ...over,
  };
}

describe.skipIf(!HAS_WEIGHTS)("the bundled model on the GPU equals the CPU path", () => {
  const cpu = selectBackend({ backend: "auto", threads: 2 });
  let ctx: GpuContext | null = null;
  let tmp: string;
  const sources: Record<string, string> = { "bundled (f16)": BUNDLED_MODEL_DIR };

  beforeAll(async () => {
    ctx = await tryOpenGpu();
    if (ctx === null) return;
    tmp = mkdtempSync(join(tmpdir(), "qllm-webgpu-model-"));
    sources["gptq act-order"] = join(tmp, "gptq");
    await quantizeModel({ modelDir: BUNDLED_MODEL_DIR, outDir: sources["gptq act-order"], settings: settings({ actOrder: true }), backend: cpu });
    sources["awq"] = join(tmp, "awq");
    await quantizeModel({ modelDir: BUNDLED_MODEL_DIR, outDir: sources["awq"], settings: settings({ method: "awq", sym: false, format: "gptq_v2" }), backend: cpu });
    sources["gguf q4_0"] = join(tmp, "q4_0.gguf");
    await exportQuantizedGguf(BUNDLED_MODEL_DIR, sources["gguf q4_0"], { type: "q4_0" });
  }, 300_000);
  afterAll(() => {
    ctx?.device.destroy();
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  });

  for (const [name, q4] of [["bundled (f16)", false], ["gptq act-order", true], ["awq", true], ["gguf q4_0", true]] as const) {
    test(name, async (t) => {
      if (ctx === null) return t.skip();
      const path = sources[name]!;
      const ref = await loadModel(path, cpu, { weights: "f32" });
      const g = await loadGpuModel(path, ctx);
      // 4-bit sources: every block linear goes up as int4 (the head stays f16)
      const blockLinears = ref.cfg.arch.linears.length * ref.cfg.numLayers;
      if (q4) expect(g.q4Linears).toBeGreaterThanOrEqual(blockLinears); else expect(g.q4Linears).toBe(0);
      const tokens = ref.tokenizer.encode(readFileSync(BUNDLED_EVAL_TEXT, "utf8"), { addSpecial: true }).slice(0, CTX);
      const prompt = tokens.slice(0, 8);
      for (const kv of ["f32", "f16"] as const) {
        const want = perplexity(ref.model, tokens, { protocol: "gptq", ctx: CTX, bosId: null, kv }).ppl;
        const got = (await perplexityAsync(g.gpu, tokens, { protocol: "gptq", ctx: CTX, bosId: null, kv })).ppl;
        const rel = Math.abs(got - want) / want;
        console.log(`${name} on ${ctx.info.description || ctx.info.device}, KV cache ${kv}: ppl CPU ${want.toFixed(5)}, GPU ${got.toFixed(5)} (rel ${rel.toExponential(2)}); ${g.q4Linears} int4 / ${g.f16Linears} f16 linears`);
        expect(rel).toBeLessThan(PPL_TOL);
        const len = prompt.length + GREEDY;
        const cpuIds = generate(ref.model, prompt, { maxTokens: GREEDY, temperature: 0, cache: ref.model.newCache(len, kv) });
        expect(cpuIds.length).toBe(GREEDY);
        const cache = g.gpu.newCache(len, kv);
        expect(cache.dtype).toBe(kv);
        expect(await generateGpu(g.gpu, prompt, { maxTokens: GREEDY, temperature: 0, cache })).toEqual(cpuIds);
      }
    }, 240_000);
  }
});

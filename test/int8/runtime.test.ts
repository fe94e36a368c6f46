/**
 * A bitsandbytes 8-bit folder loaded for running (eval / chat / serve all go through
 * loadModel): on the native backend every int8 linear is an LLM.int8() handle (codes stay
 * int8 in native memory, threshold from the config, outlier columns found per batch) and the
 * forward pass equals, bit for bit, the same model whose int8 linears run the plain-TS
 * reference int8MatmulRef on the codes read from the file. `--backend ref` keeps the
 * dequantized f32 specification.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linearTensorName } from "../../src/arch/registry.ts";
import { createNativeBackend, type NativeBackend } from "../../src/backend/native.ts";
import { Int8PackedWeight } from "../../src/backend/native-int8.ts";
import { refBackend } from "../../src/backend/ref.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { readBnbInt8Linear } from "../../src/load/bnb-int8-source.ts";
import { loadModel, type LoadedModel } from "../../src/load/hf-folder.ts";
import { describeKernelPath, weightBytes } from "../../src/load/kernel-path.ts";
import { dequantizeInt8, type Int8Linear } from "../../src/methods/int8.ts";
import { Model } from "../../src/nn/model.ts";
import { quantizeInt8 } from "../../src/quantize/int8-pipeline.ts";
import { int8RefBackend } from "../helpers/int8-ref-backend.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

let nb: NativeBackend;
let tiny: TinyModel;
let work: string;
let dir: string;
beforeAll(async () => {
  nb = createNativeBackend({ threads: 1 });
  tiny = await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 96, layers: 2, heads: 4, kvHeads: 2, seed: 12, dtype: "BF16" });
  work = mkdtempSync(join(tmpdir(), "qllm-int8-rt-"));
  dir = join(work, "int8");
  await quantizeInt8({
    modelDir: tiny.dir, outDir: dir, backend: refBackend,
    settings: { threshold: 6, staticOutliers: false, skipModules: ["model.layers.1.mlp.down_proj"], calibSamples: 0, calibSeqlen: 16, calibSeed: 0, calibText: null },
  });
});
afterAll(async () => { await tiny.cleanup(); rmSync(work, { recursive: true, force: true }); });

/** The loaded model with each int8 linear run by int8MatmulRef on the file's codes (the specification). */
async function referenceTwin(m: LoadedModel, folder: string): Promise<{ model: Model; threshold: number[] }> {
  const ck = await openCheckpoint(folder);
  const spec = new Map<Int8PackedWeight, Int8Linear>();
  const thresholds: number[] = [];
  try {
    const a = m.cfg.arch;
    m.model.weights.blocks.forEach((blk, b) => {
      for (const s of a.linears) {
        const w = blk.linears[s.name].weight;
        if (w instanceof Int8PackedWeight) {
          spec.set(w, readBnbInt8Linear(ck, folder, linearTensorName(a, b, s).slice(0, -".weight".length)));
          thresholds.push(w.run.threshold);
        }
      }
    });
  } finally { await ck.close(); }
  const backend = int8RefBackend(nb, spec);
  return { model: new Model(m.cfg, m.model.weights, backend), threshold: thresholds };
}

function logitsOf(model: Model, tokens: number[]): Float32Array {
  return model.forward(tokens, model.newCache(tokens.length), { logits: "all" }).slice();
}

describe("bitsandbytes folders run on the LLM.int8() kernel", () => {
  it("native: int8 linears stay int8 handles with the config's threshold; forward == int8MatmulRef twin, bit for bit", async () => {
    const m = await loadModel(dir, nb);
    expect(m.format).toBe("bnb-int8");
    expect(m.weights).toBe("packed");
    const L0 = m.model.weights.blocks[0]!.linears, L1 = m.model.weights.blocks[1]!.linears;
    expect(L0.q.weight).toBeInstanceOf(Int8PackedWeight);
    expect((L0.q.weight as Int8PackedWeight).run).toEqual({ threshold: 6, staticCols: null });
    expect(L1.down.weight).not.toBeInstanceOf(Int8PackedWeight); // skipped module: as stored (bf16)
    expect((L1.down.weight as { layout: string }).layout).toBe("bf16x16");
    expect(describeKernelPath(m.model)).toMatch(/^native \w+, 1 thread: 12 linears llm-int8\/i16 \(LLM\.int8\(\) t=6 dynamic, \d\.\d\d bpw\), 1 linear llm-int8\/i16 .*1 linear bf16x16/);
    // ≈ 1 byte per int8 weight resident (+ SCB, row sums, 16-row padding), 2 per bf16 weight; no f32 copy of them.
    const { vocabSize: V, hiddenSize: H } = m.cfg;
    let int8 = 0, bf16 = 2 * 2 * V * H; // embedding rows + lm_head
    for (const b of m.model.weights.blocks) for (const l of Object.values(b.linears)) { if (l.weight instanceof Int8PackedWeight) int8 += l.N * l.K; else bf16 += 2 * l.N * l.K; }
    const { packed, f32 } = weightBytes(m.model);
    expect(packed).toBeGreaterThanOrEqual(int8 + bf16);
    expect(packed).toBeLessThan(1.15 * (int8 + bf16));
    expect(f32).toBe(4 * H * (2 * m.cfg.numLayers)); // the norms only
    const tokens = Array.from({ length: 9 }, (_, i) => (i * 37 + 5) % m.cfg.vocabSize);
    const twin = await referenceTwin(m, dir);
    expect(twin.threshold.length).toBe(13);
    expect(Array.from(logitsOf(m.model, tokens))).toEqual(Array.from(logitsOf(twin.model, tokens)));
  });

  it("the threshold comes from config.json (outlier columns are found per batch), and LoadOptions.int8 overrides it", async () => {
    // A low threshold so that this small model's activations cross it.
    const low = join(work, "low-threshold");
    rmSync(low, { recursive: true, force: true });
    await quantizeInt8({
      modelDir: tiny.dir, outDir: low, backend: refBackend,
      settings: { threshold: 0.75, staticOutliers: false, skipModules: null, calibSamples: 0, calibSeqlen: 16, calibSeed: 0, calibText: null },
    });
    const m = await loadModel(low, nb);
    const ws = m.model.weights.blocks.flatMap((b) => Object.values(b.linears).map((l) => l.weight as Int8PackedWeight));
    expect(ws.every((w) => w instanceof Int8PackedWeight && w.run.threshold === 0.75)).toBe(true);
    const tokens = Array.from({ length: 12 }, (_, i) => (i * 53 + 1) % m.cfg.vocabSize);
    const y = logitsOf(m.model, tokens);
    expect(ws.reduce((s, w) => s + w.stats.outlierCols, 0)).toBeGreaterThan(0);
    expect(Array.from(y)).toEqual(Array.from(logitsOf((await referenceTwin(m, low)).model, tokens)));
    // threshold 0 (plain per-token dynamic int8): no outlier columns, a different result.
    const m0 = await loadModel(low, nb, { int8: { threshold: 0 } });
    const y0 = logitsOf(m0.model, tokens);
    const ws0 = m0.model.weights.blocks.flatMap((b) => Object.values(b.linears).map((l) => l.weight as Int8PackedWeight));
    expect(ws0.every((w) => w.run.threshold === 0 && w.stats.outlierCols === 0 && w.stats.calls > 0)).toBe(true);
    expect(Array.from(y0)).not.toEqual(Array.from(y));
    expect(Array.from(y0)).toEqual(Array.from(logitsOf((await referenceTwin(m0, low)).model, tokens)));
  });

  it("--backend ref (and weights: f32) keep the dequantized f32 specification", async () => {
    const r = await loadModel(dir, refBackend);
    expect(r.weights).toBe("f32");
    const f = await loadModel(dir, nb, { weights: "f32" });
    expect(f.weights).toBe("f32");
    const ck = await openCheckpoint(dir);
    try {
      const q = readBnbInt8Linear(ck, dir, "model.layers.0.self_attn.q_proj");
      expect(Array.from(r.model.weights.blocks[0]!.linears.q.weight as Float32Array)).toEqual(Array.from(dequantizeInt8(q)));
      expect(Array.from(f.model.weights.blocks[0]!.linears.q.weight as Float32Array)).toEqual(Array.from(dequantizeInt8(q)));
    } finally { await ck.close(); }
  });

  it("a third-party-shaped folder (minimal config, no weight_format) runs packed with its own threshold", async () => {
    const tp = join(work, "third-party");
    rmSync(tp, { recursive: true, force: true });
    const { mkdirSync, copyFileSync, readdirSync } = await import("node:fs");
    mkdirSync(tp);
    for (const f of readdirSync(dir)) if (f !== "config.json") copyFileSync(join(dir, f), join(tp, f));
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(tp, "config.json"), JSON.stringify({ ...cfg, quantization_config: { quant_method: "bitsandbytes", load_in_8bit: true, llm_int8_threshold: 4.0 } }));
    const m = await loadModel(tp, nb);
    expect(m.weights).toBe("packed");
    expect((m.model.weights.blocks[0]!.linears.up.weight as Int8PackedWeight).run.threshold).toBe(4);
    const tokens = [1, 2, 3, 4, 5];
    expect(Array.from(logitsOf(m.model, tokens))).toEqual(Array.from(logitsOf((await referenceTwin(m, tp)).model, tokens)));
  });
});

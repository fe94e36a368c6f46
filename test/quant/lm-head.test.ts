/**
 * --quantize-lm-head (GPTQModel lm_head: true): the HF-GPTQ folder holds lm_head as
 * qweight/qzeros/scales/g_idx with its own grid named in `dynamic`, it reads back (f32
 * reference and the packed native kernels), tied models are untied with the embedding kept,
 * and the formats that cannot hold it refuse.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
import { isPackedWeight } from "../../src/backend/backend.ts";
import { exportQuantizedGguf } from "../../src/export/gguf-quant.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { gptqLayerConfig, parseGptqConfig } from "../../src/load/gptq-source.ts";
import { loadHfModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT } from "../../src/load/paths.ts";
import { rtnQuantizeLinear } from "../../src/methods/rtn.ts";
import { asF32 } from "../../src/nn/weights.ts";
import { quantizeModel } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";
import { dequantize } from "../../src/tensor/quantized.ts";
import { ConfigError, UsageError } from "../../src/util/errors.ts";
import { makeTinyModel } from "../helpers/tiny-model.ts";

const backend = selectBackend();
const tmp = mkdtempSync(join(tmpdir(), "qllm-lmhead-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const base: QuantSettings = {
  method: "rtn", bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01,
  blockSize: 128, trueSequential: true, format: "gptq", calibSamples: 0, calibSeqlen: 64, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT,
};
const H = 64, V = 4096; // the bundled tokenizer's size
const made = new Map<string, ReturnType<typeof makeTinyModel>>();
const tiny = (tie: boolean, name: string): ReturnType<typeof makeTinyModel> => {
  if (!made.has(name)) made.set(name, makeTinyModel({ modelType: "llama", hidden: H, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, seed: 11, tokenizer: "bundled", tieEmbeddings: tie, dir: join(tmp, name) }));
  return made.get(name)!;
};

/**
 * Load `dir` packed (native) and as the dequantized f32 reference: lm_head must be on the
 * `layout` kernel (not a 16-bit or f32 copy) and the logits must agree up to the int8
 * activations the packed kernels use (relative RMS over 6 positions × V).
 */
async function expectPackedHead(dir: string, layout: RegExp): Promise<void> {
  const packed = await loadHfModel(dir, backend);
  const ref = await loadHfModel(dir, backend, { weights: "f32" });
  const head = packed.model.weights.lmHead;
  expect(isPackedWeight(head)).toBe(true);
  if (isPackedWeight(head)) expect(head.layout).toMatch(layout);
  const ids = [1, 5, 9, 40, 7, 3];
  const a = packed.model.forward(ids, packed.model.newCache(16)), b = ref.model.forward(ids, ref.model.newCache(16)); // [T, V]
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i]! - b[i]!) ** 2; den += b[i]! ** 2; }
  expect(Math.sqrt(num / den)).toBeLessThan(0.02); // int8 activations
}

describe.skipIf(backend.name !== "native")("--quantize-lm-head (HF-GPTQ)", () => {
  it("RTN: lm_head packed as GPTQ with GPTQModel's config keys, exactly RTN of the stored head, run on the int8 kernels", async () => {
    const m = await tiny(false, "model");
    const r = await quantizeModel({ modelDir: m.dir, outDir: join(tmp, "rtn-lm8"), settings: { ...base, lmHead: { bits: 8, groupSize: 32 } }, backend });
    const qc = JSON.parse(readFileSync(join(r.outDir, "quantize_config.json"), "utf8"));
    expect(qc).toMatchObject({ bits: 4, group_size: 32, lm_head: true, dynamic: { lm_head: { bits: 8, group_size: 32, sym: true, desc_act: false } } });
    const out = await openCheckpoint(r.outDir);
    expect(out.has("lm_head.weight")).toBe(false);
    expect(out.info("lm_head.qweight").shape).toEqual([H * 8 / 32, V]); // [K·b/32, N]
    expect(out.info("lm_head.qzeros").shape).toEqual([H / 32, V * 8 / 32]);
    expect(out.info("lm_head.scales").shape).toEqual([H / 32, V]);
    expect(out.info("lm_head.g_idx").shape).toEqual([H]);
    await out.close();
    const orig = await openCheckpoint(m.dir);
    const W = orig.readF32Sync("lm_head.weight"); // [V, H]
    const want = dequantize(rtnQuantizeLinear({ weight: W, rows: V, cols: H, bits: 8, groupSize: 32, sym: true }));
    const embed = orig.readF32Sync("model.embed_tokens.weight");
    await orig.close();
    const ref = await loadHfModel(r.outDir, backend, { weights: "f32" });
    expect(Array.from(asF32(ref.model.weights.lmHead))).toEqual(Array.from(want));
    expect(Array.from(asF32(ref.model.weights.embed))).toEqual(Array.from(embed));
    // packed: lm_head on the int8 layout, logits as the f32 reference's
    await expectPackedHead(r.outDir, /^q8/);
    // the model's own layers are unchanged by the option (byte for byte)
    const plain = await quantizeModel({ modelDir: m.dir, outDir: join(tmp, "rtn"), settings: base, backend });
    const p = await openCheckpoint(plain.outDir), q = await openCheckpoint(r.outDir);
    for (const n of ["model.layers.1.mlp.down_proj.qweight", "model.layers.0.self_attn.q_proj.scales"]) expect(Buffer.from(q.readRawSync(n)).equals(Buffer.from(p.readRawSync(n)))).toBe(true);
    await p.close(); await q.close();
    expect(JSON.parse(readFileSync(join(plain.outDir, "quantize_config.json"), "utf8"))).toMatchObject({ lm_head: false });
    expect(JSON.parse(readFileSync(join(plain.outDir, "quantize_config.json"), "utf8")).dynamic).toBeUndefined();
  });

  it("GPTQ: lm_head from the last block's outputs through the final norm, 4-bit g32 via dynamic, reported", async () => {
    const m = await tiny(false, "model-gptq");
    const r = await quantizeModel({ modelDir: m.dir, outDir: join(tmp, "gptq-lm4"), settings: { ...base, method: "gptq", calibSamples: 8, lmHead: { bits: 4, groupSize: 32 } }, backend });
    const report = JSON.parse(readFileSync(join(r.outDir, "quant-report.json"), "utf8"));
    expect(report.lm_head).toMatchObject({ tensor: "lm_head.weight", shape: [V, H], bits: 4, groupSize: 32, damp: 0.01, untied: false });
    expect(report.lm_head.loss).toBeGreaterThan(0);
    expect(report.lm_head.relOutputError).toBeGreaterThan(0);
    // GPTQ trades weight error for output error: RTN's head (same grid) has the smaller weight error
    const orig = await openCheckpoint(m.dir);
    const W = orig.readF32Sync("lm_head.weight");
    await orig.close();
    const rtn = dequantize(rtnQuantizeLinear({ weight: W, rows: V, cols: H, bits: 4, groupSize: 32, sym: true }));
    let num = 0, den = 0;
    for (let i = 0; i < W.length; i++) { num += (W[i]! - rtn[i]!) ** 2; den += W[i]! ** 2; }
    expect(report.lm_head.relWeightError).toBeGreaterThan(num / den);
    const ref = await loadHfModel(r.outDir, backend, { weights: "f32" });
    let e = 0;
    const got = asF32(ref.model.weights.lmHead);
    for (let i = 0; i < W.length; i++) e += (W[i]! - got[i]!) ** 2;
    expect(e / den).toBeCloseTo(report.lm_head.relWeightError, 8); // the file holds what was reported
    await expectPackedHead(r.outDir, /^q4/);
  });

  it("a tied model: the embedding is quantized as lm_head, the output untied, the embedding kept as stored", async () => {
    const m = await tiny(true, "model-tied");
    const r = await quantizeModel({ modelDir: m.dir, outDir: join(tmp, "tied"), settings: { ...base, lmHead: { bits: 8, groupSize: 32 } }, backend });
    const cfg = JSON.parse(readFileSync(join(r.outDir, "config.json"), "utf8"));
    expect(cfg.tie_word_embeddings).toBe(false);
    expect(cfg.quantization_config.lm_head).toBe(true);
    const orig = await openCheckpoint(m.dir);
    const E = orig.readF32Sync("model.embed_tokens.weight"); // [V, H]
    await orig.close();
    const ref = await loadHfModel(r.outDir, backend, { weights: "f32" });
    expect(Array.from(asF32(ref.model.weights.embed))).toEqual(Array.from(E));
    expect(Array.from(asF32(ref.model.weights.lmHead))).toEqual(Array.from(dequantize(rtnQuantizeLinear({ weight: E, rows: V, cols: H, bits: 8, groupSize: 32, sym: true }))));
    expect(JSON.parse(readFileSync(join(r.outDir, "quant-report.json"), "utf8")).lm_head.untied).toBe(true);
    const out = await openCheckpoint(r.outDir);
    expect(out.has("lm_head.qweight") && out.has("model.embed_tokens.weight") && !out.has("lm_head.weight")).toBe(true);
    await out.close();
    await expectPackedHead(r.outDir, /^q8/);
  });

  it("exports to GGUF with lm_head's own codes: 8-bit sym g32 is Q8_0 exactly", async () => {
    const m = await tiny(false, "model");
    const dir = join(tmp, "rtn-lm8-export");
    await quantizeModel({ modelDir: m.dir, outDir: dir, settings: { ...base, lmHead: { bits: 8, groupSize: 32 } }, backend });
    const g = await exportQuantizedGguf(dir, join(tmp, "lm8.gguf"), {});
    expect(g.exactLayers).toBe(2 * 7 + 1); // 14 linears as Q4_0 + lm_head as Q8_0, none re-rounded
    expect(g.requantizedLayers).toBe(0);
  });

  it("refuses AWQ, AutoAWQ GEMM, GGUF output and a group that does not divide the hidden size, before any compute", async () => {
    const m = await tiny(false, "model");
    const run = (s: Partial<QuantSettings>, format?: "gguf"): Promise<unknown> =>
      quantizeModel({ modelDir: m.dir, outDir: join(tmp, "refused"), settings: { ...base, lmHead: { bits: 8, groupSize: 32 }, ...s }, backend, ...(format ? { format } : {}) });
    await expect(run({ method: "awq", sym: false, format: "gptq_v2", calibSamples: 4 })).rejects.toThrow(/AWQ does not quantize lm_head/);
    await expect(run({}, "gguf")).rejects.toThrow(UsageError);
    await expect(run({ lmHead: { bits: 8, groupSize: 48 } })).rejects.toThrow(/does not divide the hidden size/);
    await expect(run({ lmHead: { bits: 5, groupSize: 32 } })).rejects.toThrow(/unsupported lm_head bit width/);
  });
});

describe("GPTQ dynamic overrides (vLLM get_dynamic_override)", () => {
  const q = parseGptqConfig({
    bits: 4, group_size: 128, sym: true, lm_head: true,
    dynamic: { "-:.*\\.mlp\\.gate_proj": {}, "+:model\\.layers\\.1\\..*": { bits: 8 }, lm_head: { bits: 8, group_size: 32 } },
  }, "quantize_config.json");
  it("the first matching pattern decides, anchored at the start; '-:' keeps the top-level grid", () => {
    expect(gptqLayerConfig(q, "lm_head", "f")).toMatchObject({ bits: 8, groupSize: 32, sym: true });
    expect(gptqLayerConfig(q, "model.layers.1.self_attn.q_proj", "f")).toMatchObject({ bits: 8, groupSize: 128 });
    expect(gptqLayerConfig(q, "model.layers.11.self_attn.q_proj", "f")).toMatchObject({ bits: 4 });
    expect(gptqLayerConfig(q, "model.layers.1.mlp.gate_proj", "f")).toMatchObject({ bits: 4 });
    expect(gptqLayerConfig(q, "xlm_head", "f").bits).toBe(4);
  });
  it("bad patterns and overrides are ConfigErrors naming the key", () => {
    expect(() => parseGptqConfig({ bits: 4, dynamic: { "(": {} } }, "f")).toThrow(ConfigError);
    expect(() => parseGptqConfig({ bits: 4, dynamic: { lm_head: 8 } }, "f")).toThrow(/dynamic\["lm_head"\]/);
    expect(() => gptqLayerConfig(parseGptqConfig({ bits: 4, dynamic: { lm_head: { bits: 5 } } }, "f"), "lm_head", "f")).toThrow(/unsupported GPTQ bits/);
  });
});

/**
 * bitsandbytes 8-bit serialization: pack/unpack identity, the exact tensor names, dtypes and
 * shapes our quantizer writes (as Linear8bitLt._save_to_state_dict does), the config fields
 * (BitsAndBytesConfig.to_dict), and our loader on a third-party-shaped folder built here
 * (another tensor order, two shards with an index, no weight_format as before bitsandbytes
 * 0.43, a skipped module, the minimal config transformers' older versions wrote).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refBackend } from "../../src/backend/ref.ts";
import { openCheckpoint, writeShardedSafetensors } from "../../src/io/checkpoint.ts";
import type { TensorSource as WriteSource } from "../../src/io/safetensors.ts";
import { bnbLayerBase, readBnbInt8Linear } from "../../src/load/bnb-int8-source.ts";
import { loadModel } from "../../src/load/hf-folder.ts";
import { bnbQuantizationConfig, packBnbInt8, parseBnbConfig, unpackBnbInt8, type RawTensor } from "../../src/pack/bnb-int8.ts";
import { dequantizeInt8, quantizeInt8Rows, type Int8Linear } from "../../src/methods/int8.ts";
import { quantizeInt8 } from "../../src/quantize/int8-pipeline.ts";
import { ConfigError, FormatError } from "../../src/util/errors.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

const raw = (dtype: string, shape: number[], a: ArrayBufferView): RawTensor => ({ dtype, shape, data: new Uint8Array(a.buffer, a.byteOffset, a.byteLength) });

describe("pack / unpack", () => {
  const W = Float32Array.from({ length: 6 * 10 }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 7)));
  const q: Int8Linear = { N: 6, K: 10, ...quantizeInt8Rows(W, 6, 10) };

  it("unpack(pack(q)) == q, weight_format is the uint8 scalar 0", () => {
    const t = packBnbInt8(q);
    expect(Array.from(t.weightFormat)).toEqual([0]);
    const back = unpackBnbInt8({ weight: raw("I8", [6, 10], t.weight), SCB: raw("F32", [6], t.SCB), weightFormat: raw("U8", [], t.weightFormat) }, { base: "m", file: "f" });
    expect(back.N).toBe(6);
    expect(back.K).toBe(10);
    expect(Array.from(back.CB)).toEqual(Array.from(q.CB));
    expect(Array.from(back.SCB)).toEqual(Array.from(q.SCB));
  });

  it("refuses wrong dtypes, shapes, weight formats and −128 codes with typed errors", () => {
    const t = packBnbInt8(q);
    const ok = { weight: raw("I8", [6, 10], t.weight), SCB: raw("F32", [6], t.SCB), weightFormat: raw("U8", [], t.weightFormat) };
    const o = { base: "model.layers.0.mlp.up_proj", file: "x.safetensors" };
    expect(() => unpackBnbInt8({ ...ok, weight: raw("U8", [6, 10], t.weight) }, o)).toThrow(FormatError);
    expect(() => unpackBnbInt8({ ...ok, SCB: raw("F16", [6], new Uint16Array(6)) }, o)).toThrow(/SCB/);
    expect(() => unpackBnbInt8({ ...ok, SCB: undefined }, o)).toThrow(/missing .*SCB/);
    expect(() => unpackBnbInt8({ ...ok, weightFormat: raw("U8", [], Uint8Array.of(1)) }, o)).toThrow(/weight_format/);
    const bad = t.weight.slice(); bad[3] = -128;
    expect(() => unpackBnbInt8({ ...ok, weight: raw("I8", [6, 10], bad) }, o)).toThrow(/−128/);
  });

  it("config: BitsAndBytesConfig(load_in_8bit=True).to_dict() fields; 4-bit and fp16-weight files refused", () => {
    const c = bnbQuantizationConfig({ threshold: 6, skipModules: null });
    expect(c).toMatchObject({
      quant_method: "bitsandbytes", load_in_8bit: true, load_in_4bit: false, _load_in_8bit: true, _load_in_4bit: false,
      llm_int8_threshold: 6, llm_int8_skip_modules: null, llm_int8_has_fp16_weight: false, llm_int8_enable_fp32_cpu_offload: false,
    });
    expect(parseBnbConfig(c, "config.json")).toEqual({ threshold: 6, skipModules: null });
    expect(parseBnbConfig({ quant_method: "bitsandbytes", load_in_8bit: true }, "c")).toEqual({ threshold: 6, skipModules: null });
    expect(() => parseBnbConfig({ ...c, load_in_8bit: false, load_in_4bit: true }, "c")).toThrow(ConfigError);
    expect(() => parseBnbConfig({ ...c, llm_int8_has_fp16_weight: true }, "c")).toThrow(/fp16 weights/);
    expect(() => parseBnbConfig({ ...c, llm_int8_threshold: "6" }, "c")).toThrow(/threshold/);
  });
});

describe("bitsandbytes folders on disk", () => {
  let tiny: TinyModel;
  let work: string;
  beforeAll(async () => {
    tiny = await makeTinyModel({ modelType: "llama", hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2, seed: 5, dtype: "BF16" });
    work = mkdtempSync(join(tmpdir(), "qllm-bnb-"));
  });
  afterAll(async () => { await tiny.cleanup(); rmSync(work, { recursive: true, force: true }); });

  it("our quantizer writes exactly bitsandbytes' names, dtypes and shapes, and the config", async () => {
    const out = join(work, "ours");
    await quantizeInt8({
      modelDir: tiny.dir, outDir: out, backend: refBackend,
      settings: { threshold: 6, staticOutliers: false, skipModules: ["model.layers.1.mlp.down_proj"], calibSamples: 0, calibSeqlen: 16, calibSeed: 0, calibText: null },
    });
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as Record<string, unknown>;
    expect(cfg["quantization_config"]).toEqual(bnbQuantizationConfig({ threshold: 6, skipModules: ["model.layers.1.mlp.down_proj"] }));
    const ck = await openCheckpoint(out);
    const src = await openCheckpoint(tiny.dir);
    try {
      const q = "model.layers.0.self_attn.q_proj";
      expect(ck.info(`${q}.weight`)).toMatchObject({ dtype: "I8", shape: [32, 32] });
      expect(ck.info(`${q}.SCB`)).toMatchObject({ dtype: "F32", shape: [32] });
      expect(ck.info(`${q}.weight_format`)).toMatchObject({ dtype: "U8", shape: [] });
      expect(Array.from(ck.readRawSync(`${q}.weight_format`))).toEqual([0]);
      // The codes are the per-row absmax int8 of the original weights.
      const ref = quantizeInt8Rows(src.readF32Sync(`${q}.weight`), 32, 32);
      const got = readBnbInt8Linear(ck, out, q);
      expect(Array.from(got.CB)).toEqual(Array.from(ref.CB));
      expect(Array.from(got.SCB)).toEqual(Array.from(ref.SCB));
      // Skipped module, norms, embeddings and lm_head stay as stored.
      const down = "model.layers.1.mlp.down_proj";
      expect(ck.has(`${down}.SCB`)).toBe(false);
      expect(ck.info(`${down}.weight`).dtype).toBe("BF16");
      expect(Array.from(ck.readRawSync(`${down}.weight`))).toEqual(Array.from(src.readRawSync(`${down}.weight`)));
      for (const n of ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "model.layers.0.input_layernorm.weight"]) {
        expect(ck.info(n).dtype).toBe("BF16");
        expect(Array.from(ck.readRawSync(n))).toEqual(Array.from(src.readRawSync(n)));
      }
    } finally { await ck.close(); await src.close(); }
    const m = await loadModel(out, refBackend);
    expect(m.format).toBe("bnb-int8");
  });

  it("reads a third-party-shaped folder (two shards, other order, no weight_format, minimal config)", async () => {
    const dir = join(work, "third-party");
    const src = await openCheckpoint(tiny.dir);
    const tensors: WriteSource[] = [];
    const expected = new Map<string, Float32Array>();
    try {
      const names = [...src.names()].reverse(); // not our order
      for (const name of names) {
        const info = src.info(name);
        const base = bnbLayerBaseOf(name);
        if (base && !name.includes("layers.0.mlp.gate_proj")) { // gate_proj of block 0 stays 16-bit (a skipped module)
          const [N, K] = info.shape as [number, number];
          const q = quantizeInt8Rows(src.readF32Sync(name), N, K);
          expected.set(name, dequantizeInt8({ N, K, ...q }));
          tensors.push({ name: `${base}.SCB`, dtype: "F32", shape: [N], data: new Uint8Array(q.SCB.buffer) });
          tensors.push({ name, dtype: "I8", shape: [N, K], data: new Uint8Array(q.CB.buffer) });
        } else {
          expected.set(name, src.readF32Sync(name));
          tensors.push({ name, dtype: info.dtype, shape: info.shape, data: src.readRawSync(name) });
        }
      }
    } finally { await src.close(); }
    await writeShardedSafetensors(dir, tensors, { maxShardBytes: 40_000, metadata: { format: "pt" } });
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) writeFileSync(join(dir, f), readFileSync(join(tiny.dir, f)));
    writeFileSync(join(dir, "config.json"), JSON.stringify({
      ...tiny.config, quantization_config: { quant_method: "bitsandbytes", load_in_8bit: true, llm_int8_threshold: 6.0, llm_int8_skip_modules: ["gate_proj"] },
    }));
    const ck = await openCheckpoint(dir);
    try {
      expect(ck.shards.size).toBeGreaterThan(1);
      expect(bnbLayerBase(ck, "model.layers.0.mlp.gate_proj.weight")).toBeNull();
      expect(bnbLayerBase(ck, "model.layers.0.mlp.up_proj.weight")).toBe("model.layers.0.mlp.up_proj");
    } finally { await ck.close(); }
    const m = await loadModel(dir, refBackend);
    expect(m.format).toBe("bnb-int8");
    const L = m.model.weights.blocks[0]!.linears;
    const w = (l: typeof L.up): Float32Array => l.weight as Float32Array;
    expect(Array.from(w(L.up))).toEqual(Array.from(expected.get("model.layers.0.mlp.up_proj.weight")!));
    expect(Array.from(w(L.gate))).toEqual(Array.from(expected.get("model.layers.0.mlp.gate_proj.weight")!));
  });
});

function bnbLayerBaseOf(name: string): string | null {
  return /\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(name) ? name.slice(0, -".weight".length) : null;
}

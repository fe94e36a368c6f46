import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linearTensorName } from "../../src/arch/registry.ts";
import { refBackend } from "../../src/backend/ref.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { writeSafetensors, type TensorSource } from "../../src/io/safetensors.ts";
import { awqSource, parseAwqConfig, readAwqLegacyConfig } from "../../src/load/awq-source.ts";
import { checkpointSource } from "../../src/load/hf-folder.ts";
import { blockForward } from "../../src/nn/block.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { Model } from "../../src/nn/model.ts";
import { RopeTable } from "../../src/nn/rope.ts";
import { loadBlock, loadEmbedding, loadModelWeights, type ModelWeights } from "../../src/nn/weights.ts";
import { packAwqGemm } from "../../src/pack/awq-gemm.ts";
import { applyAwqClip, applyAwqScales } from "../../src/methods/awq-apply.ts";
import { awqQuantizeLinear } from "../../src/methods/awq-grid.ts";
import { awqSearchBlock } from "../../src/methods/awq.ts";
import { dequantize } from "../../src/tensor/quantized.ts";
import { ConfigError, FormatError } from "../../src/util/errors.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

describe("AWQ quantization_config", () => {
  const f = "config.json";
  it("accepts transformers' AwqConfig and AutoAWQ's legacy spelling", () => {
    expect(parseAwqConfig({ quant_method: "awq", bits: 4, group_size: 128, zero_point: true, version: "gemm", modules_to_not_convert: null }, f))
      .toEqual({ bits: 4, groupSize: 128, version: "gemm" });
    expect(parseAwqConfig({ w_bit: 4, q_group_size: 64, zero_point: true, version: "GEMM" }, f)).toEqual({ bits: 4, groupSize: 64, version: "gemm" });
    expect(parseAwqConfig({ quant_method: "awq", bits: 4, group_size: 32 }, f).version).toBe("gemm"); // AwqConfig's default
  });

  it("refuses GEMV and other layouts, naming the field", () => {
    for (const version of ["gemv", "GEMV", "gemv_fast", "marlin", "exllama"]) {
      const err = (() => { try { parseAwqConfig({ quant_method: "awq", bits: 4, group_size: 128, version }, f); } catch (e) { return e; } return null; })();
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).details).toMatchObject({ file: f, field: "quantization_config.version", found: JSON.stringify(version) });
    }
  });

  it("refuses other widths, group sizes, zero_point=false and other methods", () => {
    expect(() => parseAwqConfig({ quant_method: "awq", bits: 8, group_size: 128 }, f)).toThrow(/quantization_config\.bits/);
    expect(() => parseAwqConfig({ w_bit: 3, q_group_size: 128 }, f)).toThrow(/quantization_config\.w_bit/);
    expect(() => parseAwqConfig({ quant_method: "awq", bits: 4, group_size: -1 }, f)).toThrow(/group_size/);
    expect(() => parseAwqConfig({ quant_method: "awq", bits: 4, group_size: 128, zero_point: false }, f)).toThrow(/zero_point/);
    expect(() => parseAwqConfig({ quant_method: "gptq", bits: 4, group_size: 128 }, f)).toThrow(/quant_method/);
  });
});

/**
 * End to end on a tiny model, in the order the pipeline should run it (see the AWQ
 * integration notes): per block search → next inputs from the ORIGINAL block → fold
 * scales → clip → quantize → pack as GEMM. Then read the folder back through awqSource.
 */
describe("AWQ GEMM checkpoint through awqSource", () => {
  let tiny: TinyModel;
  let out: string;
  /** The weights the quantizer ended with (scaled norms, dequantized layers): what the file must reproduce. */
  let expected: ModelWeights;
  const G = 32, L = 24, SAMPLES = 3;

  beforeAll(async () => {
    tiny = await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 128, heads: 4, kvHeads: 4, layers: 2, tokenizer: "generated", seed: 4 });
    const { cfg } = tiny;
    out = mkdtempSync(join(tmpdir(), "qllm-awq-out-"));
    const ckpt = await openCheckpoint(tiny.dir);
    const src = checkpointSource(ckpt, tiny.dir);
    const rope = new RopeTable(cfg);
    const H = cfg.hiddenSize, a = cfg.arch;
    const rand = mulberry32(1);
    const embed = loadEmbedding(cfg, src);
    let X: Float32Array[] = Array.from({ length: SAMPLES }, () => {
      const x = new Float32Array(L * H);
      for (let t = 0; t < L; t++) { const id = Math.floor(rand() * cfg.vocabSize); x.set(embed.subarray(id * H, (id + 1) * H), t * H); }
      return x;
    });
    const kv = cfg.numKvHeads * cfg.headDim;
    const scratch = { k: new Float32Array(L * kv), v: new Float32Array(L * kv) };
    const tensors: TensorSource[] = [{ name: a.embed.hf, dtype: "F32", shape: [cfg.vocabSize, H], data: new Uint8Array(embed.buffer.slice(0)) }];
    const f32 = (x: Float32Array): Uint8Array => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    const i32 = (x: Int32Array | Uint16Array): Uint8Array => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    const blocks = [];
    for (let b = 0; b < cfg.numLayers; b++) {
      const w = loadBlock(cfg, src, b);
      const search = await awqSearchBlock({ cfg, backend: refBackend, rope, block: b, weights: w, inputs: X, seqlen: L, bits: 4, groupSize: G, duoScaling: true, clip: true });
      X = X.map((x) => blockForward({ cfg, backend: refBackend, rope }, b, w, x, L, 0, scratch)); // unquantized, unscaled outputs
      applyAwqScales(cfg, w, search);
      applyAwqClip(w, search);
      const p = a.blockPrefix(b);
      tensors.push({ name: `${p}.${a.attnNorm.hf}.weight`, dtype: "F32", shape: [H], data: f32(w.attnNorm) });
      tensors.push({ name: `${p}.${a.mlpNorm.hf}.weight`, dtype: "F32", shape: [H], data: f32(w.mlpNorm) });
      for (const spec of a.linears) {
        const l = w.linears[spec.name];
        const q = awqQuantizeLinear({ weight: l.weight, rows: l.N, cols: l.K, bits: 4, groupSize: G });
        const t = packAwqGemm(q);
        const base = linearTensorName(a, b, spec).slice(0, -".weight".length);
        tensors.push(
          { name: `${base}.qweight`, dtype: "I32", shape: [l.K, l.N / 8], data: i32(t.qweight) },
          { name: `${base}.qzeros`, dtype: "I32", shape: [l.K / G, l.N / 8], data: i32(t.qzeros) },
          { name: `${base}.scales`, dtype: "F16", shape: [l.K / G, l.N], data: i32(t.scales) },
        );
        l.weight = dequantize(q);
      }
      blocks.push(w);
    }
    const finalNorm = src.readF32Sync(a.finalNorm.hf), lmHead = src.readF32Sync(a.lmHead.hf);
    tensors.push({ name: a.finalNorm.hf, dtype: "F32", shape: [H], data: f32(finalNorm) });
    tensors.push({ name: a.lmHead.hf, dtype: "F32", shape: [cfg.vocabSize, H], data: f32(lmHead) });
    expected = { embed, blocks, finalNorm, lmHead };
    mkdirSync(out, { recursive: true });
    await writeSafetensors(join(out, "model.safetensors"), tensors, { format: "pt" });
    writeFileSync(join(out, "config.json"), JSON.stringify({ ...tiny.config, quantization_config: { quant_method: "awq", bits: 4, group_size: G, zero_point: true, version: "gemm", modules_to_not_convert: null } }));
    writeFileSync(join(out, "quant_config.json"), JSON.stringify({ zero_point: true, q_group_size: G, w_bit: 4, version: "GEMM" }));
    await ckpt.close();
  });
  afterAll(async () => { await tiny.cleanup(); rmSync(out, { recursive: true, force: true }); });

  it("serves every layer's weight exactly as the quantizer dequantized it, and the logits match", async () => {
    const ckpt = await openCheckpoint(out);
    try {
      const legacy = readAwqLegacyConfig(out)!;
      const source = awqSource(ckpt, out, parseAwqConfig(legacy.config, legacy.file));
      expect(source.shape("model.layers.1.mlp.down_proj.weight")).toEqual([64, 128]);
      const weights = loadModelWeights(tiny.cfg, source);
      for (let b = 0; b < tiny.cfg.numLayers; b++) {
        for (const spec of tiny.cfg.arch.linears) expect(weights.blocks[b]!.linears[spec.name].weight).toEqual(expected.blocks[b]!.linears[spec.name].weight);
        expect(weights.blocks[b]!.attnNorm).toEqual(expected.blocks[b]!.attnNorm);
      }
      const tokens = [5, 60, 7, 7, 100, 3, 42];
      const m1 = new Model(tiny.cfg, weights, refBackend), m2 = new Model(tiny.cfg, expected, refBackend);
      expect(m1.forward(tokens, m1.newCache(8))).toEqual(m2.forward(tokens, m2.newCache(8)));
    } finally { await ckpt.close(); }
  });

  it("tensors that do not match the configured group size are a FormatError naming the tensor", async () => {
    const ckpt = await openCheckpoint(out);
    try {
      const source = awqSource(ckpt, out, { bits: 4, groupSize: 64, version: "gemm" });
      expect(() => source.readF32Sync("model.layers.0.self_attn.q_proj.weight")).toThrow(FormatError); // group 64 instead of 32: qzeros/scales have half the rows expected
      expect(() => source.readF32Sync("model.layers.0.self_attn.q_proj.weight")).toThrow(/q_proj\.(qzeros|scales)/);
    } finally { await ckpt.close(); }
  });
});

/**
 * The Format table (src/quantize/formats/): every entry's unpacker reads back exactly what
 * its packer wrote; the GGUF entry writes the same bytes as the HF-GPTQ folder + export
 * route it replaces (no HF folder on the way), checks its grid before any compute, and
 * resumes to the same file; the bnb-int8 entry keeps every unquantized tensor's stored
 * bytes and checks its threshold before any compute.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
import { readModelConfig } from "../../src/load/hf-folder.ts";
import { exportQuantizedGguf } from "../../src/export/gguf-quant.ts";
import { openGguf } from "../../src/io/gguf.ts";
import { openSafetensors, writeSafetensors } from "../../src/io/safetensors.ts";
import { loadBlock } from "../../src/nn/weights.ts";
import { checkpointSource } from "../../src/load/hf-folder.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { rtnQuantizeLinear } from "../../src/methods/rtn.ts";
import { FORMATS } from "../../src/quantize/formats/table.ts";
import type { GridFormatId } from "../../src/quantize/formats/format.ts";
import { InterruptedError, quantizeModel } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";
import type { LinearName } from "../../src/arch/registry.ts";
import type { QuantizedLinear } from "../../src/tensor/quantized.ts";
import { BUNDLED_CALIB_TEXT } from "../../src/load/paths.ts";
import { UsageError } from "../../src/util/errors.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";
import { quantizeInt8Rows } from "../../src/methods/int8.ts";
import type { BnbLinear } from "../../src/quantize/formats/bnb-int8.ts";
import { quantizeInt8 } from "../../src/quantize/int8-pipeline.ts";
import type { Int8Settings } from "../../src/quantize/settings.ts";

const backend = selectBackend();
const tmp = mkdtempSync(join(tmpdir(), "qllm-formats-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const base: QuantSettings = {
  method: "rtn", bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01,
  blockSize: 128, trueSequential: true, format: "gptq", calibSamples: 0, calibSeqlen: 0, calibSeed: 0, calibText: "",
};

let model: TinyModel;
/** The model's config and block 1's weights (f32), the checkpoint closed again. */
async function block1(dir: string): Promise<{ cfg: ReturnType<typeof readModelConfig>; w: ReturnType<typeof loadBlock> }> {
  const cfg = readModelConfig(dir);
  const ckpt = await openCheckpoint(dir);
  try { return { cfg, w: loadBlock(cfg, checkpointSource(ckpt, dir), 1) }; } finally { await ckpt.close(); }
}

async function tiny(): Promise<TinyModel> {
  model ??= await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, seed: 9, tokenizer: "bundled", dir: join(tmp, "model") });
  return model;
}

describe("Format table", () => {
  it.each([
    ["hf-gptq", { format: "gptq" }], ["hf-gptq", { sym: false, format: "gptq_v2", bits: 3 }], ["awq-gemm", { sym: false, groupSize: 64 }], ["gguf", { sym: false }],
  ] as [GridFormatId, Partial<QuantSettings>][])("%s %j: readLinear gives back exactly what blockTensors packed", async (id, over) => {
    const m = await tiny();
    const s = { ...base, ...over };
    const { cfg, w } = await block1(m.dir);
    const q = new Map<LinearName, QuantizedLinear>();
    for (const spec of cfg.arch.linears) {
      const l = w.linears[spec.name];
      q.set(spec.name, rtnQuantizeLinear({ weight: l.weight, rows: l.N, cols: l.K, bits: s.bits, groupSize: s.groupSize, sym: s.sym }));
    }
    const f = FORMATS[id];
    f.check(s, cfg, m.dir, join(tmp, "never"));
    const file = join(tmp, `${id}-${s.bits}.safetensors`);
    await writeSafetensors(file, f.blockTensors(cfg, s, 1, w, q));
    const sf = await openSafetensors(file);
    try {
      for (const spec of cfg.arch.linears) {
        const back = f.readLinear(sf, cfg, s, 1, spec, file), want = q.get(spec.name)!;
        expect({ ...back, bias: undefined }).toEqual({ ...want, bias: undefined });
      }
    } finally { await sf.close(); }
  });

  it.each([
    ["4-bit sym → Q4_0", { sym: true }, "Q4_0", 14], ["4-bit asym → Q4_1", { sym: false, format: "gptq_v2" }, "Q4_1", 14], ["8-bit sym → Q8_0", { bits: 8 }, "Q8_0", 16],
  ] as [string, Partial<QuantSettings>, string, number][])("gguf %s: the same bytes as HF-GPTQ folder + exact export, and no HF folder", async (_, over, type, count) => {
    const m = await tiny();
    const s = { ...base, ...over };
    const a = join(tmp, `a-${type}`), b = join(tmp, `b-${type}`);
    await quantizeModel({ modelDir: m.dir, outDir: join(a, "m.gguf.hf"), settings: s, backend });
    await exportQuantizedGguf(join(a, "m.gguf.hf"), join(a, "m.gguf"), { exact: true });
    const r = await quantizeModel({ modelDir: m.dir, outDir: join(b, "m.gguf"), settings: s, format: "gguf", backend });
    expect(r.summary).toMatch(new RegExp(`${count} ${type}.*14 layers with the quantizer's own codes`));
    expect(readFileSync(join(b, "m.gguf")).equals(readFileSync(join(a, "m.gguf")))).toBe(true);
    const g = openGguf(join(b, "m.gguf"));
    expect(g.tensors.get("blk.1.attn_k.weight")?.type.name).toBe(type);
    g.close();
    expect(existsSync(join(b, "m.gguf.hf"))).toBe(false);
    expect(existsSync(join(b, "m.gguf.partial"))).toBe(false);
    expect(JSON.parse(readFileSync(r.report, "utf8")).layers).toHaveLength(14);
  });

  it("gguf refuses a grid with no block type before any compute", async () => {
    const m = await tiny();
    const out = join(tmp, "bad.gguf");
    const err = await quantizeModel({ modelDir: m.dir, outDir: out, settings: { ...base, groupSize: 64 }, format: "gguf", backend }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).details).toMatchObject({ field: "--format gguf", found: "--group-size 64" });
    expect(existsSync(`${out}.partial`)).toBe(false);
  });

  it("gguf: an interrupted run resumes to the same file", async () => {
    const m = await tiny();
    const calibText = join(tmp, "calib.txt");
    writeFileSync(calibText, readFileSync(BUNDLED_CALIB_TEXT, "utf8").slice(0, 4000)); // a short text: tokenizing the whole split is the slow part
    const s = { ...base, calibSamples: 2, calibSeqlen: 16, calibText }; // calibrated RTN: resume reads block 0 back
    const whole = join(tmp, "whole", "m.gguf"), parts = join(tmp, "parts", "m.gguf");
    await quantizeModel({ modelDir: m.dir, outDir: whole, settings: s, format: "gguf", backend });
    const ac = new AbortController();
    const err = await quantizeModel({
      modelDir: m.dir, outDir: parts, settings: s, format: "gguf", backend, signal: ac.signal,
      onEvent: (e) => { if (e.type === "block-done") ac.abort(); },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InterruptedError);
    await quantizeModel({ modelDir: m.dir, outDir: parts, settings: s, format: "gguf", backend, resume: true });
    expect(readFileSync(parts).equals(readFileSync(whole))).toBe(true);
  });
});

describe("Format table: the bnb-int8 entry (quantize-llm int8)", () => {
  const int8: Int8Settings = { threshold: 6, staticOutliers: false, skipModules: ["k_proj"], calibSamples: 0, calibSeqlen: 16, calibSeed: 0, calibText: null };
  let qwen: TinyModel;
  async function qwenBf16(): Promise<TinyModel> {
    qwen ??= await makeTinyModel({ modelType: "qwen2", hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, seed: 4, dtype: "BF16", dir: join(tmp, "qwen2-bf16") });
    return qwen;
  }

  it("readLinear gives back exactly what blockTensors packed: int8 rows, and a skipped module in the model's dtype", async () => {
    const m = await qwenBf16();
    const { cfg, w } = await block1(m.dir);
    const q = new Map<LinearName, BnbLinear>();
    for (const spec of cfg.arch.linears) {
      const l = w.linears[spec.name];
      q.set(spec.name, spec.name === "k"
        ? { kind: "kept", N: l.N, K: l.K, weight: l.weight }
        : { kind: "int8", N: l.N, K: l.K, ...quantizeInt8Rows(l.weight, l.N, l.K) });
    }
    const f = FORMATS["bnb-int8"];
    f.check(int8, cfg, m.dir, join(tmp, "never"));
    const file = join(tmp, "bnb-int8.safetensors");
    await writeSafetensors(file, f.blockTensors(cfg, int8, 1, w, q));
    const sf = await openSafetensors(file);
    try {
      expect(sf.tensors.get("model.layers.1.self_attn.k_proj.weight")?.dtype).toBe("BF16");
      expect(sf.tensors.get("model.layers.1.self_attn.q_proj.weight")?.dtype).toBe("I8");
      for (const spec of cfg.arch.linears) expect(f.readLinear(sf, cfg, int8, 1, spec, file)).toEqual(q.get(spec.name));
    } finally { await sf.close(); }
  });

  it("the folder keeps biases, norms and skipped modules as stored (bf16 bytes), quantizes the rest, leaves no .partial", async () => {
    const m = await qwenBf16();
    const out = join(tmp, "qwen2-int8");
    const r = await quantizeInt8({ modelDir: m.dir, outDir: out, settings: int8, backend });
    expect(r.files).toEqual(["model.safetensors"]);
    expect(existsSync(`${out}.partial`)).toBe(false);
    const ck = await openCheckpoint(out), src = await openCheckpoint(m.dir);
    try {
      let biases = 0, tensorBytes = 0;
      for (const name of ck.names()) {
        const info = ck.info(name);
        tensorBytes += ck.readRawSync(name).length;
        if (name.endsWith(".SCB") || name.endsWith(".weight_format") || info.dtype === "I8") continue;
        if (name.endsWith(".bias")) biases++;
        expect(info.dtype, name).toBe("BF16");
        expect(Buffer.from(ck.readRawSync(name)).equals(Buffer.from(src.readRawSync(name))), name).toBe(true);
      }
      expect(biases).toBe(2 * 3); // q, k, v of each block
      expect(r.totalSize).toBe(tensorBytes);
      const qName = "model.layers.0.self_attn.q_proj";
      const want = quantizeInt8Rows(src.readF32Sync(`${qName}.weight`), 64, 64);
      expect(Buffer.from(ck.readRawSync(`${qName}.weight`)).equals(Buffer.from(want.CB.buffer))).toBe(true);
    } finally { await ck.close(); await src.close(); }
  });

  it.each([
    ["a negative threshold", { threshold: -1 }, "--threshold"],
    ["--static-outliers with threshold 0", { threshold: 0, staticOutliers: true, calibSamples: 2, calibText: BUNDLED_CALIB_TEXT }, "--static-outliers"],
  ] as [string, Partial<Int8Settings>, string][])("refuses %s before any compute", async (_, over, field) => {
    const m = await qwenBf16();
    const out = join(tmp, "bad-int8");
    const err = await quantizeInt8({ modelDir: m.dir, outDir: out, settings: { ...int8, ...over }, backend }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).details.field).toBe(field);
    expect(existsSync(`${out}.partial`)).toBe(false);
  });
});

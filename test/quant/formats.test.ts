/**
 * The Format table (src/quantize/formats/): every entry's unpacker reads back exactly what
 * its packer wrote; the GGUF entry writes the same bytes as the HF-GPTQ folder + export
 * route it replaces (no HF folder on the way), checks its grid before any compute, and
 * resumes to the same file.
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
import type { FormatId } from "../../src/quantize/formats/format.ts";
import { InterruptedError, quantizeModel } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";
import type { LinearName } from "../../src/arch/registry.ts";
import type { QuantizedLinear } from "../../src/tensor/quantized.ts";
import { BUNDLED_CALIB_TEXT } from "../../src/load/paths.ts";
import { UsageError } from "../../src/util/errors.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

const backend = selectBackend();
const tmp = mkdtempSync(join(tmpdir(), "qllm-formats-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const base: QuantSettings = {
  method: "rtn", bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01,
  blockSize: 128, trueSequential: true, format: "gptq", calibSamples: 0, calibSeqlen: 0, calibSeed: 0, calibText: "",
};

let model: TinyModel;
async function tiny(): Promise<TinyModel> {
  model ??= await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, seed: 9, tokenizer: "bundled", dir: join(tmp, "model") });
  return model;
}

describe("Format table", () => {
  it.each([
    ["hf-gptq", { format: "gptq" }], ["hf-gptq", { sym: false, format: "gptq_v2", bits: 3 }], ["awq-gemm", { sym: false, groupSize: 64 }], ["gguf", { sym: false }],
  ] as [FormatId, Partial<QuantSettings>][])("%s %j: readLinear gives back exactly what blockTensors packed", async (id, over) => {
    const m = await tiny();
    const s = { ...base, ...over };
    const cfg = readModelConfig(m.dir);
    const ckpt = await openCheckpoint(m.dir);
    const w = loadBlock(cfg, checkpointSource(ckpt, m.dir), 1);
    await ckpt.close();
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

/**
 * `quantize-llm int8 --quantize-lm-head`: lm_head written in the bitsandbytes layout
 * (weight I8, SCB, weight_format) with an explicit llm_int8_skip_modules that leaves it out
 * (transformers' default list keeps lm_head in 16 bits), and run by our loader on the
 * LLM.int8() kernel: the forward pass equals, bit for bit, the model whose int8 linears
 * (lm_head included) run the plain-TS int8MatmulRef on the file's codes. Tied models get an
 * int8 copy of the embedding as lm_head, the embedding kept as stored.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
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
import { describeKernelPath } from "../../src/load/kernel-path.ts";
import { BUNDLED_CALIB_TEXT } from "../../src/load/paths.ts";
import { quantizeInt8Rows, type Int8Linear } from "../../src/methods/int8.ts";
import { Model } from "../../src/nn/model.ts";
import { quantizeInt8, type Int8Settings } from "../../src/quantize/int8-pipeline.ts";
import { UsageError } from "../../src/util/errors.ts";
import { int8RefBackend } from "../helpers/int8-ref-backend.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

let nb: NativeBackend;
let tiny: TinyModel, tied: TinyModel;
let work: string;
const base: Int8Settings = { threshold: 6, staticOutliers: false, skipModules: null, calibSamples: 0, calibSeqlen: 16, calibSeed: 0, calibText: null };
beforeAll(async () => {
  nb = createNativeBackend({ threads: 1 });
  tiny = await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 96, layers: 2, heads: 4, kvHeads: 2, seed: 21, dtype: "BF16", tokenizer: "bundled" });
  tied = await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 96, layers: 2, heads: 4, kvHeads: 2, seed: 22, dtype: "BF16", tokenizer: "bundled", tieEmbeddings: true });
  work = mkdtempSync(join(tmpdir(), "qllm-int8-lmhead-"));
});
afterAll(async () => { await tiny.cleanup(); await tied.cleanup(); rmSync(work, { recursive: true, force: true }); });

const run = async (model: TinyModel, name: string, s: Partial<Int8Settings>): Promise<string> => {
  const outDir = join(work, name);
  await quantizeInt8({ modelDir: model.dir, outDir, backend: refBackend, overwrite: true, settings: { ...base, ...s } });
  return outDir;
};

/** Every int8 handle of the model (blocks and lm_head) run by int8MatmulRef on the codes read from the file. */
async function referenceTwin(m: LoadedModel, folder: string): Promise<Model> {
  const ck = await openCheckpoint(folder);
  const spec = new Map<Int8PackedWeight, Int8Linear>();
  try {
    const a = m.cfg.arch;
    m.model.weights.blocks.forEach((blk, b) => {
      for (const s of a.linears) {
        const w = blk.linears[s.name].weight;
        if (w instanceof Int8PackedWeight) spec.set(w, readBnbInt8Linear(ck, folder, linearTensorName(a, b, s).slice(0, -".weight".length)));
      }
    });
    const head = m.model.weights.lmHead;
    if (head instanceof Int8PackedWeight) spec.set(head, readBnbInt8Linear(ck, folder, "lm_head"));
  } finally { await ck.close(); }
  const backend = int8RefBackend(nb, spec);
  return new Model(m.cfg, m.model.weights, backend);
}

const logitsOf = (model: Model, tokens: number[]): Float32Array => model.forward(tokens, model.newCache(tokens.length), { logits: "all" }).slice();

describe("int8 --quantize-lm-head (bitsandbytes layout)", () => {
  it("writes lm_head as CB/SCB/weight_format with llm_int8_skip_modules: [], runs it on the int8 kernel, bit-equal to int8MatmulRef", async () => {
    const dir = await run(tiny, "head", { quantizeLmHead: true });
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { quantization_config: Record<string, unknown>; tie_word_embeddings: boolean };
    expect(cfg.quantization_config["llm_int8_skip_modules"]).toEqual([]); // explicit: transformers then converts lm_head too
    expect(cfg.tie_word_embeddings).toBe(false);
    const V = tiny.cfg.vocabSize, H = tiny.cfg.hiddenSize;
    const out = await openCheckpoint(dir), orig = await openCheckpoint(tiny.dir);
    try {
      expect(out.info("lm_head.weight")).toMatchObject({ dtype: "I8", shape: [V, H] });
      expect(out.info("lm_head.SCB")).toMatchObject({ dtype: "F32", shape: [V] });
      expect(out.info("lm_head.weight_format")).toMatchObject({ dtype: "U8", shape: [] });
      expect(out.info("model.embed_tokens.weight").dtype).toBe("BF16");
      const want = quantizeInt8Rows(orig.readF32Sync("lm_head.weight"), V, H); // per-row absmax of the stored head
      const got = readBnbInt8Linear(out, dir, "lm_head");
      expect(Buffer.from(got.CB.buffer).equals(Buffer.from(want.CB.buffer))).toBe(true);
      expect(Array.from(got.SCB)).toEqual(Array.from(want.SCB));
    } finally { await out.close(); await orig.close(); }
    // the block linears are unchanged by the option, byte for byte
    const plain = await run(tiny, "no-head", {});
    const p = await openCheckpoint(plain), q = await openCheckpoint(dir);
    try {
      for (const n of ["model.layers.1.mlp.down_proj.weight", "model.layers.0.self_attn.q_proj.SCB"]) expect(Buffer.from(q.readRawSync(n)).equals(Buffer.from(p.readRawSync(n)))).toBe(true);
      expect(p.info("lm_head.weight").dtype).toBe("BF16");
      expect(p.has("lm_head.SCB")).toBe(false);
    } finally { await p.close(); await q.close(); }
    expect(JSON.parse(readFileSync(join(plain, "config.json"), "utf8")).quantization_config.llm_int8_skip_modules).toBeNull();

    const m = await loadModel(dir, nb);
    expect(m.weights).toBe("packed");
    const head = m.model.weights.lmHead;
    expect(head).toBeInstanceOf(Int8PackedWeight);
    expect((head as Int8PackedWeight).run).toEqual({ threshold: 6, staticCols: null });
    expect(describeKernelPath(m.model)).toMatch(/lm_head llm-int8\/i16 \(LLM\.int8\(\) t=6 dynamic/);
    const tokens = Array.from({ length: 9 }, (_, i) => (i * 37 + 5) % m.cfg.vocabSize);
    expect(Array.from(logitsOf(m.model, tokens))).toEqual(Array.from(logitsOf(await referenceTwin(m, dir), tokens)));
  });

  it("a tied model: the embedding is quantized as lm_head, the output untied, the embedding kept as stored", async () => {
    const dir = await run(tied, "tied", { quantizeLmHead: true });
    expect(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).tie_word_embeddings).toBe(false);
    const V = tied.cfg.vocabSize, H = tied.cfg.hiddenSize;
    const out = await openCheckpoint(dir), orig = await openCheckpoint(tied.dir);
    try {
      expect(orig.has("lm_head.weight")).toBe(false);
      expect(Buffer.from(out.readRawSync("model.embed_tokens.weight")).equals(Buffer.from(orig.readRawSync("model.embed_tokens.weight")))).toBe(true);
      const want = quantizeInt8Rows(orig.readF32Sync("model.embed_tokens.weight"), V, H);
      expect(Buffer.from(readBnbInt8Linear(out, dir, "lm_head").CB.buffer).equals(Buffer.from(want.CB.buffer))).toBe(true);
    } finally { await out.close(); await orig.close(); }
    const m = await loadModel(dir, nb);
    expect(m.model.weights.lmHead).toBeInstanceOf(Int8PackedWeight);
    const tokens = [3, 1, 4, 1, 5, 9, 2, 6];
    expect(Array.from(logitsOf(m.model, tokens))).toEqual(Array.from(logitsOf(await referenceTwin(m, dir), tokens)));
  });

  it("keeps a given skip list as is, refuses one that names lm_head, and reports lm_head's input (the final norm) with static columns", async () => {
    const dir = await run(tiny, "skip", { quantizeLmHead: true, skipModules: ["model.layers.1.mlp.down_proj"] });
    expect(JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).quantization_config.llm_int8_skip_modules).toEqual(["model.layers.1.mlp.down_proj"]);
    await expect(run(tiny, "refused", { quantizeLmHead: true, skipModules: ["lm_head"] })).rejects.toThrow(UsageError);
    const low = join(work, "static");
    const r = await quantizeInt8({
      modelDir: tiny.dir, outDir: low, backend: refBackend, overwrite: true,
      settings: { ...base, threshold: 0.75, staticOutliers: true, calibSamples: 4, calibSeqlen: 32, calibText: BUNDLED_CALIB_TEXT, quantizeLmHead: true },
    });
    const head = r.outliers.find((o) => o.input === "final_norm");
    expect(head).toMatchObject({ block: 2, layers: ["lm_head"], inFeatures: 64, tokens: 4 * 32 });
    expect(head!.outlierFeatures).toBeGreaterThan(0);
    const file = JSON.parse(readFileSync(join(low, "int8-outliers.json"), "utf8")) as { columns: Record<string, number[]> };
    expect(file.columns["lm_head"]).toEqual(head!.columns);
    const m = await loadModel(low, nb, { int8: { staticOutliers: true } });
    expect(Array.from((m.model.weights.lmHead as Int8PackedWeight).run.staticCols ?? [])).toEqual(head!.columns);
  });
});

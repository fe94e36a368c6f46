/**
 * GGUF file straight from the quantizer's codes (FORMATS.md §4): a grid that IS a ggml block
 * grid is written with its own codes, no second rounding — 4-bit group 32 → Q4_0 (sym) /
 * Q4_1 (asym, AWQ), 8-bit sym group 32 → Q8_0. Embeddings and lm_head are Q8_0, norms F32.
 *
 * Block files hold each linear as the plain QuantizedLinear (codes U8 [N, K], scales F32
 * [N, G], zeros U8 [N, G], g_idx I32 [K]), so resume reads back exactly what was quantized;
 * `finish` streams the GGUF from them through export/gguf-quant.ts's writer (the same code
 * that exports an HF-GPTQ folder, so both give the same bytes). No HF folder is written.
 * Tensors are stored as the HF folder would hold them (norms and embeddings rounded to the
 * model's torch_dtype, biases to f16), which keeps the file identical to the former
 * "HF folder, then export" route.
 */
import { renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { ModelConfig } from "../../arch/config.ts";
import { linearShapes } from "../../arch/shapes.ts";
import { writeQuantizedGguf, type QuantSource } from "../../export/gguf-quant.ts";
import { ggufTokenizerKv } from "../../export/gguf-tokenizer.ts";
import type { Checkpoint } from "../../io/checkpoint.ts";
import type { SafetensorsFile, TensorSource as WriteSource } from "../../io/safetensors.ts";
import { fromF32, toF32, type DType } from "../../tensor/dtype.ts";
import { groupCount, groupLength, type QuantizedLinear } from "../../tensor/quantized.ts";
import { loadTokenizer } from "../../tokenizer/tokenizer.ts";
import { UsageError } from "../../util/errors.ts";
import type { QuantSettings } from "../settings.ts";
import type { BlockTensorReader, Format } from "./format.ts";
import { bytesOf, int32Of, reportJson } from "./hf-folder.ts";

/** f32 values as the HF folder would store them in `dtype` (the former route read them back from there). */
function asStored(dtype: "F32" | "F16" | "BF16", x: Float32Array): Float32Array {
  return toF32(dtype, fromF32(dtype, x));
}

function blockLinearTensors(base: string, q: QuantizedLinear): WriteSource[] {
  const G = groupCount(q);
  const out: WriteSource[] = [
    // copies: the pipeline reuses q's arrays for the next block while this one is written
    { name: `${base}.codes`, dtype: "U8", shape: [q.N, q.K], data: q.codes.slice() },
    { name: `${base}.scales`, dtype: "F32", shape: [q.N, G], data: bytesOf(q.scales.slice()) },
    { name: `${base}.zeros`, dtype: "U8", shape: [q.N, G], data: q.zeros.slice() },
    { name: `${base}.g_idx`, dtype: "I32", shape: [q.K], data: bytesOf(q.gIdx.slice()) },
  ];
  if (q.bias) out.push({ name: `${base}.bias`, dtype: "F16", shape: [q.N], data: fromF32("F16", q.bias) });
  return out;
}

function readBlockLinear(f: BlockTensorReader, base: string, s: QuantSettings, N: number, K: number): QuantizedLinear {
  const groupSize = groupLength(s.groupSize, K);
  return {
    N, K, bits: s.bits, groupSize, sym: s.sym,
    codes: f.readRawSync(`${base}.codes`).slice(),
    scales: f.readF32Sync(`${base}.scales`),
    zeros: f.readRawSync(`${base}.zeros`).slice(),
    gIdx: int32Of(f.readRawSync(`${base}.g_idx`)),
  };
}

/** The tensors of a finished run by HF name: original ones from the checkpoint, block ones from the block files. */
function runTensors(cfg: ModelConfig, ckpt: Checkpoint, blockFiles: readonly SafetensorsFile[]): Pick<Checkpoint, "has" | "readF32Sync"> {
  const inBlock = new Map<string, SafetensorsFile>();
  for (const f of blockFiles) for (const name of f.tensors.keys()) inBlock.set(name, f);
  const dtype = cfg.torchDtype;
  return {
    has: (name) => inBlock.has(name) || ckpt.has(name),
    readF32Sync: (name) => {
      const f = inBlock.get(name);
      if (f) return f.readF32Sync(name);
      const x = ckpt.readF32Sync(name);
      return ckpt.info(name).dtype === (dtype as DType) ? x : asStored(dtype, x);
    },
  };
}

export const ggufFormat: Format = {
  id: "gguf",
  title: "GGUF file",
  kind: "file",
  check(s, cfg, modelDir, out) {
    if (s.lmHead) {
      throw new UsageError("--quantize-lm-head is for HF-GPTQ folders", {
        field: "--quantize-lm-head", found: "--format gguf", hint: "the GGUF output always stores output.weight as Q8_0; drop --quantize-lm-head",
      });
    }
    const fail = (found: string): never => {
      throw new UsageError("these settings have no exact GGUF block type", {
        file: out, field: "--format gguf", expected: "4-bit group 32 (Q4_0 with --sym, Q4_1 with --asym or awq) or 8-bit --sym group 32 (Q8_0), contiguous groups",
        found, hint: "use --bits 4 --group-size 32 (and drop --act-order or add --static-groups), or write an HF folder and convert it with quantize-llm export",
      });
    };
    if (s.groupSize !== 32) fail(`--group-size ${s.groupSize}`);
    if (s.bits !== 4 && !(s.bits === 8 && s.sym)) fail(`--bits ${s.bits}${s.sym ? "" : " --asym"}`);
    if (s.actOrder && !s.staticGroups) fail("--act-order without --static-groups (non-contiguous groups)");
    for (const [name, [, K]] of Object.entries(linearShapes(cfg))) {
      if (K % 32 !== 0) {
        throw new UsageError(`${name}_proj cannot be stored in ggml blocks of 32`, { file: `${modelDir}/config.json`, field: "--format gguf", expected: "in_features a multiple of 32", found: String(K) });
      }
    }
    // The tokenizer must be one GGUF can hold (a refusal now, not after the compute).
    ggufTokenizerKv(loadTokenizer(modelDir, cfg.eosTokenIds), cfg.vocabSize, join(modelDir, "tokenizer.json"));
  },
  blockTensors(cfg, s, b, w, q) {
    const a = cfg.arch;
    const p = a.blockPrefix(b);
    const dtype = cfg.torchDtype;
    const H = cfg.hiddenSize;
    const out: WriteSource[] = [
      { name: `${p}.${a.attnNorm.hf}.weight`, dtype: "F32", shape: [H], data: bytesOf(asStored(dtype, w.attnNorm)) },
      { name: `${p}.${a.mlpNorm.hf}.weight`, dtype: "F32", shape: [H], data: bytesOf(asStored(dtype, w.mlpNorm)) },
    ];
    for (const spec of a.linears) out.push(...blockLinearTensors(`${p}.${spec.hf}`, q.get(spec.name)!));
    return out;
  },
  readLinear(f, cfg, s, b, spec) {
    const [N, K] = linearShapes(cfg)[spec.name];
    return readBlockLinear(f, `${cfg.arch.blockPrefix(b)}.${spec.hf}`, s, N, K);
  },
  async finish(o) {
    const { cfg, s } = o;
    const shapes = linearShapes(cfg);
    const bases = new Map<string, [number, number]>();
    for (let b = 0; b < cfg.numLayers; b++) for (const spec of cfg.arch.linears) bases.set(`${cfg.arch.blockPrefix(b)}.${spec.hf}`, shapes[spec.name]);
    const fileOf = new Map<string, SafetensorsFile>();
    for (const f of o.blockFiles) for (const name of f.tensors.keys()) if (name.endsWith(".codes")) fileOf.set(name.slice(0, -".codes".length), f);
    const quant: QuantSource = {
      kind: s.method === "awq" ? "awq" : "gptq",
      baseOf: (name) => (name.endsWith(".weight") && bases.has(name.slice(0, -".weight".length)) ? name.slice(0, -".weight".length) : null),
      read: (base) => { const [N, K] = bases.get(base)!; return readBlockLinear(fileOf.get(base)!, base, s, N, K); },
      describe: `${s.method} ${s.bits}-bit ${s.sym ? "sym" : "asym"} group ${s.groupSize}`,
    };
    const g = await writeQuantizedGguf({
      cfg, tokenizerDir: o.modelDir, name: `${basename(o.out)}.hf`, tensors: runTensors(cfg, o.ckpt, o.blockFiles), quant: () => quant, where: o.modelDir,
    }, o.path, { exact: true });
    // The report is written inside the work folder and renamed next to the output: only final names appear there.
    const report = `${o.out}.quant-report.json`;
    const draft = join(dirname(o.path), "quant-report.json");
    writeFileSync(draft, reportJson(o));
    renameSync(draft, report);
    const summary = `${Object.entries(g.types).map(([t, n]) => `${n} ${t}`).join(", ")}; ${g.bitsPerWeight.toFixed(2)} bits/weight; ${g.exactLayers} layers with the quantizer's own codes`;
    return { files: [basename(o.out)], report, summary };
  },
};


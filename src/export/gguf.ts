/**
 * Export a plain HF model folder (llama, mistral → GGUF arch "llama"; qwen2 → "qwen2")
 * to one F32 or F16 GGUF file that llama.cpp / node-llama-cpp / Ollama load
 * (FORMATS.md §4; keys and tensors as llama.cpp's convert_hf_to_gguf.py writes them).
 *
 * Streams: the header is built from config.json + tokenizer.json, then tensors are read,
 * converted and written one at a time into a temp file renamed when complete.
 */
import { basename, resolve } from "node:path";
import type { ModelConfig } from "../arch/config.ts";
import { writeOverlapped } from "../io/atomic.ts";
import { openCheckpoint, type Checkpoint } from "../io/checkpoint.ts";
import { GgufWriter, kv, type GgufValue } from "../io/gguf.ts";
import { readModelConfig } from "../load/hf-folder.ts";
import { fromF32 } from "../tensor/dtype.ts";
import { loadTokenizer } from "../tokenizer/tokenizer.ts";
import { ConfigError, FormatError, UsageError } from "../util/errors.ts";
import { ggufTensorPlan, llama3RopeFactors, permuteQK, qkRowOrder, type GgufFloatType, type GgufTensorPlanEntry } from "../arch/gguf-tensors.ts";
import type { Backend } from "../backend/backend.ts";
import { selectBackend } from "../backend/select.ts";
import { weightKernels, type WeightKernels } from "../backend/weight-kernels.ts";
import { Scratch } from "../load/canonical.ts";
import { readStored } from "../load/raw-read.ts";
import { ggufTokenizerKv } from "./gguf-tokenizer.ts";

/** `LlamaFileType` in gguf-py (llama.h `llama_ftype`). */
const FILE_TYPE: Readonly<Record<GgufFloatType, number>> = { f32: 0, f16: 1 };
/** `GGML_QUANT_VERSION` (ggml.h); convert_hf_to_gguf.py writes it for every file. */
const GGML_QUANT_VERSION = 2;
/** Largest finite f16. */
const F16_MAX = 65504;

export interface GgufExportOptions {
  type: GgufFloatType;
  /** Whose conversion kernels run (default: the native backend when it loads, else the TS references). */
  backend?: Backend;
  /** general.name (default: the model folder's name). */
  name?: string;
  /** Data alignment (default 32). */
  alignment?: number;
  /** Called after each tensor is written. */
  onTensor?: (done: number, total: number, name: string) => void;
}

export interface GgufExportResult {
  path: string;
  /** File size in bytes. */
  bytes: number;
  tensorCount: number;
  kvCount: number;
  architecture: string;
  /** tokenizer.ggml.pre written. */
  pre: string;
  warnings: string[];
}

/** The `<arch>.*` and `general.*` keys for a model config (set_gguf_parameters in convert_hf_to_gguf.py). */
export function ggufModelKv(cfg: ModelConfig, type: GgufFloatType, name: string): [string, GgufValue][] {
  const A = cfg.arch.ggufArch;
  const kvs: [string, GgufValue][] = [
    ["general.architecture", kv.str(A)],
    ["general.type", kv.str("model")],
    ["general.name", kv.str(name)],
    ["general.file_type", kv.u32(FILE_TYPE[type])],
    ["general.quantization_version", kv.u32(GGML_QUANT_VERSION)],
    [`${A}.vocab_size`, kv.u32(cfg.vocabSize)],
    [`${A}.context_length`, kv.u32(cfg.maxPositionEmbeddings)],
    [`${A}.embedding_length`, kv.u32(cfg.hiddenSize)],
    [`${A}.block_count`, kv.u32(cfg.numLayers)],
    [`${A}.feed_forward_length`, kv.u32(cfg.intermediateSize)],
    [`${A}.rope.dimension_count`, kv.u32(cfg.headDim)],
    [`${A}.attention.head_count`, kv.u32(cfg.numHeads)],
    [`${A}.attention.head_count_kv`, kv.u32(cfg.numKvHeads)],
    [`${A}.attention.layer_norm_rms_epsilon`, kv.f32(cfg.rmsNormEps)],
    [`${A}.rope.freq_base`, kv.f32(cfg.ropeTheta)],
  ];
  // convert_hf_to_gguf.py writes key/value lengths whenever config.json has head_dim; llama.cpp
  // otherwise assumes embedding_length / head_count.
  if (cfg.raw["head_dim"] !== undefined || cfg.headDim * cfg.numHeads !== cfg.hiddenSize) {
    kvs.push([`${A}.attention.key_length`, kv.u32(cfg.headDim)], [`${A}.attention.value_length`, kv.u32(cfg.headDim)]);
  }
  if (cfg.ropeScaling?.type === "linear") {
    kvs.push([`${A}.rope.scaling.type`, kv.str("linear")], [`${A}.rope.scaling.factor`, kv.f32(cfg.ropeScaling.factor)]);
  }
  // llama3 rope scaling has no keys: it is the rope_freqs.weight tensor (see ggufTensorPlan).
  return kvs;
}

export async function exportGguf(hfDir: string, outFile: string, opts: GgufExportOptions): Promise<GgufExportResult> {
  if (opts.type !== "f32" && opts.type !== "f16") {
    throw new UsageError("unsupported GGUF export type", { field: "--type", expected: '"f32" or "f16"', found: JSON.stringify(opts.type) });
  }
  const cfg = readModelConfig(hfDir);
  const warnings = [...cfg.warnings];
  if (cfg.ropeScaling?.type === "llama3" && !cfg.arch.ggufPermuteQK) {
    throw new ConfigError("llama3 rope scaling is only supported for the GGUF llama architecture", {
      file: resolve(hfDir, "config.json"), field: "rope_scaling", found: `model_type ${cfg.modelType} (GGUF arch ${cfg.arch.ggufArch})`,
      hint: "llama.cpp reads rope_freqs.weight only for llama-architecture models",
    });
  }
  const tok = loadTokenizer(hfDir, cfg.eosTokenIds);
  const tokMeta = ggufTokenizerKv(tok, cfg.vocabSize, resolve(hfDir, "tokenizer.json"));
  warnings.push(...tokMeta.warnings);
  const kvs = [...ggufModelKv(cfg, opts.type, opts.name ?? basename(resolve(hfDir))), ...tokMeta.kvs];
  const plan = ggufTensorPlan(cfg, opts.type);

  const ckpt = await openCheckpoint(hfDir);
  try {
    checkCheckpoint(cfg, ckpt, plan, hfDir, warnings);
    const w = await GgufWriter.create(outFile, kvs, plan.map((p) => ({ name: p.gguf, dims: [...p.shape].reverse(), type: p.ggmlType })),
      opts.alignment !== undefined ? { alignment: opts.alignment } : {});
    const kernels = weightKernels(opts.backend ?? selectBackend({ backend: "auto" }));
    const buffers = new Scratch();
    // Tensor i + 1 is read and converted while tensor i is being written (two output slots).
    await writeOverlapped(w, plan.length, (i) => tensorBytes(cfg, ckpt, plan[i]!, hfDir, kernels, buffers, `out${i % 2}`),
      (i, bytes) => w.writeTensor(plan[i]!.gguf, bytes).then(() => opts.onTensor?.(i + 1, plan.length, plan[i]!.gguf)));
    return {
      path: resolve(outFile), bytes: w.totalBytes, tensorCount: plan.length, kvCount: kvs.length,
      architecture: cfg.arch.ggufArch, pre: tokMeta.pre, warnings,
    };
  } finally {
    await ckpt.close();
  }
}

/** Every planned tensor exists with the shape config.json implies; note tensors we leave out. */
function checkCheckpoint(cfg: ModelConfig, ckpt: Checkpoint, plan: readonly GgufTensorPlanEntry[], dir: string, warnings: string[]): void {
  const used = new Set<string>();
  for (const p of plan) {
    if (p.hf === null) continue;
    used.add(p.hf);
    if (!ckpt.has(p.hf)) {
      throw new FormatError(`missing tensor "${p.hf}"`, {
        file: dir, field: p.hf, expected: `a tensor of shape [${p.shape.join(", ")}] (for GGUF ${p.gguf})`, found: "no such tensor",
        hint: "the checkpoint does not match config.json (wrong folder, or an incomplete download?)",
      });
    }
    const s = ckpt.info(p.hf).shape;
    if (s.length !== p.shape.length || s.some((d, i) => d !== p.shape[i])) {
      throw new FormatError(`tensor "${p.hf}" has the wrong shape`, {
        file: dir, field: p.hf, expected: `[${p.shape.join(", ")}] (from config.json)`, found: `[${s.join(", ")}]`,
        hint: "config.json and the weights disagree: check hidden_size, head counts, intermediate_size and vocab_size",
      });
    }
  }
  const lmHead = cfg.arch.lmHead.hf;
  if (cfg.tieWordEmbeddings && ckpt.has(lmHead)) {
    const a = ckpt.readF32Sync(lmHead), b = ckpt.readF32Sync(cfg.arch.embed.hf);
    if (a.length !== b.length || a.some((x, i) => x !== b[i])) {
      throw new FormatError("tie_word_embeddings is true but lm_head.weight differs from the embedding", {
        file: dir, field: lmHead, expected: "lm_head.weight equal to model.embed_tokens.weight (or absent)", found: "different values",
        hint: "set tie_word_embeddings to false in config.json if the model has its own output matrix",
      });
    }
    used.add(lmHead);
  }
  const unused = ckpt.names().filter((n) => !used.has(n));
  if (unused.length > 0) {
    warnings.push(`${unused.length} checkpoint tensor(s) not exported: ${unused.slice(0, 5).join(", ")}${unused.length > 5 ? ", ..." : ""}`);
  }
}

/**
 * One planned tensor's GGUF bytes: read, permute (llama q/k), encode. Matrices go from their
 * stored elements to F16/F32 in one kernel pass (convertRows: the permutation as a row order,
 * the F16 range check included), into a reused buffer; vectors take the per-element path.
 */
function tensorBytes(cfg: ModelConfig, ckpt: Checkpoint, p: GgufTensorPlanEntry, dir: string, kernels: WeightKernels, buffers: Scratch, slot: string): Uint8Array {
  if (p.hf !== null && p.shape.length === 2) {
    const [N, K] = p.shape as [number, number];
    const { data, dtype } = readStored(ckpt, p.hf, buffers);
    const rows = p.permuteHeads !== undefined ? qkRowOrder(N, p.permuteHeads) : null;
    const bytes = buffers.u8(slot, N * K * (p.ggmlType === "F16" ? 2 : 4));
    const out = p.ggmlType === "F16" ? new Uint16Array(bytes.buffer, 0, N * K) : new Float32Array(bytes.buffer, 0, N * K);
    const bad = kernels.convertRows(data, dtype, rows, N, K, out, p.ggmlType);
    if (bad >= 0) {
      const src = (rows?.[Math.floor(bad / K)] ?? Math.floor(bad / K)) * K + (bad % K);
      throw f16Overflow(p, dir, ckpt.readF32Sync(p.hf)[src]!);
    }
    return bytes;
  }
  let x = p.hf === null ? llama3RopeFactors(cfg) : ckpt.readF32Sync(p.hf);
  if (p.permuteHeads !== undefined) x = permuteQK(x, p.permuteHeads, p.shape.length === 2 ? p.shape[1]! : 1);
  if (p.ggmlType === "F16") {
    for (let i = 0; i < x.length; i++) {
      if (Math.abs(x[i]!) > F16_MAX) throw f16Overflow(p, dir, x[i]!);
    }
  }
  return fromF32(p.ggmlType, x);
}

function f16Overflow(p: GgufTensorPlanEntry, dir: string, value: number): FormatError {
  return new FormatError(`tensor "${p.hf}" does not fit in F16`, {
    file: dir, field: p.hf ?? p.gguf, expected: `|values| ≤ ${F16_MAX}`, found: String(value), hint: "export with --type f32",
  });
}

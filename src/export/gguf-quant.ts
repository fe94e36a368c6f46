/**
 * Quantized GGUF export (FORMATS.md §4): an HF-GPTQ or AutoAWQ GEMM folder, or a plain HF
 * folder with llama.cpp-style round-to-nearest, to one GGUF file llama.cpp loads.
 *
 * Quantized source, per linear layer (the grid decides, see pack/gguf-blocks.ts `exactBlockType`):
 *   4-bit sym, group 32, contiguous g_idx → Q4_0, codes as-is (exact)
 *   4-bit asym, group 32                  → Q4_1, m = f16(−s·z) (max |error| reported)
 *   8-bit sym, group 32                   → Q8_0, codes − 128 (exact)
 *   anything else                         → dequantize, re-quantize with llama.cpp's reference
 *                                           quantizer (`requantType`), warn with the measured error
 * The llama Q/K permutation moves rows of codes, scales and zeros (no second rounding).
 *
 * Plain source, `type`:
 *   q4_0 | q4_1 | q8_0 : every 2-D block weight with that type (quantize_row_<t>_ref)
 *   q4_k_m             : llama.cpp's Q4_K_M mix (src/llama-quant.cpp `llama_tensor_get_type`):
 *                        Q4_K everywhere, Q6_K for attn_v and ffn_down of the layers where
 *                        `use_more_bits(i, n)` (first and last eighth, every third in between),
 *                        output Q6_K, token_embd Q4_K; a row length that is not a multiple of 256
 *                        falls back to Q8_0 (llama.cpp would use Q5_0/Q8_0)
 *   f16 | f32          : unquantized
 * token_embd and output use `embedType` / `headType` (default q8_0; for q4_k_m q4_k / q6_k as llama.cpp).
 * Norms and biases stay F32.
 */
import { basename, resolve } from "node:path";
import type { ModelConfig } from "../arch/config.ts";
import { writeOverlapped } from "../io/atomic.ts";
import { openCheckpoint, type Checkpoint } from "../io/checkpoint.ts";
import { GgufWriter, kv, type GgufValue } from "../io/gguf.ts";
import { awqLayerBase, parseAwqConfig, readAwqLegacyConfig, readAwqLinear } from "../load/awq-source.ts";
import { gptqLayerBase, gptqLayerConfig, parseGptqConfig, readGptqLinear, readQuantizationConfig } from "../load/gptq-source.ts";
import { readModelConfig } from "../load/hf-folder.ts";
import { dequantizeBlocks, exactBlockType, GGML_BLOCK_TYPES, packGridBlocks, quantizeMatrix, type GgmlBlockTypeName } from "../pack/gguf-blocks.ts";
import { dequantize, groupCount, type QuantizedLinear } from "../tensor/quantized.ts";
import { fromF32 } from "../tensor/dtype.ts";
import { loadTokenizer } from "../tokenizer/tokenizer.ts";
import { ConfigError, FormatError, UsageError } from "../util/errors.ts";
import { ggufModelKv } from "./gguf.ts";
import { gatherRows, ggufTensorPlan, llama3RopeFactors, permuteQK, qkRowOrder, type GgufTensorPlanEntry } from "../arch/gguf-tensors.ts";
import type { Backend } from "../backend/backend.ts";
import { selectBackend } from "../backend/select.ts";
import { weightKernels, type WeightDType, type WeightKernels } from "../backend/weight-kernels.ts";
import { Scratch } from "../load/canonical.ts";
import { readStored } from "../load/raw-read.ts";
import { ggufTokenizerKv } from "./gguf-tokenizer.ts";

export const GGUF_QUANT_TYPES = ["q4_0", "q4_1", "q8_0", "q4_k_m", "f16", "f32"] as const;
export type GgufQuantType = (typeof GGUF_QUANT_TYPES)[number];
/** Storage types of single tensors (--embed-type, --head-type, --requant-type). */
export const GGUF_TENSOR_TYPES = ["q4_0", "q4_1", "q8_0", "q4_k", "q6_k", "f16", "f32"] as const;
export type GgufTensorType = (typeof GGUF_TENSOR_TYPES)[number];
type StoreType = GgmlBlockTypeName | "F16" | "F32";

/** `llama_ftype` (llama.h) written as general.file_type. */
const FILE_TYPE: Readonly<Record<GgufQuantType, number>> = { f32: 0, f16: 1, q4_0: 2, q4_1: 3, q8_0: 7, q4_k_m: 15 };

export interface GgufQuantExportOptions {
  /** Plain folders: the weight type (required). Quantized folders: leave unset (the grid decides). */
  type?: GgufQuantType;
  embedType?: GgufTensorType;
  headType?: GgufTensorType;
  /** Quantized folders: the type for layers whose grid maps to no block type (default q4_k, else q8_0 when K % 256 ≠ 0). */
  requantType?: GgufTensorType;
  /** Quantized folders: fail instead of re-quantizing a layer that does not map exactly. */
  exact?: boolean;
  name?: string;
  alignment?: number;
  onTensor?: (done: number, total: number, name: string) => void;
  /** Whose conversion kernels run (default: the native backend when it loads, else the TS references). */
  backend?: Backend;
}

export interface GgufQuantExportResult {
  path: string;
  bytes: number;
  tensorCount: number;
  source: "hf" | "gptq" | "awq";
  /** Count of tensors per stored type. */
  types: Record<string, number>;
  /** Linears written with their own codes (no second rounding). */
  exactLayers: number;
  /** Linears dequantized and re-quantized (summarised in one line of `warnings`). */
  requantizedLayers: number;
  /** Each re-quantized linear: why its grid does not map, the type written, its measured error. */
  requantized: RequantizedLayer[];
  /** Q4_1 only: largest |dequant(GGUF) − dequant(ours)| from rounding m = −s·z to f16. */
  maxMRoundingError: number;
  /** Bits per weight over all tensors (file data bytes · 8 / parameter count). */
  bitsPerWeight: number;
  warnings: string[];
}

/** Where the quantized linears come from: a checkpoint's packed tensors, or the quantizer's own results. */
export interface QuantSource {
  kind: "gptq" | "awq";
  /** Layer base name of a quantized `<base>.weight`, or null. */
  baseOf(name: string): string | null;
  read(base: string): QuantizedLinear;
  /** Describe the grid for messages. */
  describe: string;
}

function quantSource(dir: string, cfg: ModelConfig, ckpt: Checkpoint): QuantSource | null {
  const legacy = readAwqLegacyConfig(dir);
  const quant = readQuantizationConfig(dir, cfg.raw) ?? legacy;
  if (quant === null) return null;
  const method = quant === legacy ? "awq" : quant.config["quant_method"];
  if (method === "gptq") {
    const q = parseGptqConfig(quant.config, quant.file);
    return {
      kind: "gptq", baseOf: (n) => gptqLayerBase(ckpt, n), read: (b) => readGptqLinear(ckpt, dir, gptqLayerConfig(q, b, quant.file), b),
      describe: `GPTQ ${q.bits}-bit ${q.sym ? "sym" : "asym"} group ${q.groupSize}${q.descAct ? " act-order" : ""}`,
    };
  }
  if (method === "awq") {
    const q = parseAwqConfig(quant.config, quant.file);
    return { kind: "awq", baseOf: (n) => awqLayerBase(ckpt, n), read: (b) => readAwqLinear(ckpt, dir, q, b), describe: `AWQ 4-bit asym group ${q.groupSize}` };
  }
  throw new ConfigError("unsupported quantization method", {
    file: quant.file, field: "quantization_config.quant_method", expected: '"gptq" or "awq"', found: JSON.stringify(method),
  });
}

const toStore = (t: GgufTensorType): StoreType => (t === "f16" ? "F16" : t === "f32" ? "F32" : (t.toUpperCase() as GgmlBlockTypeName));

/** `use_more_bits` in llama.cpp src/llama-quant.cpp. */
export function useMoreBits(i: number, n: number): boolean {
  return i < n / 8 || i >= (7 * n) / 8 || (i - Math.floor(n / 8)) % 3 === 2;
}

/** A k-quant that does not fit the row length falls back to Q8_0 (documented above). */
function fitType(t: StoreType, K: number, warnings: string[], name: string): StoreType {
  if (t === "F16" || t === "F32") return t;
  if (K % GGML_BLOCK_TYPES[t].blockSize === 0) return t;
  if (t === "Q4_K" || t === "Q6_K") {
    warnings.push(`${name}: row length ${K} is not a multiple of 256, stored as Q8_0 instead of ${t}`);
    return "Q8_0";
  }
  throw new UsageError(`tensor ${name} cannot be stored as ${t}`, {
    field: "--type", expected: `row length a multiple of ${GGML_BLOCK_TYPES[t].blockSize}`, found: String(K), hint: "use --type f16 or q8_0 with a compatible model",
  });
}

interface PlannedTensor { p: GgufTensorPlanEntry; store: StoreType; /** quantized source layer base */ qbase: string | null; exact: boolean }

/** Decide every tensor's stored type before any compute (so constraint errors come first). */
function planTypes(cfg: ModelConfig, plan: GgufTensorPlanEntry[], src: QuantSource | null, qls: Map<string, QuantizedLinear>, opts: GgufQuantExportOptions, warnings: string[]): PlannedTensor[] {
  const a = cfg.arch;
  const kquant = opts.type === "q4_k_m";
  const embed = toStore(opts.embedType ?? (kquant ? "q4_k" : "q8_0"));
  const head = toStore(opts.headType ?? (kquant ? "q6_k" : "q8_0"));
  const out: PlannedTensor[] = [];
  for (const p of plan) {
    const K = p.shape[p.shape.length - 1]!;
    if (p.shape.length === 1) { out.push({ p, store: "F32", qbase: null, exact: false }); continue; }
    if (p.gguf === a.embed.gguf) { out.push({ p, store: fitType(embed, K, warnings, p.gguf), qbase: null, exact: false }); continue; }
    const qbase = src !== null && p.hf !== null ? src.baseOf(p.hf) : null;
    // a quantized lm_head (GPTQModel lm_head: true) goes the quantized layers' way: 8-bit sym g32 is Q8_0 exactly
    if (p.gguf === a.lmHead.gguf && qbase === null) { out.push({ p, store: fitType(head, K, warnings, p.gguf), qbase: null, exact: false }); continue; }
    if (qbase !== null) {
      const q = qls.get(qbase)!;
      const fit = exactBlockType(q);
      if ("type" in fit && opts.requantType === undefined) { out.push({ p, store: fit.type, qbase, exact: true }); continue; }
      if (opts.exact === true) {
        const problem = "problem" in fit ? fit.problem : `--requant-type ${opts.requantType} was given`;
        throw new UsageError(`layer ${qbase} does not map exactly to a GGUF block type`, {
          field: "--exact", expected: "4-bit group 32 contiguous (Q4_0 sym / Q4_1 asym) or 8-bit sym group 32 (Q8_0)", found: problem,
          hint: "Q4_0 needs --sym --bits 4 --group-size 32 without --act-order (quantize-llm gptq); AWQ with --group-size 32 gives Q4_1; or drop --exact to re-quantize",
        });
      }
      const want = toStore(opts.requantType ?? "q4_k");
      out.push({ p, store: fitType(want, K, [], p.gguf) === want ? want : "Q8_0", qbase, exact: false });
      continue;
    }
    if (src !== null) { out.push({ p, store: fitType(toStore(opts.requantType ?? "q8_0"), K, warnings, p.gguf), qbase: null, exact: false }); continue; } // unquantized layer kept by the quantizer
    const t = opts.type ?? "f16";
    let store: StoreType;
    if (t === "q4_k_m") {
      const m = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(p.gguf);
      store = m !== null && useMoreBits(Number(m[1]), cfg.numLayers) ? "Q6_K" : "Q4_K";
    } else store = toStore(t);
    out.push({ p, store: fitType(store, K, warnings, p.gguf), qbase: null, exact: false });
  }
  return out;
}

function permuteQuantized(q: QuantizedLinear, heads: number): QuantizedLinear {
  const order = qkRowOrder(q.N, heads);
  const G = groupCount(q);
  return {
    ...q, codes: gatherRows(q.codes, order, q.K), scales: gatherRows(q.scales, order, G), zeros: gatherRows(q.zeros, order, G),
    ...(q.bias !== undefined ? { bias: gatherRows(q.bias, order, 1) } : {}),
  };
}

/** Stored types the conversion kernels write (weight-kernels.ts); Q4_K/Q6_K go through the per-element reference. */
const KERNEL_STORES: ReadonlySet<StoreType> = new Set(["F16", "F32", "Q4_0", "Q8_0"]);

/**
 * A plain matrix from its stored elements to `store` bytes in one kernel pass (the llama Q/K
 * permutation as a row order), into a reused buffer: bit-identical to `encode` of the permuted
 * f32 matrix (test/kernels/convert.test.ts). `f32` reads the tensor for an F16 overflow message.
 */
function storedBytes(k: WeightKernels, src: { data: Uint16Array | Float32Array; dtype: WeightDType }, p: GgufTensorPlanEntry, store: StoreType, buffers: Scratch, slot: string, dir: string, f32: () => Float32Array): Uint8Array {
  const [N, K] = p.shape as [number, number];
  const rows = p.permuteHeads !== undefined ? qkRowOrder(N, p.permuteHeads) : null;
  if (store === "Q4_0" || store === "Q8_0") {
    const out = buffers.u8(slot, (N * K / 32) * GGML_BLOCK_TYPES[store].bytesPerBlock);
    k.ggmlQuantizeRows(src.data, src.dtype, rows, N, K, store, out);
    return out;
  }
  const bytes = buffers.u8(slot, N * K * (store === "F16" ? 2 : 4));
  const out = store === "F16" ? new Uint16Array(bytes.buffer, 0, N * K) : new Float32Array(bytes.buffer, 0, N * K);
  const bad = k.convertRows(src.data, src.dtype, rows, N, K, out, store as "F16" | "F32");
  if (bad >= 0) {
    const r = Math.floor(bad / K);
    throw new FormatError(`tensor "${p.hf}" does not fit in F16`, {
      file: dir, field: p.hf ?? p.gguf, expected: "|values| ≤ 65504", found: String(f32()[(rows?.[r] ?? r) * K + (bad % K)]), hint: "export with --type f32",
    });
  }
  return bytes;
}

function encode(store: StoreType, x: Float32Array, K: number): Uint8Array {
  return store === "F32" || store === "F16" ? fromF32(store, x) : quantizeMatrix(GGML_BLOCK_TYPES[store], x, K);
}

/** Relative RMS error ‖a − b‖ / ‖b‖. */
function relRms(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i]! - b[i]!; num += d * d; den += b[i]! * b[i]!; }
  return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
}

export async function exportQuantizedGguf(dir: string, outFile: string, opts: GgufQuantExportOptions): Promise<GgufQuantExportResult> {
  const cfg = readModelConfig(dir);
  const ckpt = await openCheckpoint(dir);
  try {
    return await writeQuantizedGguf({
      cfg, tokenizerDir: dir, name: basename(resolve(dir)), tensors: ckpt, stored: (name, buffers) => readStored(ckpt, name, buffers),
      quant: () => quantSource(dir, cfg, ckpt), where: dir,
    }, outFile, opts);
  } finally {
    await ckpt.close();
  }
}

/** The inputs of a quantized GGUF: a model's config, tokenizer, unquantized tensors and quantized linears. */
export interface GgufQuantInput {
  cfg: ModelConfig;
  /** Folder holding tokenizer.json (+ tokenizer_config.json). */
  tokenizerDir: string;
  /** general.name unless `opts.name` is given. */
  name: string;
  /** Tensors by HF name (norms, embeddings, lm_head, biases, and the linears of a plain source). */
  tensors: Pick<Checkpoint, "has" | "readF32Sync">;
  /**
   * A tensor's stored elements (F16/BF16/F32, viewed in `buffers`), when the tensors come from a
   * checkpoint: plain matrices then go through the conversion kernels without an f32 copy.
   */
  stored?: (name: string, buffers: Scratch) => { data: Uint16Array | Float32Array; dtype: WeightDType };
  /** The quantized linears, or null for a plain source (called after the tokenizer is checked). */
  quant: () => QuantSource | null;
  /** For messages: the folder or run the tensors come from. */
  where: string;
}

/**
 * Write a GGUF from `input` (exportQuantizedGguf for a folder; the quantizer's GGUF output
 * format for its own codes): every tensor's type is decided before any byte is written.
 */
export async function writeQuantizedGguf(input: GgufQuantInput, outFile: string, opts: GgufQuantExportOptions): Promise<GgufQuantExportResult> {
  const { cfg, tensors: ckpt } = input;
  const dir = input.where;
  const warnings = [...cfg.warnings];
  if (opts.type !== undefined && !(GGUF_QUANT_TYPES as readonly string[]).includes(opts.type)) {
    throw new UsageError("unsupported GGUF export type", { field: "--type", expected: GGUF_QUANT_TYPES.join(" | "), found: JSON.stringify(opts.type) });
  }
  const tok = loadTokenizer(input.tokenizerDir, cfg.eosTokenIds);
  const tokMeta = ggufTokenizerKv(tok, cfg.vocabSize, resolve(input.tokenizerDir, "tokenizer.json"));
  warnings.push(...tokMeta.warnings);
  const plan = ggufTensorPlan(cfg, "f16");
  const src = input.quant();
  if (src !== null && opts.type !== undefined) {
    throw new UsageError("--type applies to plain (unquantized) model folders", {
      file: dir, field: "--type", expected: "no --type for a quantized folder", found: `${opts.type} with a ${src.describe} checkpoint`,
      hint: "the grid of a GPTQ/AWQ checkpoint decides the GGUF type; use --requant-type to force one",
    });
  }
  // Unpack quantized layers up front (small: codes are bytes) so every type is decided before writing.
  const qls = new Map<string, QuantizedLinear>();
  if (src !== null) for (const p of plan) { const b = p.hf !== null ? src.baseOf(p.hf) : null; if (b !== null) qls.set(b, src.read(b)); }
  const typed = planTypes(cfg, plan, src, qls, opts, warnings);
  for (const t of typed) {
    if (t.p.hf !== null && t.qbase === null && !ckpt.has(t.p.hf)) {
      throw new FormatError(`missing tensor "${t.p.hf}"`, { file: dir, field: t.p.hf, expected: `a tensor of shape [${t.p.shape.join(", ")}]`, found: "no such tensor" });
    }
  }
  const ftype: GgufQuantType = opts.type ?? (src === null ? "f16" : majorityType(typed));
  const kvs: [string, GgufValue][] = ggufModelKv(cfg, "f16", opts.name ?? input.name);
  const ft = kvs.find(([k]) => k === "general.file_type");
  if (ft !== undefined) ft[1] = kv.u32(FILE_TYPE[ftype]);
  kvs.push(...tokMeta.kvs);

  const w = await GgufWriter.create(outFile, kvs, typed.map((t) => ({ name: t.p.gguf, dims: [...t.p.shape].reverse(), type: t.store })),
    opts.alignment !== undefined ? { alignment: opts.alignment } : {});
  let exactLayers = 0, requantizedLayers = 0, maxMRoundingError = 0, params = 0;
  const kernels = weightKernels(opts.backend ?? selectBackend({ backend: "auto" }));
  const buffers = new Scratch();
  const requantized: RequantizedLayer[] = [];
  const types: Record<string, number> = {};
  // Tensor i + 1 is read and encoded while tensor i is being written (two output slots).
  const produce = (i: number): Uint8Array => {
    const t = typed[i]!;
    const { p } = t;
    const K = p.shape[p.shape.length - 1]!;
    params += p.shape.reduce((x, y) => x * y, 1);
    types[t.store] = (types[t.store] ?? 0) + 1;
    let bytes: Uint8Array;
    if (t.qbase !== null) {
      let q = qls.get(t.qbase)!;
      if (t.exact) {
        if (p.permuteHeads !== undefined) q = permuteQuantized(q, p.permuteHeads);
        const r = packGridBlocks(q);
        bytes = r.bytes;
        maxMRoundingError = Math.max(maxMRoundingError, r.maxAbsError);
        exactLayers++;
      } else {
        let x = dequantize(q);
        if (p.permuteHeads !== undefined) x = permuteQK(x, p.permuteHeads, K);
        bytes = encode(t.store, x, K);
        const back = t.store === "F32" || t.store === "F16" ? x : dequantizeBlocks(GGML_BLOCK_TYPES[t.store], bytes, x.length);
        const fit = exactBlockType(q);
        requantized.push({ layer: t.qbase, store: t.store, reason: "problem" in fit ? fit.problem : "--requant-type given", relRms: relRms(back, x) });
        requantizedLayers++;
      }
    } else if (input.stored !== undefined && p.hf !== null && p.shape.length === 2 && KERNEL_STORES.has(t.store)) {
      bytes = storedBytes(kernels, input.stored(p.hf, buffers), p, t.store, buffers, `out${i % 2}`, dir, () => ckpt.readF32Sync(p.hf!));
    } else {
      let x = p.hf === null ? llama3RopeFactors(cfg) : ckpt.readF32Sync(p.hf);
      if (p.permuteHeads !== undefined) x = permuteQK(x, p.permuteHeads, p.shape.length === 2 ? K : 1);
      bytes = encode(t.store, x, K);
    }
    return bytes;
  };
  await writeOverlapped(w, typed.length, produce, (i, bytes) => w.writeTensor(typed[i]!.p.gguf, bytes).then(() => opts.onTensor?.(i + 1, typed.length, typed[i]!.p.gguf)));
  if (requantized.length > 0) warnings.push(requantSummary(requantized));
  if (maxMRoundingError > 0) warnings.push(`Q4_1: rounding m = −s·z to f16 changes weights by at most ${maxMRoundingError.toExponential(3)}`);
  return {
    path: resolve(outFile), bytes: w.totalBytes, tensorCount: typed.length, source: src?.kind ?? "hf", types,
    exactLayers, requantizedLayers, requantized, maxMRoundingError, bitsPerWeight: ((w.totalBytes - w.dataStart) * 8) / params, warnings,
  };
}

export interface RequantizedLayer { layer: string; store: string; reason: string; relRms: number }

/**
 * One line for all re-quantized layers (issue 10: it was one warning per layer): how many, to
 * which types, why (the distinct reasons), the relative RMS error vs the checkpoint's own
 * weights (mean and worst layer), and the settings that would have given an exact GGUF.
 */
export function requantSummary(r: readonly RequantizedLayer[]): string {
  const stores = [...new Set(r.map((x) => x.store))].map((v) => `${r.filter((x) => x.store === v).length} ${v}`).join(", ");
  const worst = r.reduce((a, b) => (b.relRms > a.relRms ? b : a));
  const mean = r.reduce((a, b) => a + b.relRms, 0) / r.length;
  return `${r.length} layers re-quantized (${stores}; grid: ${[...new Set(r.map((x) => x.reason))].join("; ")}): relative RMS error vs the checkpoint's weights mean ${mean.toExponential(3)}, max ${worst.relRms.toExponential(3)} (${worst.layer}); ` +
    "an exact GGUF needs 4-bit --sym group 32 (Q4_0), 4-bit asymmetric/AWQ group 32 (Q4_1) or 8-bit --sym group 32 (Q8_0), without --act-order (gptq --format gguf picks group 32)";
}

/** general.file_type of a quantized-source export: the type of most block linears. */
function majorityType(typed: PlannedTensor[]): GgufQuantType {
  const n: Record<string, number> = {};
  for (const t of typed) if (t.qbase !== null) n[t.store] = (n[t.store] ?? 0) + 1;
  const top = Object.entries(n).sort((a, b) => b[1] - a[1])[0]?.[0];
  return top === "Q4_0" ? "q4_0" : top === "Q4_1" ? "q4_1" : top === "Q8_0" ? "q8_0" : top === "Q4_K" || top === "Q6_K" ? "q4_k_m" : "f16";
}

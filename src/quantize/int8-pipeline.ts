/**
 * `quantize-llm int8`: an HF model → a bitsandbytes 8-bit (LLM.int8()) folder.
 *
 *   calibration windows → X₀; for each block (one block of f32 weights resident):
 *     forward the ORIGINAL block with taps → outlier statistics per linear input
 *     (threshold crossings per input feature; ALGORITHMS.md §4)
 *   write embeddings, norms and lm_head as stored; every block linear as CB (I8), SCB (F32),
 *   weight_format (U8 scalar) — quantized while the writer streams, one tensor at a time
 *   (--quantize-lm-head: lm_head too, with an explicit llm_int8_skip_modules that leaves it out,
 *   since transformers' default list keeps it in 16 bits; docs/quantize-lm-head.md)
 *   config.json quantization_config (bitsandbytes), tokenizer files, quant-report.json,
 *   and with --static-outliers our own int8-outliers.json (the fixed outlier columns)
 *   all under <out>.partial, renamed to <out> when complete.
 *
 * The weights need no calibration (per-row absmax); calibration only measures the outlier
 * features, so `--calib-samples 0` skips it (and then --static-outliers is refused).
 */
import { copyFileSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ModelConfig } from "../arch/config.ts";
import { linearTensorName, type LinearInput } from "../arch/registry.ts";
import type { Backend } from "../backend/backend.ts";
import { openCheckpoint, writeShardedSafetensors, type Checkpoint } from "../io/checkpoint.ts";
import type { TensorSource as WriteSource } from "../io/safetensors.ts";
import { checkpointSource, readModelConfig } from "../load/hf-folder.ts";
import { blockForward, rmsNorm, type LayerCache } from "../nn/block.ts";
import { RopeTable } from "../nn/rope.ts";
import { hasBias, linearShapes, loadBlock, loadEmbedding } from "../nn/weights.ts";
import { bnbQuantizationConfig, packBnbInt8 } from "../pack/bnb-int8.ts";
import { writeInt8Outliers } from "../pack/bnb-int8-outliers.ts";
import { fromF32 } from "../tensor/dtype.ts";
import { loadTokenizer } from "../tokenizer/tokenizer.ts";
import { assertFinite, UsageError } from "../util/errors.ts";
import { calibrationWindows } from "./calibrate.ts";
import { quantizeInt8Rows } from "../methods/int8.ts";
import { OutlierCounter, type OutlierReport } from "../methods/int8-outliers.ts";
import { VERSION } from "./formats/hf-folder.ts";
import { lmHeadTensor } from "./lm-head.ts";

export interface Int8Settings {
  /** llm_int8_threshold: run-time outlier threshold (0 = plain dynamic int8). */
  threshold: number;
  /** Fix the outlier columns from calibration (written to int8-outliers.json). */
  staticOutliers: boolean;
  /** Module names kept in their stored dtype (transformers' matching: exact name, a prefix ending in ".", or the leaf name). */
  skipModules: string[] | null;
  calibSamples: number;
  calibSeqlen: number;
  calibSeed: number;
  /** Calibration text (absolute path); unused when calibSamples is 0. */
  calibText: string | null;
  /**
   * Quantize lm_head too (absent = false: kept as stored, transformers' default). A tied
   * model's embedding is quantized as lm_head and the output untied (the embedding stays as stored).
   */
  quantizeLmHead?: boolean;
}

export type Int8Event =
  | { type: "calibrated"; samples: number; seqlen: number }
  | { type: "block"; block: number; blocks: number; outliers: OutlierReport[] }
  | { type: "writing" };

export interface Int8Job {
  modelDir: string;
  outDir: string;
  settings: Int8Settings;
  backend: Backend;
  overwrite?: boolean;
  maxShardBytes?: number;
  onEvent?: (e: Int8Event) => void;
}

export interface Int8Result {
  outDir: string;
  outliers: OutlierReport[];
  files: string[];
  seconds: number;
  /** bytes of tensor data written */
  totalSize: number;
}

const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja", "tokenizer.model"];

/** transformers' rule (integrations/bitsandbytes.py `_replace_with_bnb_linear`): exact name, `key.` inside the name, or the leaf name. */
export function isSkipped(name: string, skip: readonly string[] | null): boolean {
  if (!skip) return false;
  const leaf = name.slice(name.lastIndexOf(".") + 1);
  return skip.some((k) => k === name || k === leaf || name.includes(`${k}.`));
}

export function validateInt8Settings(s: Int8Settings): void {
  if (!(Number.isFinite(s.threshold) && s.threshold >= 0)) {
    throw new UsageError("invalid outlier threshold", { field: "--threshold", expected: "a number ≥ 0 (6.0 as in the paper; 0 = plain dynamic int8)", found: String(s.threshold) });
  }
  if (s.staticOutliers && s.threshold === 0) {
    throw new UsageError("--static-outliers needs a threshold", { field: "--static-outliers", expected: "--threshold > 0", found: "--threshold 0", hint: "with threshold 0 there are no outlier columns to fix" });
  }
  if (s.staticOutliers && s.calibSamples === 0) {
    throw new UsageError("--static-outliers needs calibration", { field: "--calib-samples", expected: "≥ 1", found: "0", hint: "the fixed outlier columns are those that crossed the threshold on the calibration text" });
  }
  if (s.quantizeLmHead === true && isSkipped("lm_head", s.skipModules)) {
    throw new UsageError("--quantize-lm-head conflicts with --skip-modules", {
      field: "--skip-modules", expected: "a list that does not name lm_head", found: JSON.stringify(s.skipModules), hint: "drop lm_head from --skip-modules, or drop --quantize-lm-head",
    });
  }
  if (s.calibSamples > 0 && s.calibText === null) {
    throw new UsageError("no calibration text", { field: "--calib-text", expected: "a UTF-8 text file", found: "nothing", hint: "pass --calib-text FILE, or --calib-samples 0 to skip the outlier report" });
  }
}

function rawAs(ckpt: Checkpoint, name: string, dtype: "F32" | "F16" | "BF16"): Uint8Array {
  return ckpt.info(name).dtype === dtype ? ckpt.readRawSync(name) : fromF32(dtype, ckpt.readF32Sync(name));
}

function bytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Outlier statistics of every linear input, block by block, on the original weights. */
function calibrate(cfg: ModelConfig, ckpt: Checkpoint, job: Int8Job): OutlierReport[] {
  const s = job.settings;
  if (s.calibSamples === 0) return [];
  const src = checkpointSource(ckpt, job.modelDir);
  const tok = loadTokenizer(job.modelDir, cfg.eosTokenIds);
  const windows = calibrationWindows(tok, readFileSync(s.calibText!, "utf8"), { samples: s.calibSamples, seqlen: s.calibSeqlen, seed: s.calibSeed }, s.calibText!);
  const H = cfg.hiddenSize, L = s.calibSeqlen, kvDim = cfg.numKvHeads * cfg.headDim;
  const embed = loadEmbedding(cfg, src); // [V, H]
  let X: Float32Array[] = windows.map((w) => {
    const x = new Float32Array(L * H); // [L, H]
    w.forEach((id, t) => x.set(embed.subarray(id * H, (id + 1) * H), t * H));
    return x;
  });
  job.onEvent?.({ type: "calibrated", samples: X.length, seqlen: L });
  const ctx = { cfg, backend: job.backend, rope: new RopeTable(cfg) };
  const scratch: LayerCache = { k: new Float32Array(L * kvDim), v: new Float32Array(L * kvDim) };
  const a = cfg.arch;
  const reports: OutlierReport[] = [];
  for (let b = 0; b < cfg.numLayers; b++) {
    const w = loadBlock(cfg, src, b);
    const counters = new Map<LinearInput, OutlierCounter>();
    const tap = (ev: { input: LinearInput; x: Float32Array; T: number; K: number }): void => {
      let c = counters.get(ev.input);
      if (!c) counters.set(ev.input, (c = new OutlierCounter(ev.K, s.threshold)));
      c.add(ev.x, ev.T);
    };
    X = X.map((x) => blockForward({ ...ctx, tap }, b, w, x, L, 0, scratch));
    const blockReports: OutlierReport[] = [];
    for (const [input, c] of counters) {
      const layers = a.linears.filter((l) => l.input === input).map((l) => linearTensorName(a, b, l).replace(/\.weight$/, ""));
      blockReports.push(c.summary(b, input, layers));
    }
    reports.push(...blockReports);
    job.onEvent?.({ type: "block", block: b, blocks: cfg.numLayers, outliers: blockReports });
  }
  if (s.quantizeLmHead === true) {
    // lm_head reads the final norm of the last block's outputs
    const c = new OutlierCounter(H, s.threshold);
    const norm = src.readF32Sync(a.finalNorm.hf); // [H]
    for (const x of X) c.add(rmsNorm(x, norm, L, H, cfg.rmsNormEps), L); // [L, H]
    reports.push(c.summary(cfg.numLayers, "final_norm", [a.lmHead.hf.replace(/\.weight$/, "")]));
  }
  return reports;
}

/** Every tensor of the output, in file order, each produced when the writer reaches it. */
function outputTensors(cfg: ModelConfig, ckpt: Checkpoint, s: Int8Settings, origin: string): WriteSource[] {
  const a = cfg.arch;
  const dtype = cfg.torchDtype;
  const H = cfg.hiddenSize;
  const out: WriteSource[] = [{ name: a.embed.hf, dtype, shape: [cfg.vocabSize, H], data: () => rawAs(ckpt, a.embed.hf, dtype) }];
  const shapes = linearShapes(cfg);
  const pending = new Map<string, { CB: Int8Array; SCB: Float32Array }>(); // weight → SCB hand-over
  /** `<base>.weight` (CB, I8), `<base>.SCB`, `<base>.weight_format` of `wName`, quantized from the stored `from` [N, K]. */
  const int8Tensors = (wName: string, from: string, N: number, K: number): WriteSource[] => {
    const base = wName.replace(/\.weight$/, "");
    const quantize = (): { CB: Int8Array; SCB: Float32Array } => {
      const W = ckpt.readF32Sync(from); // [N, K]
      assertFinite(W, from, origin);
      return quantizeInt8Rows(W, N, K);
    };
    return [
      { name: wName, dtype: "I8", shape: [N, K], data: () => { const q = quantize(); pending.set(base, q); return bytes(packBnbInt8({ N, K, ...q }).weight); } },
      { name: `${base}.SCB`, dtype: "F32", shape: [N], data: () => { const q = pending.get(base) ?? quantize(); pending.delete(base); return bytes(q.SCB); } },
      { name: `${base}.weight_format`, dtype: "U8", shape: [], data: () => packBnbInt8({ N, K, CB: new Int8Array(0), SCB: new Float32Array(0) }).weightFormat },
    ];
  };
  for (let b = 0; b < cfg.numLayers; b++) {
    const p = a.blockPrefix(b);
    for (const n of [a.attnNorm.hf, a.mlpNorm.hf]) out.push({ name: `${p}.${n}.weight`, dtype, shape: [H], data: () => rawAs(ckpt, `${p}.${n}.weight`, dtype) });
    for (const spec of a.linears) {
      const [N, K] = shapes[spec.name];
      const wName = linearTensorName(a, b, spec);
      const base = wName.replace(/\.weight$/, "");
      if (isSkipped(base, s.skipModules)) {
        out.push({ name: wName, dtype, shape: [N, K], data: () => rawAs(ckpt, wName, dtype) });
      } else {
        out.push(...int8Tensors(wName, wName, N, K));
      }
      if (hasBias(cfg, spec.name)) {
        const bName = linearTensorName(a, b, spec, "bias");
        out.push({ name: bName, dtype, shape: [N], data: () => rawAs(ckpt, bName, dtype) });
      }
    }
  }
  out.push({ name: a.finalNorm.hf, dtype, shape: [H], data: () => rawAs(ckpt, a.finalNorm.hf, dtype) });
  if (s.quantizeLmHead === true) {
    out.push(...int8Tensors(a.lmHead.hf, lmHeadTensor(cfg, ckpt).name, cfg.vocabSize, H));
  } else if (!cfg.tieWordEmbeddings || ckpt.has(a.lmHead.hf)) {
    out.push({ name: a.lmHead.hf, dtype, shape: [cfg.vocabSize, H], data: () => rawAs(ckpt, a.lmHead.hf, dtype) });
  }
  return out;
}

export async function quantizeInt8(job: Int8Job): Promise<Int8Result> {
  const t0 = performance.now();
  const s = job.settings;
  validateInt8Settings(s);
  const modelDir = resolve(job.modelDir), outDir = resolve(job.outDir);
  const cfg = readModelConfig(modelDir);
  if (existsSync(outDir) && !job.overwrite) {
    throw new UsageError("output folder already exists", { file: outDir, hint: "choose another -o, or pass --overwrite" });
  }
  const work = `${outDir}.partial`;
  rmSync(work, { recursive: true, force: true });
  const ckpt = await openCheckpoint(modelDir);
  try {
    const outliers = calibrate(cfg, ckpt, { ...job, modelDir });
    job.onEvent?.({ type: "writing" });
    const { files, totalSize } = await writeShardedSafetensors(work, outputTensors(cfg, ckpt, s, modelDir), {
      maxShardBytes: job.maxShardBytes ?? 4 * 2 ** 30, metadata: { format: "pt", quantizer: `quantize-llm ${VERSION}` },
    });
    const json = (v: unknown): string => JSON.stringify(v, null, 2) + "\n";
    // An explicit list (possibly empty) is what makes transformers convert lm_head: null means its
    // default not-converted list, which holds lm_head (quantizers/base.py get_modules_to_not_convert).
    const head = s.quantizeLmHead === true;
    const qc = bnbQuantizationConfig({ threshold: s.threshold, skipModules: head ? s.skipModules ?? [] : s.skipModules });
    // a tied model's quantized head is its own tensor now: the embedding stays as stored, for lookup
    const untie = head && lmHeadTensor(cfg, ckpt).untied ? { tie_word_embeddings: false } : {};
    // torch_dtype stays the stored dtype of the unquantized tensors (embeddings, norms, lm_head).
    writeFileSync(join(work, "config.json"), json({ ...cfg.raw, ...untie, quantization_config: qc }));
    if (s.staticOutliers) writeInt8Outliers(join(work, "int8-outliers.json"), s.threshold, outliers);
    for (const f of TOKENIZER_FILES) if (existsSync(join(modelDir, f))) copyFileSync(join(modelDir, f), join(work, f));
    const seconds = (performance.now() - t0) / 1000;
    writeFileSync(join(work, "quant-report.json"), JSON.stringify({ method: "int8", settings: s, model: modelDir, seconds, outliers }, null, 1) + "\n");
    if (existsSync(outDir)) rmSync(outDir, { recursive: true, force: true });
    renameSync(work, outDir);
    return { outDir, outliers, files, seconds, totalSize };
  } finally {
    await ckpt.close();
  }
}

/**
 * `quantize-llm int8`: an HF model → a bitsandbytes 8-bit (LLM.int8()) folder, written by the
 * "bnb-int8" entry of the Format table (formats/bnb-int8.ts: its check, packer, config writer).
 *
 *   settings + format check (before any compute); calibration windows → X₀
 *   for each block b (one block of f32 weights resident):
 *     [calibration] forward the ORIGINAL block with taps → outlier statistics per linear
 *                   input (threshold crossings per input feature; ALGORITHMS.md §4)
 *     each linear → per-row absmax int8 (CB, SCB), or kept (llm_int8_skip_modules)
 *     format.blockTensors → block file in <out>.partial
 *   [--quantize-lm-head] lm_head [V, H] as int8 rows (a tied model's embedding: untied), and its
 *     input's outlier row (the final norm of the last block's outputs)
 *   format.finish: shards (embeddings, block files, final norm, lm_head), config.json,
 *   tokenizer files, quant-report.json, int8-outliers.json with --static-outliers;
 *   renamed to <out> when complete.
 *
 * The weights need no calibration (per-row absmax); calibration only measures the outlier
 * features, so `--calib-samples 0` skips it (and then --static-outliers is refused).
 */
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ModelConfig } from "../arch/config.ts";
import { linearTensorName, type LinearInput, type LinearName } from "../arch/registry.ts";
import type { Backend } from "../backend/backend.ts";
import { openCheckpoint } from "../io/checkpoint.ts";
import { openSafetensors, writeSafetensors, type SafetensorsFile } from "../io/safetensors.ts";
import { checkpointSource, readModelConfig } from "../load/hf-folder.ts";
import { blockForward, rmsNorm, type BlockContext, type LayerCache } from "../nn/block.ts";
import { RopeTable } from "../nn/rope.ts";
import { Scratch } from "../load/canonical.ts";
import { loadBlock, type BlockWeights } from "../nn/weights.ts";
import { assertFinite, UsageError } from "../util/errors.ts";
import { calibrationInputs } from "./calibrate.ts";
import { quantizeInt8Rows } from "../methods/int8.ts";
import { OutlierCounter, type OutlierReport } from "../methods/int8-outliers.ts";
import { isSkipped, type BnbLinear, type Int8Inputs } from "./formats/bnb-int8.ts";
import type { FinishInput } from "./formats/format.ts";
import { lmHeadTensor } from "./lm-head.ts";
import { FORMATS } from "./formats/table.ts";
import { validateInt8Settings, type Int8Settings } from "./settings.ts";

export type { Int8Settings } from "./settings.ts";
export { isSkipped } from "./formats/bnb-int8.ts";

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

/** Block b's outlier statistics per linear input on X, and the ORIGINAL block's outputs (the next block's X). */
function measureOutliers(
  ctx: BlockContext, scratch: LayerCache, s: Int8Settings, b: number, w: BlockWeights, X: Float32Array[],
): { reports: OutlierReport[]; next: Float32Array[] } {
  const counters = new Map<LinearInput, OutlierCounter>();
  const tap = (ev: { input: LinearInput; x: Float32Array; T: number; K: number }): void => {
    let c = counters.get(ev.input);
    if (!c) counters.set(ev.input, (c = new OutlierCounter(ev.K, s.threshold)));
    c.add(ev.x, ev.T);
  };
  const next = X.map((x) => blockForward({ ...ctx, tap }, b, w, x, s.calibSeqlen, 0, scratch));
  const a = ctx.cfg.arch;
  const reports: OutlierReport[] = [];
  for (const [input, c] of counters) {
    const layers = a.linears.filter((l) => l.input === input).map((l) => linearTensorName(a, b, l).replace(/\.weight$/, ""));
    reports.push(c.summary(b, input, layers));
  }
  return { reports, next };
}

/** Every linear of block b as the format stores it: per-row absmax int8, or kept (a skipped module). */
function quantizeBlock(cfg: ModelConfig, s: Int8Settings, b: number, w: BlockWeights, origin: string): Map<LinearName, BnbLinear> {
  const q = new Map<LinearName, BnbLinear>();
  for (const spec of cfg.arch.linears) {
    const l = w.linears[spec.name]; // weight [N, K]
    const wName = linearTensorName(cfg.arch, b, spec);
    const bias = l.bias ? { bias: l.bias } : {};
    if (isSkipped(wName.replace(/\.weight$/, ""), s.skipModules)) {
      q.set(spec.name, { kind: "kept", N: l.N, K: l.K, weight: l.weight, ...bias });
    } else {
      assertFinite(l.weight, wName, origin);
      q.set(spec.name, { kind: "int8", N: l.N, K: l.K, ...quantizeInt8Rows(l.weight, l.N, l.K), ...bias });
    }
  }
  return q;
}

export async function quantizeInt8(job: Int8Job): Promise<Int8Result> {
  const t0 = performance.now();
  const s = job.settings;
  const format = FORMATS["bnb-int8"];
  const modelDir = resolve(job.modelDir), outDir = resolve(job.outDir);
  const cfg = readModelConfig(modelDir);
  format.check(s, cfg, modelDir, outDir);
  validateInt8Settings(s);
  if (existsSync(outDir) && !job.overwrite) {
    throw new UsageError("output folder already exists", { file: outDir, hint: "choose another -o, or pass --overwrite" });
  }
  const work = `${outDir}.partial`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const ckpt = await openCheckpoint(modelDir);
  const blockFiles: SafetensorsFile[] = [];
  try {
    const src = checkpointSource(ckpt, modelDir);
    let X: Float32Array[] = []; // [samples][L·H] entering block 0 (none when calibSamples is 0)
    if (s.calibSamples > 0) {
      X = calibrationInputs({ cfg, modelDir, ckpt, src, textFile: s.calibText! }, { samples: s.calibSamples, seqlen: s.calibSeqlen, seed: s.calibSeed }, new Scratch());
      job.onEvent?.({ type: "calibrated", samples: X.length, seqlen: s.calibSeqlen });
    }
    const ctx: BlockContext = { cfg, backend: job.backend, rope: new RopeTable(cfg), exactElementwise: true };
    const kvDim = cfg.numKvHeads * cfg.headDim;
    const scratch: LayerCache = { k: new Float32Array(s.calibSeqlen * kvDim), v: new Float32Array(s.calibSeqlen * kvDim) };
    const outliers: OutlierReport[] = [];
    const files: string[] = [];
    for (let b = 0; b < cfg.numLayers; b++) {
      const w = loadBlock(cfg, src, b); // f32, this block only
      let reports: OutlierReport[] = [];
      if (X.length) ({ reports, next: X } = measureOutliers(ctx, scratch, s, b, w, X));
      outliers.push(...reports);
      const file = join(work, `block-${String(b).padStart(4, "0")}.safetensors`);
      await writeSafetensors(file, format.blockTensors(cfg, s, b, w, quantizeBlock(cfg, s, b, w, modelDir)));
      files.push(file);
      job.onEvent?.({ type: "block", block: b, blocks: cfg.numLayers, outliers: reports });
    }
    let lmHead: FinishInput<Int8Inputs>["lmHead"];
    if (s.quantizeLmHead === true) {
      const a = cfg.arch, H = cfg.hiddenSize, V = cfg.vocabSize;
      if (X.length) { // lm_head reads the final norm of the last block's outputs
        const c = new OutlierCounter(H, s.threshold);
        const norm = src.readF32Sync(a.finalNorm.hf); // [H]
        for (const x of X) c.add(rmsNorm(x, norm, s.calibSeqlen, H, cfg.rmsNormEps), s.calibSeqlen); // [L, H]
        outliers.push(c.summary(cfg.numLayers, "final_norm", [a.lmHead.hf.replace(/\.weight$/, "")]));
      }
      const { name, untied } = lmHeadTensor(cfg, ckpt);
      const W = ckpt.readF32Sync(name); // [V, H]
      assertFinite(W, name, modelDir);
      lmHead = { q: { N: V, K: H, ...quantizeInt8Rows(W, V, H) }, untied };
    }
    job.onEvent?.({ type: "writing" });
    for (const f of files) blockFiles.push(await openSafetensors(f));
    const final = join(work, "final");
    const seconds = (performance.now() - t0) / 1000;
    const done = await format.finish({
      path: final, out: outDir, cfg, s, modelDir, ckpt, blockFiles, files: [], maxShardBytes: job.maxShardBytes ?? 4 * 2 ** 30, layers: outliers, seconds,
      ...(lmHead ? { lmHead } : {}),
    });
    if (existsSync(outDir)) rmSync(outDir, { recursive: true, force: true });
    renameSync(final, outDir);
    rmSync(work, { recursive: true, force: true });
    return { outDir, outliers, files: done.files, seconds, totalSize: done.tensorBytes ?? 0 };
  } finally {
    await Promise.all(blockFiles.map((f) => f.close()));
    await ckpt.close();
  }
}

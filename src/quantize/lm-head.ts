/**
 * Quantizing lm_head (GPTQModel's `lm_head: true`; docs/quantize-lm-head.md), after the
 * last block:
 *
 *   rtn            per-row RTN of lm_head [V, H] from its stored bytes (no f32 copy)
 *   gptq, awq+gptq GPTQ with the Hessian of lm_head's inputs: the last block's outputs on the
 *                  calibration windows through the final RMSNorm (GPTQModel's
 *                  `lm_head_pre_quantize_generate_hook` applies the same norm)
 *
 * Its grid is its own (QuantSettings.lmHead: GPTQModel's default is 8-bit, group 32, sym, no
 * act-order, written as the `dynamic: {"lm_head": {...}}` override); the model's sym/asym is kept.
 * Tied models (tie_word_embeddings, no lm_head.weight): the embedding matrix is quantized as
 * lm_head and the output is untied (the embedding stays as stored, for lookup).
 */
import type { ModelConfig } from "../arch/config.ts";
import type { Backend } from "../backend/backend.ts";
import type { WeightKernels } from "../backend/weight-kernels.ts";
import type { Checkpoint } from "../io/checkpoint.ts";
import { Scratch } from "../load/canonical.ts";
import { readStored } from "../load/raw-read.ts";
import { rmsNorm } from "../nn/block.ts";
import { gptqQuantizeLinearAsync, HessianAccumulatorF32 } from "../methods/gptq-fast.ts";
import type { GpuGptq, HessianSink } from "../methods/gptq-webgpu.ts";
import { rtnQuantizeRows } from "../methods/rtn.ts";
import type { QuantizedLinear } from "../tensor/quantized.ts";
import { assertFinite, nonFiniteError } from "../util/errors.ts";
import { relOutputErrorAsync, relWeightError } from "./report.ts";
import type { LmHeadSettings, QuantSettings } from "./settings.ts";

export type { LmHeadSettings } from "./settings.ts";

/** GPTQModel's grid for `lm_head: true` when no `dynamic` entry names it (looper/module_looper.py). */
export const GPTQMODEL_LM_HEAD: LmHeadSettings = { bits: 8, groupSize: 32 };

/** What the report says of lm_head. */
export interface LmHeadReport {
  tensor: string;
  shape: [number, number];
  bits: number;
  groupSize: number;
  loss: number | null;
  relOutputError: number | null;
  relWeightError: number;
  damp: number | null;
  seconds: number;
  /** the embedding matrix was quantized as lm_head (tie_word_embeddings) */
  untied: boolean;
}

/** The tensor lm_head is read from: lm_head.weight, or the embedding of a tied model that has none. */
export function lmHeadTensor(cfg: ModelConfig, ckpt: Pick<Checkpoint, "has">): { name: string; untied: boolean } {
  const a = cfg.arch;
  if (ckpt.has(a.lmHead.hf) || !cfg.tieWordEmbeddings) return { name: a.lmHead.hf, untied: false };
  return { name: a.embed.hf, untied: true };
}

export interface LmHeadJob {
  cfg: ModelConfig;
  s: QuantSettings & { lmHead: LmHeadSettings };
  ckpt: Checkpoint;
  modelDir: string;
  backend: Backend;
  kernels: WeightKernels;
  /** The last block's outputs on the calibration windows, [L, H] each (empty for plain RTN). */
  X: readonly Float32Array[];
  /** Final norm weight [H]. */
  finalNorm: Float32Array;
  signal?: AbortSignal;
  /** GPTQ's Hessian and sweep on the GPU (`--device gpu`), as for the blocks. */
  gpu?: GpuGptq | undefined;
}

export async function quantizeLmHead(job: LmHeadJob): Promise<{ q: QuantizedLinear; report: LmHeadReport }> {
  const t0 = performance.now();
  const { cfg, s, ckpt } = job;
  const V = cfg.vocabSize, H = cfg.hiddenSize;
  const { bits, groupSize } = s.lmHead;
  const { name, untied } = lmHeadTensor(cfg, ckpt);
  const done = (q: QuantizedLinear, r: Omit<LmHeadReport, "tensor" | "shape" | "bits" | "groupSize" | "seconds" | "untied">): { q: QuantizedLinear; report: LmHeadReport } =>
    ({ q, report: { tensor: name, shape: [V, H], bits, groupSize, ...r, seconds: (performance.now() - t0) / 1000, untied } });
  if (s.method === "rtn") {
    const { data, dtype } = readStored(ckpt, name, new Scratch());
    const r = rtnQuantizeRows(job.kernels, data, dtype, V, H, bits, groupSize, s.sym);
    if (r.nonFinite >= 0) throw nonFiniteError(name, r.nonFinite, ckpt.readF32Sync(name)[r.nonFinite]!, job.modelDir);
    return done(r.q, { loss: null, relOutputError: null, relWeightError: r.den > 0 ? r.num / r.den : 0, damp: null });
  }
  // GPTQ: Hessian of rmsNorm(X_last) over the calibration windows
  const maxT = Math.max(1, ...job.X.map((x) => x.length / H));
  const acc: HessianSink = job.gpu ? await job.gpu.hessian(0, H, maxT) : new HessianAccumulatorF32(H);
  for (const x of job.X) {
    const T = x.length / H;
    await acc.addAsync(job.backend, rmsNorm(x, job.finalNorm, T, H, cfg.rmsNormEps), T, job.signal !== undefined ? { signal: job.signal } : {}); // [T, H]
  }
  const Hm = await acc.hessian();
  const W = ckpt.readF32Sync(name); // [V, H]
  assertFinite(W, name, job.modelDir);
  assertFinite(Hm, `Hessian of ${name} (lm_head)`, job.modelDir);
  const res = await gptqQuantizeLinearAsync({
    backend: job.backend, weight: W, rows: V, cols: H, hessian: Hm, bits, groupSize, sym: s.sym,
    actOrder: false, staticGroups: false, damp: s.damp, blockSize: s.blockSize, groupGrid: s.groupGrid, sweep: job.gpu,
  }, job.signal !== undefined ? { signal: job.signal } : {});
  const { dequantized, ...q } = res;
  const rel = await relOutputErrorAsync(job.backend, W, dequantized, Hm, V, H, job.signal !== undefined ? { signal: job.signal } : {}, { loss: q.loss, dampUsed: q.dampUsed });
  return done(q, { loss: q.loss, relOutputError: rel, relWeightError: relWeightError(W, dequantized), damp: q.dampUsed });
}

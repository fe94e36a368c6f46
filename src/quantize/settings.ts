/**
 * Quantization settings and their validation, done BEFORE any compute: a bad
 * bits/group combination fails in milliseconds, not after an hour of calibration.
 * What an output format adds (packable shapes, v1 zero points, ggml blocks, the
 * bitsandbytes threshold) is checked by its entry in formats/ (`Format.check`), right
 * after these. QuantSettings: rtn/gptq/awq (pipeline.ts); Int8Settings: LLM.int8()
 * (int8-pipeline.ts).
 */
import type { ModelConfig } from "../arch/config.ts";
import { GROUP_GRIDS, type GroupGrid } from "../methods/gptq.ts";
import { AWQ_CLIP_SAMPLINGS, type AwqClipSampling } from "../methods/awq.ts";
import { CALIB_SAMPLINGS, type CalibSampling } from "./calibrate.ts";
import { linearShapes } from "../arch/shapes.ts";
import { GPTQ_BITS, type GptqCheckpointFormat } from "../pack/hf-gptq.ts";
import { UsageError } from "../util/errors.ts";

export type Method = "rtn" | "gptq" | "awq" | "awq+gptq";

export function usesAwq(m: Method): boolean {
  return m === "awq" || m === "awq+gptq";
}

export interface QuantSettings {
  method: Method;
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
  sym: boolean;
  actOrder: boolean;
  staticGroups: boolean;
  damp: number;
  blockSize: number;
  /** GPTQ dynamic group grids: "current" weights (default) or gptq.py's "block-start" snapshot (methods/gptq.ts). */
  groupGrid?: GroupGrid;
  trueSequential: boolean;
  /** HF-GPTQ checkpoint_format: v1 ("gptq") for symmetric, v2 for asymmetric by default. */
  format: GptqCheckpointFormat;
  calibSamples: number;
  calibSeqlen: number;
  calibSeed: number;
  /** Calibration text file (absolute path). */
  calibText: string;
  /** How calibration windows are drawn (calibrate.ts): "windows" or llm-awq's "records" (default for AWQ: AWQ_DEFAULTS). */
  calibSampling?: CalibSampling;
  /** AWQ: AutoAWQ's duo scaling (s = x^α / w^(1−α)) instead of llm-awq's s = x^α (default: AWQ_DEFAULTS). */
  duoScaling?: boolean;
  /** AWQ: run the clip search. */
  clip?: boolean;
  /** AWQ: clip-search tokens, seeded "random" or llm-awq's "stride" (methods/awq.ts; default: AWQ_DEFAULTS). */
  clipSampling?: AwqClipSampling;
  /** AWQ: re-apply a saved search instead of searching (absolute path). */
  loadSearch?: string | null;
  /** Quantize lm_head too, with this grid (GPTQModel `lm_head: true`; quantize/lm-head.ts); absent/null = kept as stored. */
  lmHead?: LmHeadSettings | null;
}

/** lm_head's own grid (quantize/lm-head.ts; the model's sym/asym and checkpoint format are kept). */
export interface LmHeadSettings {
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
}

export const GROUP_SIZES = [32, 64, 128, -1] as const;

/**
 * What an unset AWQ option means, in one place (the pipeline, the CLI and the search file
 * read these): llm-awq's rules (s = x_mean^α, its calibration records, its clip-token
 * stride), chosen by measured held-out perplexity over our former AutoAWQ-style defaults
 * (eval/awq-gap.ts, eval/reports/awq-gap.md; docs/awq-reference.md lists every difference).
 */
export const AWQ_DEFAULTS = { duoScaling: false, clipSampling: "stride", calibSampling: "records" } as const satisfies {
  duoScaling: boolean; clipSampling: AwqClipSampling; calibSampling: CalibSampling;
};

/** The calibration sampling a run uses: its own, else AWQ's default for AWQ methods, else "windows". */
export function calibSamplingOf(s: Pick<QuantSettings, "method" | "calibSampling">): CalibSampling {
  return s.calibSampling ?? (usesAwq(s.method) ? AWQ_DEFAULTS.calibSampling : "windows");
}

export function validateSettings(cfg: ModelConfig, s: QuantSettings, modelDir: string): void {
  if (!(GPTQ_BITS as readonly number[]).includes(s.bits)) {
    throw new UsageError("unsupported bit width", { field: "--bits", expected: GPTQ_BITS.join(", "), found: String(s.bits) });
  }
  if (!(s.groupSize === -1 || (Number.isInteger(s.groupSize) && s.groupSize >= 8))) {
    throw new UsageError("unsupported group size", {
      field: "--group-size", expected: `${GROUP_SIZES.join(", ")} (or another positive size dividing every layer's input dimension)`, found: String(s.groupSize),
    });
  }
  if (!(s.damp > 0 && s.damp < 1)) {
    throw new UsageError("damping out of range", { field: "--damp", expected: "0 < damp < 1 (typical: 0.01 to 0.1)", found: String(s.damp) });
  }
  if (!(Number.isInteger(s.blockSize) && s.blockSize >= 1)) {
    throw new UsageError("invalid block size", { field: "--block-size", expected: "a positive integer (128)", found: String(s.blockSize) });
  }
  if (s.groupGrid !== undefined && !GROUP_GRIDS.includes(s.groupGrid)) {
    throw new UsageError("invalid group grid rule", { field: "--group-grid", expected: GROUP_GRIDS.join(" | "), found: String(s.groupGrid) });
  }
  if (s.calibSampling !== undefined && !CALIB_SAMPLINGS.includes(s.calibSampling)) {
    throw new UsageError("invalid calibration sampling", { field: "--calib-sampling", expected: CALIB_SAMPLINGS.join(" | "), found: String(s.calibSampling) });
  }
  if (s.clipSampling !== undefined && !AWQ_CLIP_SAMPLINGS.includes(s.clipSampling)) {
    throw new UsageError("invalid clip-token sampling", { field: "--clip-sampling", expected: AWQ_CLIP_SAMPLINGS.join(" | "), found: String(s.clipSampling) });
  }
  if (s.calibSeqlen > cfg.maxPositionEmbeddings) {
    throw new UsageError("calibration windows longer than the model's context", {
      field: "--calib-seqlen", expected: `≤ ${cfg.maxPositionEmbeddings}`, found: String(s.calibSeqlen),
    });
  }
  if (s.lmHead) {
    const { bits, groupSize } = s.lmHead, H = cfg.hiddenSize;
    if (s.method === "awq") {
      throw new UsageError("AWQ does not quantize lm_head", {
        field: "--quantize-lm-head", found: "quantize-llm awq", hint: "AutoAWQ quantizes the decoder blocks only; use --then gptq (GPTQ on lm_head, HF-GPTQ output), or quantize-llm gptq/rtn",
      });
    }
    if (!(GPTQ_BITS as readonly number[]).includes(bits)) throw new UsageError("unsupported lm_head bit width", { field: "--lm-head-bits", expected: GPTQ_BITS.join(", "), found: String(bits) });
    if (!(groupSize === -1 || (Number.isInteger(groupSize) && groupSize >= 8 && H % groupSize === 0))) {
      throw new UsageError("lm_head group size does not divide the hidden size", {
        field: "--lm-head-group-size", expected: `-1 or a divisor of ${H} (in_features of lm_head), ≥ 8`, found: String(groupSize), hint: "GPTQModel's default is 32",
      });
    }
  }
  for (const [name, [, K]] of Object.entries(linearShapes(cfg))) {
    if (s.groupSize !== -1 && K % s.groupSize !== 0) {
      throw new UsageError(`group size does not divide the input dimension of ${name}_proj`, {
        file: `${modelDir}/config.json`, field: "--group-size",
        expected: `a divisor of ${K} (in_features of ${name}_proj)`, found: String(s.groupSize),
        hint: `try --group-size ${[128, 64, 32].find((g) => K % g === 0) ?? -1}`,
      });
    }
  }
}

/** `quantize-llm int8` (LLM.int8(), bitsandbytes folder; int8-pipeline.ts). */
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

/** The method's own constraints (calibration); the format's (threshold, skip list) are bnbInt8Format.check. */
export function validateInt8Settings(s: Int8Settings): void {
  if (s.staticOutliers && s.calibSamples === 0) {
    throw new UsageError("--static-outliers needs calibration", { field: "--calib-samples", expected: "≥ 1", found: "0", hint: "the fixed outlier columns are those that crossed the threshold on the calibration text" });
  }
  if (s.calibSamples > 0 && s.calibText === null) {
    throw new UsageError("no calibration text", { field: "--calib-text", expected: "a UTF-8 text file", found: "nothing", hint: "pass --calib-text FILE, or --calib-samples 0 to skip the outlier report" });
  }
}

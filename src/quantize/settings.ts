/**
 * Quantization settings and their validation, done BEFORE any compute: a bad
 * bits/group combination or an unpackable shape fails in milliseconds, not after
 * an hour of calibration.
 */
import type { ModelConfig } from "../arch/config.ts";
import { linearShapes } from "../arch/shapes.ts";
import { GPTQ_BITS, gptqShapeProblem, type GptqCheckpointFormat } from "../pack/hf-gptq.ts";
import { awqGemmShapeProblem } from "../pack/awq-gemm.ts";
import { UsageError } from "../util/errors.ts";

export type Method = "rtn" | "gptq" | "awq" | "awq+gptq";

/**
 * Output checkpoint format: AWQ alone at 4 bits writes AutoAWQ GEMM (its only width);
 * everything else, AWQ at 2/3/8 bits included, writes HF-GPTQ (asymmetric AWQ grids as gptq_v2).
 */
export function outputFormat(m: Method, bits: number): "hf-gptq" | "awq-gemm" {
  return m === "awq" && bits === 4 ? "awq-gemm" : "hf-gptq";
}

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
  trueSequential: boolean;
  /** HF-GPTQ checkpoint_format: v1 ("gptq") for symmetric, v2 for asymmetric by default. */
  format: GptqCheckpointFormat;
  calibSamples: number;
  calibSeqlen: number;
  calibSeed: number;
  /** Calibration text file (absolute path). */
  calibText: string;
  /** AWQ: AutoAWQ's duo scaling (s = x^α / w^(1−α)) instead of llm-awq's s = x^α. */
  duoScaling?: boolean;
  /** AWQ: run the clip search. */
  clip?: boolean;
  /** AWQ: re-apply a saved search instead of searching (absolute path). */
  loadSearch?: string | null;
}

export const GROUP_SIZES = [32, 64, 128, -1] as const;

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
  if (s.format === "gptq" && !s.sym && outputFormat(s.method, s.bits) === "hf-gptq") {
    throw new UsageError("asymmetric quantization cannot be written as GPTQ v1", {
      field: "--checkpoint-format", expected: "gptq_v2 with --asym", found: "gptq (v1)",
      hint: "v1 stores zero − 1, which wraps for a zero point of 0; use --checkpoint-format gptq_v2 (the default for --asym) or --sym",
    });
  }
  if (s.calibSeqlen > cfg.maxPositionEmbeddings) {
    throw new UsageError("calibration windows longer than the model's context", {
      field: "--calib-seqlen", expected: `≤ ${cfg.maxPositionEmbeddings}`, found: String(s.calibSeqlen),
    });
  }
  for (const [name, [N, K]] of Object.entries(linearShapes(cfg))) {
    if (s.groupSize !== -1 && K % s.groupSize !== 0) {
      throw new UsageError(`group size does not divide the input dimension of ${name}_proj`, {
        file: `${modelDir}/config.json`, field: "--group-size",
        expected: `a divisor of ${K} (in_features of ${name}_proj)`, found: String(s.groupSize),
        hint: `try --group-size ${[128, 64, 32].find((g) => K % g === 0) ?? -1}`,
      });
    }
    if (outputFormat(s.method, s.bits) === "awq-gemm") {
      const problem = awqGemmShapeProblem(N, K, s.bits, s.groupSize);
      if (problem) throw new UsageError(`${name}_proj cannot be stored as AutoAWQ GEMM`, { field: "--bits/--group-size", found: problem, hint: "AWQ GEMM is 4-bit with a group size dividing in_features; use --then gptq for other widths" });
    } else {
      const problem = gptqShapeProblem(N, K, s.bits);
      if (problem) throw new UsageError(`${name}_proj cannot be stored as HF-GPTQ`, { field: "--bits", found: problem });
    }
  }
}

/** AutoAWQ's `quantization_config` (FORMATS.md §3). */
export function awqQuantizationConfig(s: QuantSettings): Record<string, unknown> {
  return { quant_method: "awq", bits: s.bits, group_size: s.groupSize, zero_point: true, version: "gemm", modules_to_not_convert: null };
}

/** The `quantization_config` dict (FORMATS.md §2), written to config.json and quantize_config.json. */
export function gptqQuantizationConfig(s: QuantSettings, version: string): Record<string, unknown> {
  return {
    quant_method: "gptq",
    bits: s.bits,
    group_size: s.groupSize,
    desc_act: s.actOrder,
    sym: s.sym,
    true_sequential: s.trueSequential,
    static_groups: s.staticGroups,
    damp_percent: s.damp,
    checkpoint_format: s.format,
    format: s.format,
    lm_head: false,
    meta: { quantizer: [`quantize-llm:${version}`], method: s.method },
  };
}

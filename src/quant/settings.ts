/**
 * Quantization settings and their validation, done BEFORE any compute: a bad
 * bits/group combination or an unpackable shape fails in milliseconds, not after
 * an hour of calibration.
 */
import type { ModelConfig } from "../arch/config.ts";
import { linearShapes } from "../nn/weights.ts";
import { GPTQ_BITS, gptqShapeProblem, type GptqCheckpointFormat } from "../pack/hf-gptq.ts";
import { UsageError } from "../util/errors.ts";

export type Method = "rtn" | "gptq";

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
  if (s.format === "gptq" && !s.sym) {
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
    const problem = gptqShapeProblem(N, K, s.bits);
    if (problem) throw new UsageError(`${name}_proj cannot be stored as HF-GPTQ`, { field: "--bits", found: problem });
  }
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

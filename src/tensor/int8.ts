/**
 * LLM.int8() weights as plain data (the format-neutral result of methods/int8.ts that
 * pack/, load/ and backend/ consume) and their dequantization. Ground floor, like quantized.ts.
 */

import type { LinearInput } from "../arch/registry.ts";

/** One LLM.int8() linear: bitsandbytes' Int8Params (CB in `weight`, SCB beside it). */
export interface Int8Linear {
  /** out_features */
  N: number;
  /** in_features */
  K: number;
  /** [N, K] int8 codes in [−127, 127] */
  CB: Int8Array;
  /** [N] f32 row absmax of the original weights */
  SCB: Float32Array;
  /** [N] carried through unquantized */
  bias?: Float32Array;
}

/**
 * 1/127 and 1/127² as bitsandbytes writes them: 1/127 in int8_vectorwise_dequant; 1/127² is
 * csrc's MM_DEQUANT_CONST 6.200012e-05f (kdequant_mm_int32_fp16, the CUDA path users run).
 * The Python "default" backend's int8_mm_dequant writes 6.200124e-05, a digit swap that is
 * 1.8e-5 too large; we follow the CUDA constant.
 */
export const INV_127 = Math.fround(7.874015718698502e-3);
export const INV_127_SQ = Math.fround(6.200012e-5);

/** W̃[n,k] = CB[n,k]·SCB[n]·(1/127), in bitsandbytes' operation order — [N, K] f32. */
export function dequantizeInt8(q: Pick<Int8Linear, "N" | "K" | "CB" | "SCB">): Float32Array {
  const { N, K, CB, SCB } = q;
  const W = new Float32Array(N * K); // [N, K]
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) W[n * K + k] = Math.fround(Math.fround(CB[n * K + k]! * SCB[n]!) * INV_127);
  }
  return W;
}

/** One row of the per-layer outlier report (quant-report.json `outliers`). */
export interface OutlierReport {
  /** block index; cfg.numLayers for lm_head's input (--quantize-lm-head) */
  block: number;
  /** "final_norm": lm_head's input, the final RMSNorm of the last block's outputs */
  input: LinearInput | "final_norm";
  /** HF names of the linears reading this input (q/k/v share one) */
  layers: string[];
  inFeatures: number;
  threshold: number;
  tokens: number;
  /** input features with |x| ≥ threshold on at least one calibration token */
  outlierFeatures: number;
  /** those features, ascending (the fixed columns of --static-outliers) */
  columns: number[];
  /** outlierFeatures / inFeatures */
  featureShare: number;
  /** share of tokens with at least one outlier feature */
  tokenShareAny: number;
  /** mean over the outlier features of the share of tokens on which each crossed */
  meanTokenShare: number;
  /** largest |x| of this input over calibration */
  maxAbs: number;
  /** most frequent outlier features */
  top: { feature: number; tokenShare: number; absMax: number }[];
}


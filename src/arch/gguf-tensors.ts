/**
 * Which GGUF tensors a HF model becomes (FORMATS.md §4): names from the Arch table, the
 * storage type of each, and the llama Q/K row permutation. Pure functions: the exporter
 * streams the plan, and a GGUF loader can invert it (`unpermuteQK`).
 */
import type { ModelConfig } from "./config.ts";
import { linearTensorName } from "./registry.ts";
import { hasBias, linearShapes } from "./shapes.ts";
import { invariant } from "../util/errors.ts";

export type GgufFloatType = "f32" | "f16";

export interface GgufTensorPlanEntry {
  /** GGUF tensor name, e.g. "blk.0.attn_q.weight". */
  gguf: string;
  /** HF tensor name it comes from; null for tensors computed from the config (rope_freqs). */
  hf: string | null;
  /** PyTorch-order shape (outermost first); GGUF dims are this reversed. */
  shape: number[];
  /** ggml storage type: 2-D weights in the requested type, 1-D tensors always F32. */
  ggmlType: "F32" | "F16";
  /** Apply the llama Q/K row permutation with this many heads. */
  permuteHeads?: number;
}

/**
 * The tensors of the GGUF file, in write order: token_embd, [rope_freqs], blocks, output_norm, [output].
 * `output.weight` is omitted when embeddings are tied (llama.cpp then reuses token_embd).
 */
export function ggufTensorPlan(cfg: ModelConfig, type: GgufFloatType): GgufTensorPlanEntry[] {
  const a = cfg.arch;
  const H = cfg.hiddenSize, V = cfg.vocabSize;
  const wType = type === "f16" ? "F16" : "F32";
  const plan: GgufTensorPlanEntry[] = [{ gguf: a.embed.gguf, hf: a.embed.hf, shape: [V, H], ggmlType: wType }];
  if (cfg.ropeScaling?.type === "llama3") plan.push({ gguf: "rope_freqs.weight", hf: null, shape: [cfg.headDim / 2], ggmlType: "F32" });
  const shapes = linearShapes(cfg);
  for (let b = 0; b < cfg.numLayers; b++) {
    const p = a.blockPrefix(b);
    plan.push({ gguf: `blk.${b}.${a.attnNorm.gguf}.weight`, hf: `${p}.${a.attnNorm.hf}.weight`, shape: [H], ggmlType: "F32" });
    for (const spec of a.linears) {
      const [N, K] = shapes[spec.name];
      const heads = !a.ggufPermuteQK ? undefined : spec.name === "q" ? cfg.numHeads : spec.name === "k" ? cfg.numKvHeads : undefined;
      const perm = heads !== undefined ? { permuteHeads: heads } : {};
      plan.push({ gguf: `blk.${b}.${spec.gguf}.weight`, hf: linearTensorName(a, b, spec), shape: [N, K], ggmlType: wType, ...perm });
      if (hasBias(cfg, spec.name)) {
        plan.push({ gguf: `blk.${b}.${spec.gguf}.bias`, hf: linearTensorName(a, b, spec, "bias"), shape: [N], ggmlType: "F32", ...perm });
      }
    }
    plan.push({ gguf: `blk.${b}.${a.mlpNorm.gguf}.weight`, hf: `${p}.${a.mlpNorm.hf}.weight`, shape: [H], ggmlType: "F32" });
  }
  plan.push({ gguf: a.finalNorm.gguf, hf: a.finalNorm.hf, shape: [H], ggmlType: "F32" });
  if (!cfg.tieWordEmbeddings) plan.push({ gguf: a.lmHead.gguf, hf: a.lmHead.hf, shape: [V, H], ggmlType: wType });
  return plan;
}

/**
 * llama Q/K row permutation (convert_hf_to_gguf.py `LlamaModel.permute`): HF stores RoPE
 * pairs in "rotate-half" order (i, i + d/2), GGML's normal RoPE rotates adjacent pairs
 * (2i, 2i + 1). Rows viewed as [heads, 2, d/2, K] → swap axes 1 and 2 → [heads, d/2, 2, K].
 * `rowLen` = K for a weight [rows, K], 1 for a bias [rows].
 */
export function permuteQK(w: Float32Array, heads: number, rowLen: number): Float32Array {
  return permuteRows(w, heads, rowLen, false);
}

/** Inverse of `permuteQK` (GGUF row order back to HF). */
export function unpermuteQK(w: Float32Array, heads: number, rowLen: number): Float32Array {
  return permuteRows(w, heads, rowLen, true);
}

function permuteRows(w: Float32Array, heads: number, rowLen: number, inverse: boolean): Float32Array {
  const rows = w.length / rowLen;
  invariant(Number.isInteger(rows) && rows % (2 * heads) === 0, `Q/K permutation: ${rows} rows do not split into ${heads} heads of even size`);
  const half = rows / heads / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < half; i++) {
        const hfRow = h * 2 * half + j * half + i; // [h, j, i]
        const ggRow = h * 2 * half + i * 2 + j; // [h, i, j]
        const [from, to] = inverse ? [ggRow, hfRow] : [hfRow, ggRow];
        out.set(w.subarray(from * rowLen, (from + 1) * rowLen), to * rowLen);
      }
    }
  }
  return out;
}

/**
 * Per-dimension RoPE frequency divisors for llama3 rope scaling, written as
 * `rope_freqs.weight` (convert_hf_to_gguf.py `LlamaModel.generate_extra_tensors`):
 * llama.cpp divides each base frequency by factor[i].
 */
export function llama3RopeFactors(cfg: ModelConfig): Float32Array {
  const rs = cfg.ropeScaling;
  invariant(rs?.type === "llama3", "llama3RopeFactors needs llama3 rope scaling");
  const dim = cfg.headDim;
  const out = new Float32Array(dim / 2);
  const lowWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
  const highWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
  for (let i = 0; i < dim / 2; i++) {
    const freq = Math.fround(1 / Math.pow(cfg.ropeTheta, (2 * i) / dim)); // torch computes freqs in f32
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = rs.factor;
    else {
      const smooth = (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / rs.factor + smooth);
    }
  }
  return out;
}

/**
 * The row order of `permuteQK` as data: GGUF row r holds HF row `order[r]`. Row
 * permutations commute with per-row block quantization (FORMATS.md §4), so a quantized
 * layer is permuted by moving its code, scale and zero rows — no requantization.
 */
export function qkRowOrder(rows: number, heads: number): Int32Array {
  invariant(rows % (2 * heads) === 0, `Q/K permutation: ${rows} rows do not split into ${heads} heads of even size`);
  const half = rows / heads / 2;
  const order = new Int32Array(rows);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) for (let i = 0; i < half; i++) order[h * 2 * half + i * 2 + j] = h * 2 * half + j * half + i;
  }
  return order;
}

/** Gather rows: out row r = src row order[r] (rows of `rowLen` elements). */
export function gatherRows<T extends Uint8Array | Float32Array>(src: T, order: Int32Array, rowLen: number): T {
  const out = new (src.constructor as new (n: number) => T)(src.length);
  for (let r = 0; r < order.length; r++) out.set(src.subarray(order[r]! * rowLen, (order[r]! + 1) * rowLen), r * rowLen);
  return out;
}

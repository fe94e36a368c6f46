/**
 * Rotary position embeddings in the HF "rotate_half" convention: the first and
 * second halves of each head are the (x1, x2) pairs. Frequencies follow
 * transformers' `_compute_default_rope_parameters` / `_compute_llama3_parameters`.
 */
import type { ModelConfig } from "../arch/config.ts";

/** inv_freq[i] for i < headDim/2, with rope_scaling applied. */
export function ropeInvFreq(cfg: Pick<ModelConfig, "headDim" | "ropeTheta" | "ropeScaling">): Float64Array {
  const half = cfg.headDim / 2;
  const inv = new Float64Array(half); // [headDim/2]
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim);
  const rs = cfg.ropeScaling;
  if (rs?.type === "linear") for (let i = 0; i < half; i++) inv[i] = inv[i]! / rs.factor;
  if (rs?.type === "llama3") {
    const lowWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
    const highWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) { inv[i] = f / rs.factor; continue; }
      const smooth = (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
      inv[i] = (1 - smooth) * (f / rs.factor) + smooth * f;
    }
  }
  return inv;
}

/** cos/sin tables for positions [0, capacity), grown on demand. */
export class RopeTable {
  private readonly invFreq: Float64Array; // [half]
  private readonly half: number;
  /** [capacity, half] */
  cos = new Float32Array(0);
  /** [capacity, half] */
  sin = new Float32Array(0);
  capacity = 0;

  constructor(cfg: Pick<ModelConfig, "headDim" | "ropeTheta" | "ropeScaling">) {
    this.invFreq = ropeInvFreq(cfg);
    this.half = cfg.headDim / 2;
  }

  ensure(positions: number): void {
    if (positions <= this.capacity) return;
    const cap = Math.max(positions, this.capacity * 2, 64);
    const h = this.half;
    const cos = new Float32Array(cap * h);
    const sin = new Float32Array(cap * h);
    for (let p = 0; p < cap; p++) {
      for (let i = 0; i < h; i++) {
        // f32 product like transformers (freqs = pos · inv_freq in f32), then cos/sin.
        const a = Math.fround(p * Math.fround(this.invFreq[i]!));
        cos[p * h + i] = Math.cos(a);
        sin[p * h + i] = Math.sin(a);
      }
    }
    this.cos = cos; this.sin = sin; this.capacity = cap;
  }

  /** Rotate x [T, nHeads·headDim] in place for positions pos0..pos0+T-1. */
  apply(x: Float32Array, T: number, nHeads: number, pos0: number): void {
    this.ensure(pos0 + T);
    const h = this.half;
    const d = 2 * h;
    for (let t = 0; t < T; t++) {
      const co = (pos0 + t) * h;
      for (let hd = 0; hd < nHeads; hd++) {
        const o = (t * nHeads + hd) * d;
        for (let i = 0; i < h; i++) {
          const c = this.cos[co + i]!, s = this.sin[co + i]!;
          const x1 = x[o + i]!, x2 = x[o + h + i]!;
          x[o + i] = x1 * c - x2 * s;
          x[o + h + i] = x2 * c + x1 * s;
        }
      }
    }
  }
}

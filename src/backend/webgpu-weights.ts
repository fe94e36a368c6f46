/**
 * GPU weight layouts, built on the CPU from the loaders' canonical packing inputs
 * (backend.ts PackQ4Args / PackQ8Args / Pack16Args, made by src/load/canonical.ts from
 * HF-GPTQ, AWQ and GGUF sources) or from f32 weights, plus the plain-TS dequantization of
 * each layout: the reference the kernels are tested against.
 *
 * q4: codes u32 [N, Kw] (Kw = ceil(K/8), nibble i of word j = column 8j+i), scales and
 * zeros f16 [N, G]: w = scale·(code − zero), zero in code units = −min/scale. For GPTQ,
 * AWQ and Q4_0 the scales are f16 and the zeros integers, so the GPU weights equal the
 * CPU's dequantized weights bit for bit (`exact` counts such groups); Q4_1 / Q4_K grids
 * (f32 scale products, fractional zeros) are rounded to f16 (relative 2⁻¹¹ on the grid).
 * Act-order: the canonical codes are already in the permuted column order and x is
 * gathered by perm first: y = x[:, perm] · W'ᵀ.
 * f16: everything else (f16/bf16/f32 weights, int8 grids: Q8_0, Q6_K, GPTQ 8/3/2-bit),
 * dequantized once and rounded to f16.
 */
import type { Pack16Args, PackQ4Args, PackQ8Args } from "./backend.ts";
import { bf16ToF32, f16ToF32, f32ToF16 } from "../tensor/dtype.ts";
import { invariant } from "../util/errors.ts";

export interface Q4Layout {
  format: "q4";
  N: number;
  K: number;
  /** Words per row: ceil(K / 8). */
  Kw: number;
  /** Groups per row. */
  G: number;
  /** Words per group (groupSize / 8; Kw when one group spans the row). */
  gw: number;
  /** [N, Kw] */
  codes: Uint32Array;
  /** [N, G] f16 bits */
  scales: Uint16Array;
  /** [N, G] f16 bits, code units */
  zeros: Uint16Array;
  /** [K] permuted position → original column, or null. */
  perm: Uint32Array | null;
  /** Groups whose f16 scale·(code − zero) equals the canonical s·code + min exactly, of N·G. */
  exactGroups: number;
}

export interface F16Layout {
  format: "f16";
  N: number;
  K: number;
  Kw: number;
  /** [N, 8·Kw] f16 bits, zero padded past K */
  rows: Uint16Array;
}

export type GpuWeightLayout = Q4Layout | F16Layout;

/** Why a q4 canonical weight has no q4 GPU layout (it then goes up as f16), or null when it has one. */
export function q4Unsupported(a: Pick<PackQ4Args, "groupSize" | "K">): string | null {
  if (a.groupSize < a.K && a.groupSize % 8 !== 0) return `group size ${a.groupSize} is not a multiple of 8 (a group must be whole 32-bit words of codes)`;
  return null;
}

/** Canonical int4 (w = s·c + m, or s·(c − 8) without mins) → q4 layout; null when q4Unsupported. */
export function packQ4Gpu(a: PackQ4Args): Q4Layout | null {
  if (q4Unsupported(a) !== null) return null;
  const { N, K, groupSize } = a;
  const G = Math.ceil(K / groupSize);
  invariant(a.codes.length === N * K && a.scales.length === N * G, `packQ4Gpu: [${N}, ${K}] group ${groupSize}: ${a.codes.length} codes, ${a.scales.length} scales`);
  const Kw = Math.ceil(K / 8);
  const codes = new Uint32Array(N * Kw); // [N, Kw]
  for (let n = 0; n < N; n++) {
    const o = n * K, ow = n * Kw;
    for (let i = 0; i < K; i++) codes[ow + (i >> 3)]! |= (a.codes[o + i]! & 15) << ((i & 7) * 4);
  }
  const scales = new Uint16Array(N * G); // [N, G]
  const zeros = new Uint16Array(N * G); // [N, G]
  let exactGroups = 0;
  for (let i = 0; i < N * G; i++) {
    const s = a.scales[i]!, m = a.mins === null ? -8 * s : a.mins[i]!;
    const z = s === 0 ? 0 : -m / s; // s = 0: the group is all zero (GPTQ/AWQ), or a constant min (Q4_1 of equal values: rounded to 0)
    scales[i] = f32ToF16(s);
    zeros[i] = f32ToF16(z);
    if (f16ToF32(scales[i]!) === s && f16ToF32(zeros[i]!) === z && Number.isInteger(z) && (s !== 0 || m === 0)) exactGroups++;
  }
  return { format: "q4", N, K, Kw, G, gw: G === 1 ? Kw : groupSize / 8, codes, scales, zeros, perm: a.perm === null ? null : Uint32Array.from(a.perm), exactGroups };
}

/** Canonical int8 (w = s·c) → f16 rows (the GPU has no int8 kernel; act-order columns are put back). */
export function packQ8AsF16Gpu(a: PackQ8Args): F16Layout {
  const { N, K, groupSize } = a;
  const G = Math.ceil(K / groupSize);
  const w = new Float32Array(N * K); // [N, K] original column order
  for (let n = 0; n < N; n++) {
    for (let p = 0; p < K; p++) {
      const k = a.perm === null ? p : a.perm[p]!;
      w[n * K + k] = Math.fround(a.scales[n * G + Math.floor(p / groupSize)]! * a.codes[n * K + p]!);
    }
  }
  return packF16Gpu(w, N, K);
}

/** Stored f16/bf16 bits → f16 rows (bf16 through f32; values beyond f16's range become ±inf, checked). */
export function pack16Gpu(a: Pack16Args): F16Layout {
  const { N, K, data, dtype } = a;
  const Kw = Math.ceil(K / 8);
  const rows = new Uint16Array(N * Kw * 8); // [N, 8·Kw]
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) rows[n * Kw * 8 + k] = dtype === "f16" ? data[n * K + k]! : f32ToF16(bf16ToF32(data[n * K + k]!));
  }
  return { format: "f16", N, K, Kw, rows };
}

/** [N, K] f32 → f16 rows padded to 8·ceil(K/8). */
export function packF16Gpu(w: Float32Array, N: number, K: number): F16Layout {
  const Kw = Math.ceil(K / 8);
  const rows = new Uint16Array(N * Kw * 8); // [N, 8·Kw]
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) rows[n * Kw * 8 + k] = f32ToF16(w[n * K + k]!);
  return { format: "f16", N, K, Kw, rows };
}

/** Reference: the layout's weights as f32 [N, K], in the layout's column order (permuted for act-order). */
export function dequantizeGpuLayout(l: GpuWeightLayout): Float32Array {
  const { N, K, Kw } = l;
  const w = new Float32Array(N * K); // [N, K]
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      if (l.format === "f16") { w[n * K + k] = f16ToF32(l.rows[n * Kw * 8 + k]!); continue; }
      const g = n * l.G + Math.floor((k >> 3) / l.gw);
      const c = (l.codes[n * Kw + (k >> 3)]! >>> ((k & 7) * 4)) & 15;
      w[n * K + k] = Math.fround(f16ToF32(l.scales[g]!) * (c - f16ToF32(l.zeros[g]!)));
    }
  }
  return w;
}

/** Reference: x[M, K] with columns gathered by perm (x'[m, i] = x[m, perm[i]]). */
export function gatherColumns(x: Float32Array, M: number, K: number, perm: Uint32Array): Float32Array {
  const y = new Float32Array(M * K); // [M, K]
  for (let m = 0; m < M; m++) for (let i = 0; i < K; i++) y[m * K + i] = x[m * K + perm[i]!]!;
  return y;
}

/** Bytes the layout occupies on the GPU. */
export function layoutBytes(l: GpuWeightLayout): number {
  return l.format === "f16" ? l.rows.byteLength : l.codes.byteLength + l.scales.byteLength + l.zeros.byteLength + (l.perm?.byteLength ?? 0);
}

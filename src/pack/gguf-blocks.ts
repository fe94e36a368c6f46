/**
 * ggml block quantization formats (FORMATS.md §4 "Block layouts"; ggml/src/ggml-common.h
 * for the structs, ggml/src/ggml-quants.c for the reference quantizers). One codec table,
 * `GGML_BLOCK_TYPES`, with per type: block size and bytes per block (from ggml-types.ts,
 * the one table of ggml types), `quantizeRow` (the
 * reference quantizer `quantize_row_<t>_ref`, which IS the specification: reproduced
 * bit-exactly, f32 arithmetic emulated with Math.fround) and `dequantizeRow`
 * (`dequantize_row_<t>`).
 *
 * Also the exact "from our grid" packers: a QuantizedLinear whose grid already is a ggml
 * block grid (4-bit sym g32 → Q4_0, 4-bit asym g32 → Q4_1, 8-bit sym g32 → Q8_0) is
 * written with its codes as-is, no second rounding; `unpackGrid` inverts it.
 *
 *   block_q4_0 (18 B): f16 d | u8 qs[16]          y[j] = ((qs[j] & 15) − 8)·d, y[j+16] = ((qs[j] >> 4) − 8)·d
 *   block_q4_1 (20 B): f16 d | f16 m | u8 qs[16]  y[j] = (qs[j] & 15)·d + m,   y[j+16] = (qs[j] >> 4)·d + m
 *   block_q8_0 (34 B): f16 d | i8 qs[32]          y[j] = qs[j]·d
 */
import type { QuantizedLinear } from "../tensor/quantized.ts";
import { f16ToF32, f32ToF16 } from "../tensor/dtype.ts";
import { invariant, UsageError } from "../util/errors.ts";
import { findGgmlType } from "./ggml-types.ts";
import { dequantizeRowQ4K, dequantizeRowQ6K, quantizeRowQ4K, quantizeRowQ6K } from "./gguf-kquants.ts";

const F = Math.fround;

export type GgmlBlockTypeName = "Q4_0" | "Q4_1" | "Q8_0" | "Q4_K" | "Q6_K";

export interface GgmlBlockType {
  name: GgmlBlockTypeName;
  /** `enum ggml_type` value. */
  id: number;
  /** Elements per block (`QK4_0`, `QK_K`, ...). */
  blockSize: number;
  /** `sizeof(block_<t>)`. */
  bytesPerBlock: number;
  /** Reference quantizer: x.length % blockSize == 0; writes x.length/blockSize blocks at out[offset..]. */
  quantizeRow(x: Float32Array, out: Uint8Array, offset?: number): void;
  /** Decode y.length values from the blocks at the start of `src`. */
  dequantizeRow(src: Uint8Array, y: Float32Array): void;
}

// ---------------------------------------------------------------- Q4_0

/** `quantize_row_q4_0_ref`: d = max/−8 (max = the signed value of largest magnitude), q = min(15, trunc(x/d + 8.5)). */
export function quantizeRowQ4_0(x: Float32Array, out: Uint8Array, offset = 0): void {
  const nb = x.length / 32;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < nb; i++) {
    const xb = i * 32, o = offset + i * 18;
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[xb + j]!;
      if (amax < Math.abs(v)) { amax = Math.abs(v); max = v; }
    }
    const d = F(max / -8);
    const id = d !== 0 ? F(1 / d) : 0;
    dv.setUint16(o, f32ToF16(d), true);
    for (let j = 0; j < 16; j++) {
      // (int8_t)(x·id + 8.5f): truncation toward zero; the value lies in [0, 16.5]
      const q0 = Math.min(15, Math.trunc(F(F(x[xb + j]! * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(F(F(x[xb + 16 + j]! * id) + 8.5)));
      out[o + 2 + j] = q0 | (q1 << 4);
    }
  }
}

/** `dequantize_row_q4_0`. */
export function dequantizeRowQ4_0(src: Uint8Array, y: Float32Array): void {
  const nb = y.length / 32;
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let i = 0; i < nb; i++) {
    const o = i * 18, d = f16ToF32(dv.getUint16(o, true));
    for (let j = 0; j < 16; j++) {
      const b = src[o + 2 + j]!;
      y[i * 32 + j] = ((b & 15) - 8) * d;
      y[i * 32 + j + 16] = ((b >> 4) - 8) * d;
    }
  }
}

// ---------------------------------------------------------------- Q4_1

/** `quantize_row_q4_1_ref`: d = (max − min)/15, m = min, q = min(15, trunc((x − min)/d + 0.5)). */
export function quantizeRowQ4_1(x: Float32Array, out: Uint8Array, offset = 0): void {
  const nb = x.length / 32;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < nb; i++) {
    const xb = i * 32, o = offset + i * 20;
    let min = Infinity, max = -Infinity; // FLT_MAX in C: same result for finite input
    for (let j = 0; j < 32; j++) {
      const v = x[xb + j]!;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const d = F(F(max - min) / 15);
    const id = d !== 0 ? F(1 / d) : 0;
    dv.setUint16(o, f32ToF16(d), true);
    dv.setUint16(o + 2, f32ToF16(min), true);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(F(F(F(x[xb + j]! - min) * id) + 0.5)));
      const q1 = Math.min(15, Math.trunc(F(F(F(x[xb + 16 + j]! - min) * id) + 0.5)));
      out[o + 4 + j] = q0 | (q1 << 4);
    }
  }
}

/** `dequantize_row_q4_1` (x·d + m in f32, no FMA). */
export function dequantizeRowQ4_1(src: Uint8Array, y: Float32Array): void {
  const nb = y.length / 32;
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let i = 0; i < nb; i++) {
    const o = i * 20, d = f16ToF32(dv.getUint16(o, true)), m = f16ToF32(dv.getUint16(o + 2, true));
    for (let j = 0; j < 16; j++) {
      const b = src[o + 4 + j]!;
      y[i * 32 + j] = F((b & 15) * d) + m;
      y[i * 32 + j + 16] = F((b >> 4) * d) + m;
    }
  }
}

// ---------------------------------------------------------------- Q8_0

/** C `roundf`: half away from zero. */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** `quantize_row_q8_0_ref`: d = amax/127, q = roundf(x/d). */
export function quantizeRowQ8_0(x: Float32Array, out: Uint8Array, offset = 0): void {
  const nb = x.length / 32;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < nb; i++) {
    const xb = i * 32, o = offset + i * 34;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xb + j]!));
    const d = F(amax / 127);
    const id = d !== 0 ? F(1 / d) : 0;
    dv.setUint16(o, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) dv.setInt8(o + 2 + j, roundf(F(x[xb + j]! * id)));
  }
}

/** `dequantize_row_q8_0`. */
export function dequantizeRowQ8_0(src: Uint8Array, y: Float32Array): void {
  const nb = y.length / 32;
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let i = 0; i < nb; i++) {
    const o = i * 34, d = f16ToF32(dv.getUint16(o, true));
    for (let j = 0; j < 32; j++) y[i * 32 + j] = dv.getInt8(o + 2 + j) * d;
  }
}

// ---------------------------------------------------------------- traits table (DATA)

/** A codec entry: sizes from the one ggml type table, functions from this file. */
function codec(name: GgmlBlockTypeName, quantizeRow: GgmlBlockType["quantizeRow"], dequantizeRow: GgmlBlockType["dequantizeRow"]): GgmlBlockType {
  const t = findGgmlType(name);
  invariant(t !== undefined, `${name} is missing from GGML_TYPES`);
  return { name, id: t.id, blockSize: t.blockSize, bytesPerBlock: t.bytesPerBlock, quantizeRow, dequantizeRow };
}

/** The ggml types we can encode and decode (the rest of GGML_TYPES is only read or written as bytes). */
export const GGML_BLOCK_TYPES: Readonly<Record<GgmlBlockTypeName, GgmlBlockType>> = {
  Q4_0: codec("Q4_0", quantizeRowQ4_0, dequantizeRowQ4_0),
  Q4_1: codec("Q4_1", quantizeRowQ4_1, dequantizeRowQ4_1),
  Q8_0: codec("Q8_0", quantizeRowQ8_0, dequantizeRowQ8_0),
  Q4_K: codec("Q4_K", quantizeRowQ4K, dequantizeRowQ4K),
  Q6_K: codec("Q6_K", quantizeRowQ6K, dequantizeRowQ6K),
};

export function findBlockType(name: string): GgmlBlockType | undefined {
  return (GGML_BLOCK_TYPES as Record<string, GgmlBlockType>)[name.toUpperCase()];
}

/** Quantize a [rows, K] f32 matrix (row-major) to `type` blocks with the reference quantizer. */
export function quantizeMatrix(type: GgmlBlockType, x: Float32Array, K: number): Uint8Array {
  invariant(K % type.blockSize === 0 && x.length % K === 0, `${type.name}: row length ${K} is not a multiple of ${type.blockSize}`);
  const rows = x.length / K, rowBytes = (K / type.blockSize) * type.bytesPerBlock;
  const out = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r++) type.quantizeRow(x.subarray(r * K, (r + 1) * K), out, r * rowBytes);
  return out;
}

/** Decode `n` values of `type` blocks to f32. */
export function dequantizeBlocks(type: GgmlBlockType, src: Uint8Array, n: number): Float32Array {
  invariant(n % type.blockSize === 0 && src.length >= (n / type.blockSize) * type.bytesPerBlock, `${type.name}: ${src.length} bytes do not hold ${n} values`);
  const y = new Float32Array(n);
  type.dequantizeRow(src, y);
  return y;
}

// ---------------------------------------------------------------- exact packers from our grid

/** The block type a QuantizedLinear's grid IS, or a reason why none fits exactly. */
export function exactBlockType(q: Pick<QuantizedLinear, "bits" | "groupSize" | "sym" | "K" | "gIdx">): { type: "Q4_0" | "Q4_1" | "Q8_0" } | { problem: string } {
  if (q.groupSize !== 32) return { problem: `group size ${q.groupSize} (ggml 4/8-bit blocks hold 32 weights)` };
  if (q.K % 32 !== 0) return { problem: `in_features ${q.K} is not a multiple of 32` };
  for (let k = 0; k < q.K; k++) {
    if (q.gIdx[k] !== k >> 5) return { problem: `non-contiguous groups (act-order g_idx: column ${k} is in group ${q.gIdx[k]})` };
  }
  if (q.bits === 4) return { type: q.sym ? "Q4_0" : "Q4_1" };
  if (q.bits === 8 && q.sym) return { type: "Q8_0" };
  return { problem: `${q.bits}-bit ${q.sym ? "symmetric" : "asymmetric"} codes (exact: 4-bit sym → Q4_0, 4-bit asym → Q4_1, 8-bit sym → Q8_0)` };
}

export interface GridPackResult {
  type: "Q4_0" | "Q4_1" | "Q8_0";
  /** [N rows of K/32 blocks] */
  bytes: Uint8Array;
  /** Largest |dequant(GGUF) − dequant(ours)| over the tensor: 0 for Q4_0/Q8_0; the f16 rounding of m = −s·z for Q4_1. */
  maxAbsError: number;
}

/**
 * Write a QuantizedLinear as ggml blocks with its own codes (no second rounding).
 * Q4_0: d = s, qs = codes (our sym zero is 8, ggml's offset is 8).
 * Q4_1: d = s, m = f16(−s·z), qs = codes.
 * Q8_0: d = s, qs = codes − 128 (our sym 8-bit zero is 128).
 */
export function packGridBlocks(q: QuantizedLinear): GridPackResult {
  const fit = exactBlockType(q);
  if ("problem" in fit) {
    throw new UsageError("quantized layer does not map exactly to a ggml block type", {
      expected: "4-bit or 8-bit codes, group size 32, contiguous groups", found: fit.problem,
      hint: "quantize with --bits 4 --group-size 32 (add --sym for Q4_0) and without --act-order, or let the exporter re-quantize",
    });
  }
  const { N, K, codes, scales, zeros } = q;
  const G = K / 32;
  invariant(scales.length === N * G && zeros.length === N * G && codes.length === N * K, "QuantizedLinear arrays do not match N, K, groupSize");
  const t = GGML_BLOCK_TYPES[fit.type];
  const out = new Uint8Array(N * G * t.bytesPerBlock);
  const dv = new DataView(out.buffer);
  let maxAbsError = 0;
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      const o = (n * G + g) * t.bytesPerBlock, c = n * K + g * 32;
      const s = scales[n * G + g]!, z = zeros[n * G + g]!;
      const sBits = f32ToF16(s);
      invariant(f16ToF32(sBits) === s, () => `scale ${s} of row ${n} group ${g} is not f16-representable`);
      dv.setUint16(o, sBits, true);
      if (fit.type === "Q8_0") {
        invariant(z === 128, () => `8-bit symmetric zero point must be 128, found ${z}`);
        for (let j = 0; j < 32; j++) dv.setInt8(o + 2 + j, codes[c + j]! - 128);
        continue;
      }
      let qo = o + 2;
      if (fit.type === "Q4_0") {
        invariant(z === 8, () => `4-bit symmetric zero point must be 8, found ${z}`);
      } else {
        const mBits = f32ToF16(-s * z);
        dv.setUint16(o + 2, mBits, true);
        qo = o + 4;
        // our value s·(q − z) vs ggml's q·d + m: the difference is m's f16 rounding (plus f32 rounding of both sides)
        const m = f16ToF32(mBits);
        for (let j = 0; j < 32; j++) {
          const ours = F(s * (codes[c + j]! - z)), theirs = F(F(codes[c + j]! * s) + m);
          maxAbsError = Math.max(maxAbsError, Math.abs(ours - theirs));
        }
      }
      for (let j = 0; j < 16; j++) out[qo + j] = (codes[c + j]! & 15) | ((codes[c + j + 16]! & 15) << 4);
    }
  }
  return { type: fit.type, bytes: out, maxAbsError };
}

/**
 * Inverse of `packGridBlocks`: ggml blocks → QuantizedLinear on our grid. Q4_1's zero is
 * recovered as round(−m/d) (exact when m came from −s·z with small f16 rounding).
 */
export function unpackGridBlocks(type: "Q4_0" | "Q4_1" | "Q8_0", bytes: Uint8Array, N: number, K: number): QuantizedLinear {
  const t = GGML_BLOCK_TYPES[type];
  const G = K / 32;
  invariant(K % 32 === 0 && bytes.length === N * G * t.bytesPerBlock, `${type}: ${bytes.length} bytes do not hold [${N}, ${K}]`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const codes = new Uint8Array(N * K), scales = new Float32Array(N * G), zeros = new Uint8Array(N * G);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      const o = (n * G + g) * t.bytesPerBlock, c = n * K + g * 32;
      const s = f16ToF32(dv.getUint16(o, true));
      scales[n * G + g] = s;
      if (type === "Q8_0") {
        zeros[n * G + g] = 128;
        for (let j = 0; j < 32; j++) codes[c + j] = dv.getInt8(o + 2 + j) + 128;
        continue;
      }
      let qo = o + 2;
      if (type === "Q4_0") zeros[n * G + g] = 8;
      else {
        const m = f16ToF32(dv.getUint16(o + 2, true));
        zeros[n * G + g] = s === 0 ? 0 : Math.max(0, Math.min(15, Math.round(-m / s)));
        qo = o + 4;
      }
      for (let j = 0; j < 16; j++) {
        const b = bytes[qo + j]!;
        codes[c + j] = b & 15;
        codes[c + j + 16] = b >> 4;
      }
    }
  }
  const gIdx = new Int32Array(K);
  for (let k = 0; k < K; k++) gIdx[k] = k >> 5;
  return { N, K, bits: type === "Q8_0" ? 8 : 4, groupSize: 32, sym: type !== "Q4_1", codes, scales, zeros, gIdx };
}

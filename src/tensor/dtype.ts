/**
 * Storage dtypes and their conversions to/from f32.
 * BF16 = upper 16 bits of an IEEE f32 (round to nearest even on the way down).
 * F16  = IEEE 754 binary16 (round to nearest even on the way down).
 */
import { invariant } from "../util/errors.ts";

export type DType = "F32" | "F16" | "BF16" | "I32" | "I8" | "U8" | "I64" | "I16" | "U16" | "F64" | "BOOL";

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1,
};

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

export function f32ToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x40; // keep NaN a NaN
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f16ToF32(h: number): number {
  const s = (h & 0x8000) ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** f32 → f16 bits, round to nearest even (matches numpy/torch `.half()` and ggml's FP32_TO_FP16). */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && (h & 1))) h++;
    return sign | h;
  }
  const rest = mant & 0x1fff;
  let h = (e << 10) | (mant >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** Decode raw little-endian bytes of `dtype` into a fresh Float32Array. */
export function toF32(dtype: DType, bytes: Uint8Array): Float32Array {
  return toF32Into(dtype, bytes, new Float32Array(bytes.byteLength / DTYPE_SIZE[dtype]));
}

/** toF32 into `out` (length = the element count of `bytes`), e.g. a reused buffer; returns `out`. */
export function toF32Into(dtype: DType, bytes: Uint8Array, out: Float32Array): Float32Array {
  const n = bytes.byteLength / DTYPE_SIZE[dtype];
  invariant(out.length === n, () => `toF32Into: ${n} ${dtype} values into an array of ${out.length}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case "F32": for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true); break;
    case "F64": for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true); break;
    case "BF16": {
      const o32 = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) o32[i] = dv.getUint16(2 * i, true) << 16;
      break;
    }
    case "F16": for (let i = 0; i < n; i++) out[i] = f16ToF32(dv.getUint16(2 * i, true)); break;
    case "I32": for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true); break;
    case "I16": for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, true); break;
    case "U16": for (let i = 0; i < n; i++) out[i] = dv.getUint16(2 * i, true); break;
    case "I8": for (let i = 0; i < n; i++) out[i] = dv.getInt8(i); break;
    case "U8": case "BOOL": for (let i = 0; i < n; i++) out[i] = bytes[i]!; break;
    case "I64": for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(8 * i, true)); break;
  }
  return out;
}

/** Encode f32 values as little-endian bytes of a float dtype (F32, F16 or BF16). */
export function fromF32(dtype: "F32" | "F16" | "BF16", x: Float32Array): Uint8Array {
  const out = new Uint8Array(x.length * DTYPE_SIZE[dtype]);
  const dv = new DataView(out.buffer);
  if (dtype === "F32") for (let i = 0; i < x.length; i++) dv.setFloat32(4 * i, x[i]!, true);
  else if (dtype === "F16") for (let i = 0; i < x.length; i++) dv.setUint16(2 * i, f32ToF16(x[i]!), true);
  else for (let i = 0; i < x.length; i++) dv.setUint16(2 * i, f32ToBf16(x[i]!), true);
  return out;
}

/**
 * GGUF v3 shared definitions (FORMATS.md §4): limits, the ggml type table (re-exported from
 * pack/ggml-types.ts, its one home), KV value types and their byte encoding. Used by gguf-write.ts and gguf.ts (the reader).
 */
import { UsageError, invariant } from "../util/errors.ts";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
/** `GGUF_DEFAULT_ALIGNMENT` in ggml/include/gguf.h. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_ALIGNMENT_KEY = "general.alignment";
/** `GGML_MAX_DIMS` in ggml.h. */
export const GGML_MAX_DIMS = 4;
/** The GGUF spec limits keys to 65535 bytes. */
export const MAX_KEY_BYTES = 65_535;
/** `GGUF_MAX_STRING_LENGTH` / `GGUF_MAX_ARRAY_ELEMENTS` in gguf.cpp (both 1 GiB). */
export const MAX_STRING_BYTES = 1 << 30;
export const MAX_ARRAY_ITEMS = 1 << 30;
/** Header bytes read per positioned read while parsing. */
export const READ_CHUNK = 1 << 20;
/** Largest single read/write call: fs calls are limited to 2 GiB - 1 bytes each. */
export const IO_CHUNK = 1 << 30;

// ---------------------------------------------------------------- ggml types: one table, in pack/ggml-types.ts

export { GGML_TYPES, TYPE_BY_ID, TYPE_BY_NAME, findGgmlType, ggmlTensorBytes, type GgmlTypeInfo } from "../pack/ggml-types.ts";

// ---------------------------------------------------------------- KV values

/** GGUF metadata value types (`enum gguf_type` in gguf.h), by their on-disk id. */
export const GGUF_VALUE_TYPES = ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"] as const;
export type GgufValueTypeName = (typeof GGUF_VALUE_TYPES)[number];
export type GgufNumberType = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64";
export type GgufBigIntType = "u64" | "i64";
export type GgufItemType = Exclude<GgufValueTypeName, "array">;

export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | GgufArray;

export type GgufArray =
  | { type: "array"; itemType: GgufNumberType; value: readonly number[] }
  | { type: "array"; itemType: GgufBigIntType; value: readonly bigint[] }
  | { type: "array"; itemType: "bool"; value: readonly boolean[] }
  | { type: "array"; itemType: "string"; value: readonly string[] };

/** Constructors for KV values: `kv.u32(3)`, `kv.strings(tokens)`, `kv.i32s(types)`. */
export const kv = {
  u8: (value: number): GgufValue => ({ type: "u8", value }),
  i8: (value: number): GgufValue => ({ type: "i8", value }),
  u16: (value: number): GgufValue => ({ type: "u16", value }),
  i16: (value: number): GgufValue => ({ type: "i16", value }),
  u32: (value: number): GgufValue => ({ type: "u32", value }),
  i32: (value: number): GgufValue => ({ type: "i32", value }),
  f32: (value: number): GgufValue => ({ type: "f32", value }),
  f64: (value: number): GgufValue => ({ type: "f64", value }),
  u64: (value: bigint | number): GgufValue => ({ type: "u64", value: BigInt(value) }),
  i64: (value: bigint | number): GgufValue => ({ type: "i64", value: BigInt(value) }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  str: (value: string): GgufValue => ({ type: "string", value }),
  array: (itemType: GgufNumberType, value: ArrayLike<number>): GgufValue => ({ type: "array", itemType, value: Array.from(value) }),
  strings: (value: readonly string[]): GgufValue => ({ type: "array", itemType: "string", value }),
  i32s: (value: ArrayLike<number>): GgufValue => ({ type: "array", itemType: "i32", value: Array.from(value) }),
  f32s: (value: ArrayLike<number>): GgufValue => ({ type: "array", itemType: "f32", value: Array.from(value) }),
};

/** Byte size and DataView accessors of the fixed-size value types. */
export const FIXED: Readonly<Record<Exclude<GgufItemType, "string">, number>> = {
  u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8,
};

export const NUMBER_RANGE: Readonly<Record<GgufNumberType, [number, number] | null>> = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff], f32: null, f64: null,
};
export const BIGINT_RANGE: Readonly<Record<GgufBigIntType, [bigint, bigint]>> = {
  u64: [0n, 0xffffffffffffffffn], i64: [-(1n << 63n), (1n << 63n) - 1n],
};

// ---------------------------------------------------------------- byte encoding

/** A growable little-endian byte buffer (header encoding). */
export class ByteBuilder {
  private buf = new Uint8Array(4096);
  private dv = new DataView(this.buf.buffer);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.length));
    this.buf = nb;
    this.dv = new DataView(nb.buffer);
  }

  bytes(b: Uint8Array): void { this.ensure(b.length); this.buf.set(b, this.length); this.length += b.length; }
  u32(v: number): void { this.ensure(4); this.dv.setUint32(this.length, v, true); this.length += 4; }
  u64(v: number | bigint): void { this.ensure(8); this.dv.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  string(s: string): void { const b = new TextEncoder().encode(s); this.u64(b.length); this.bytes(b); }

  item(type: GgufItemType, v: number | bigint | boolean | string): void {
    if (type === "string") { this.string(v as string); return; }
    const n = FIXED[type];
    this.ensure(n);
    const o = this.length;
    const dv = this.dv;
    switch (type) {
      case "u8": dv.setUint8(o, v as number); break;
      case "i8": dv.setInt8(o, v as number); break;
      case "bool": dv.setUint8(o, v ? 1 : 0); break;
      case "u16": dv.setUint16(o, v as number, true); break;
      case "i16": dv.setInt16(o, v as number, true); break;
      case "u32": dv.setUint32(o, v as number, true); break;
      case "i32": dv.setInt32(o, v as number, true); break;
      case "f32": dv.setFloat32(o, v as number, true); break;
      case "f64": dv.setFloat64(o, v as number, true); break;
      case "u64": dv.setBigUint64(o, v as bigint, true); break;
      case "i64": dv.setBigInt64(o, v as bigint, true); break;
    }
    this.length += n;
  }

  pad(alignment: number): void {
    const n = alignUp(this.length, alignment) - this.length;
    this.ensure(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }

  result(): Uint8Array { return this.buf.slice(0, this.length); }
}

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Validate a value the caller wants to write; returns a problem description or undefined. */
export function valueProblem(v: GgufValue): string | undefined {
  const itemProblem = (type: GgufItemType, x: unknown): string | undefined => {
    if (type === "string") return typeof x === "string" ? undefined : "expected a string";
    if (type === "bool") return typeof x === "boolean" ? undefined : "expected a boolean";
    if (type === "u64" || type === "i64") {
      const [lo, hi] = BIGINT_RANGE[type];
      return typeof x === "bigint" && x >= lo && x <= hi ? undefined : `expected a bigint in [${lo}, ${hi}]`;
    }
    if (typeof x !== "number") return "expected a number";
    const range = NUMBER_RANGE[type];
    if (range !== null && (!Number.isInteger(x) || x < range[0] || x > range[1])) return `expected an integer in [${range[0]}, ${range[1]}]`;
    return undefined;
  };
  if (v.type !== "array") return itemProblem(v.type, v.value);
  if ((v.itemType as string) === "array") return "nested arrays are not supported by GGUF readers (gguf.cpp rejects them)";
  if (!GGUF_VALUE_TYPES.includes(v.itemType)) return `unknown array item type ${String(v.itemType)}`;
  for (let i = 0; i < v.value.length; i++) {
    const p = itemProblem(v.itemType, v.value[i]);
    if (p !== undefined) return `item ${i}: ${p}`;
  }
  return undefined;
}


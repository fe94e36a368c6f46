/**
 * GGUF v3 shared definitions (FORMATS.md §4): limits, the ggml type table (DATA), KV value
 * types and their byte encoding. Used by gguf-write.ts and gguf.ts (the reader).
 */
import { findBlockType } from "../pack/gguf-blocks.ts";
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

// ---------------------------------------------------------------- ggml types (DATA)

export interface GgmlTypeInfo {
  /** `enum ggml_type` value (ggml/include/ggml.h). */
  id: number;
  /** Upper-case name as in `GGML_TYPE_<NAME>` (lower-case `type_name` in ggml.c). */
  name: string;
  /** Elements per block (`blck_size` in ggml.c type_traits); 1 for plain types. */
  blockSize: number;
  /** Bytes per block (`sizeof(block_<t>)`, static_asserts in ggml-common.h). */
  bytesPerBlock: number;
}

/** Every type a GGUF file may hold (ids 4, 5, 31–33, 36–38 were removed from ggml). */
export const GGML_TYPES: readonly GgmlTypeInfo[] = [
  { id: 0, name: "F32", blockSize: 1, bytesPerBlock: 4 },
  { id: 1, name: "F16", blockSize: 1, bytesPerBlock: 2 },
  { id: 2, name: "Q4_0", blockSize: 32, bytesPerBlock: 18 },
  { id: 3, name: "Q4_1", blockSize: 32, bytesPerBlock: 20 },
  { id: 6, name: "Q5_0", blockSize: 32, bytesPerBlock: 22 },
  { id: 7, name: "Q5_1", blockSize: 32, bytesPerBlock: 24 },
  { id: 8, name: "Q8_0", blockSize: 32, bytesPerBlock: 34 },
  { id: 9, name: "Q8_1", blockSize: 32, bytesPerBlock: 36 },
  { id: 10, name: "Q2_K", blockSize: 256, bytesPerBlock: 84 },
  { id: 11, name: "Q3_K", blockSize: 256, bytesPerBlock: 110 },
  { id: 12, name: "Q4_K", blockSize: 256, bytesPerBlock: 144 },
  { id: 13, name: "Q5_K", blockSize: 256, bytesPerBlock: 176 },
  { id: 14, name: "Q6_K", blockSize: 256, bytesPerBlock: 210 },
  { id: 15, name: "Q8_K", blockSize: 256, bytesPerBlock: 292 },
  { id: 16, name: "IQ2_XXS", blockSize: 256, bytesPerBlock: 66 },
  { id: 17, name: "IQ2_XS", blockSize: 256, bytesPerBlock: 74 },
  { id: 18, name: "IQ3_XXS", blockSize: 256, bytesPerBlock: 98 },
  { id: 19, name: "IQ1_S", blockSize: 256, bytesPerBlock: 50 },
  { id: 20, name: "IQ4_NL", blockSize: 32, bytesPerBlock: 18 },
  { id: 21, name: "IQ3_S", blockSize: 256, bytesPerBlock: 110 },
  { id: 22, name: "IQ2_S", blockSize: 256, bytesPerBlock: 82 },
  { id: 23, name: "IQ4_XS", blockSize: 256, bytesPerBlock: 136 },
  { id: 24, name: "I8", blockSize: 1, bytesPerBlock: 1 },
  { id: 25, name: "I16", blockSize: 1, bytesPerBlock: 2 },
  { id: 26, name: "I32", blockSize: 1, bytesPerBlock: 4 },
  { id: 27, name: "I64", blockSize: 1, bytesPerBlock: 8 },
  { id: 28, name: "F64", blockSize: 1, bytesPerBlock: 8 },
  { id: 29, name: "IQ1_M", blockSize: 256, bytesPerBlock: 56 },
  { id: 30, name: "BF16", blockSize: 1, bytesPerBlock: 2 },
  { id: 34, name: "TQ1_0", blockSize: 256, bytesPerBlock: 54 },
  { id: 35, name: "TQ2_0", blockSize: 256, bytesPerBlock: 66 },
  { id: 39, name: "MXFP4", blockSize: 32, bytesPerBlock: 17 },
  { id: 40, name: "NVFP4", blockSize: 64, bytesPerBlock: 36 },
  { id: 41, name: "Q1_0", blockSize: 128, bytesPerBlock: 18 },
  { id: 42, name: "Q2_0", blockSize: 64, bytesPerBlock: 18 },
];

export const TYPE_BY_ID = new Map(GGML_TYPES.map((t) => [t.id, t]));
export const TYPE_BY_NAME = new Map(GGML_TYPES.map((t) => [t.name, t]));

/** Look a ggml type up by id or (case-insensitive) name; undefined when unknown. */
export function findGgmlType(t: number | string): GgmlTypeInfo | undefined {
  return typeof t === "number" ? TYPE_BY_ID.get(t) : TYPE_BY_NAME.get(t.toUpperCase());
}

/**
 * Bytes of a tensor of `type` with `dims` (innermost first), or a description of why it
 * cannot exist: dims[0] not a multiple of the block size, or a size beyond 2^53.
 */
export function ggmlTensorBytes(type: GgmlTypeInfo, dims: readonly number[]): number | string {
  const d0 = dims[0] ?? 1;
  if (d0 % type.blockSize !== 0) return `dims[0] = ${d0} is not a multiple of the ${type.name} block size ${type.blockSize}`;
  let n = d0 / type.blockSize * type.bytesPerBlock;
  if (n > Number.MAX_SAFE_INTEGER) return "tensor size exceeds 2^53 bytes";
  for (let i = 1; i < dims.length; i++) {
    const d = dims[i]!;
    if (d !== 0 && n > Number.MAX_SAFE_INTEGER / d) return "tensor size exceeds 2^53 bytes";
    n *= d;
  }
  return n;
}

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


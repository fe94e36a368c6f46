/**
 * GGUF v3 reader and writer (FORMATS.md §4; reference: ggml/src/gguf.cpp in llama.cpp).
 *
 *   u32 magic "GGUF" | u32 version 3 | u64 tensor_count | u64 kv_count
 *   kv_count × (string key, u32 value_type, value)
 *   tensor_count × (string name, u32 n_dims, u64 dims[n_dims] (innermost first), u32 ggml_type, u64 offset)
 *   zero padding to general.alignment (default 32)
 *   tensor data, each tensor at a multiple of the alignment (offsets relative to the data start)
 *
 * The writer declares every KV pair and tensor up front (so offsets are known), then
 * streams tensor bytes one tensor at a time into a temp file renamed on `finish()`.
 * The reader validates the whole header with bounded allocations (every count and
 * length is checked against the bytes left in the file before anything is allocated)
 * and reads tensor bytes lazily with one positioned read per tensor.
 */

import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dequantizeBlocks, findBlockType, GGML_BLOCK_TYPES } from "../pack/gguf-blocks.ts";
import { toF32 } from "../tensor/dtype.ts";
import { FormatError, UsageError, invariant, type ErrorDetails } from "../util/errors.ts";
import { removeTempFile, renameAtomic, tempPathFor } from "./atomic.ts";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
/** `GGUF_DEFAULT_ALIGNMENT` in ggml/include/gguf.h. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_ALIGNMENT_KEY = "general.alignment";
/** `GGML_MAX_DIMS` in ggml.h. */
export const GGML_MAX_DIMS = 4;
/** The GGUF spec limits keys to 65535 bytes. */
const MAX_KEY_BYTES = 65_535;
/** `GGUF_MAX_STRING_LENGTH` / `GGUF_MAX_ARRAY_ELEMENTS` in gguf.cpp (both 1 GiB). */
const MAX_STRING_BYTES = 1 << 30;
const MAX_ARRAY_ITEMS = 1 << 30;
/** Header bytes read per positioned read while parsing. */
const READ_CHUNK = 1 << 20;
/** Largest single read/write call: fs calls are limited to 2 GiB - 1 bytes each. */
const IO_CHUNK = 1 << 30;

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

const TYPE_BY_ID = new Map(GGML_TYPES.map((t) => [t.id, t]));
const TYPE_BY_NAME = new Map(GGML_TYPES.map((t) => [t.name, t]));

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
const FIXED: Readonly<Record<Exclude<GgufItemType, "string">, number>> = {
  u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8,
};

const NUMBER_RANGE: Readonly<Record<GgufNumberType, [number, number] | null>> = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff], f32: null, f64: null,
};
const BIGINT_RANGE: Readonly<Record<GgufBigIntType, [bigint, bigint]>> = {
  u64: [0n, 0xffffffffffffffffn], i64: [-(1n << 63n), (1n << 63n) - 1n],
};

// ---------------------------------------------------------------- byte encoding

/** A growable little-endian byte buffer (header encoding). */
class ByteBuilder {
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
function valueProblem(v: GgufValue): string | undefined {
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

// ---------------------------------------------------------------- writer

export interface GgufTensorDecl {
  name: string;
  /** Dimensions, innermost first: a PyTorch [N, K] weight is [K, N]. */
  dims: readonly number[];
  /** ggml type name ("F32", "F16", "Q4_0", ...) or id. */
  type: string | number;
  /** Optional check: the byte size the caller will write. */
  byteSize?: number;
}

export interface GgufTensorInfo {
  name: string;
  /** Innermost first, as stored. */
  dims: number[];
  type: GgmlTypeInfo;
  /** Offset relative to the data section start (a multiple of the alignment). */
  offset: number;
  byteSize: number;
}

export interface GgufWriterOptions {
  /** Alignment of the data section and of every tensor; written as general.alignment when not 32. */
  alignment?: number;
}

/** Encode the header (with the trailing padding): the exact bytes before the first tensor. */
export function encodeGgufHeader(
  kvs: readonly (readonly [string, GgufValue])[], tensors: readonly GgufTensorDecl[], opts: GgufWriterOptions = {},
): { header: Uint8Array; infos: GgufTensorInfo[]; alignment: number; dataBytes: number } {
  const fail = (summary: string, d: ErrorDetails): UsageError => new UsageError(`cannot write GGUF: ${summary}`, d);
  const entries = [...kvs];
  const alignKv = entries.find(([k]) => k === GGUF_ALIGNMENT_KEY);
  let alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (alignKv !== undefined) {
    const v = alignKv[1];
    if (v.type !== "u32") throw fail("general.alignment must be a u32", { field: GGUF_ALIGNMENT_KEY, found: v.type });
    if (opts.alignment !== undefined && opts.alignment !== v.value) {
      throw fail("alignment option and general.alignment disagree", { field: GGUF_ALIGNMENT_KEY, expected: String(opts.alignment), found: String(v.value) });
    }
    alignment = v.value;
  } else if (alignment !== GGUF_DEFAULT_ALIGNMENT) {
    entries.push([GGUF_ALIGNMENT_KEY, kv.u32(alignment)]);
  }
  if (!Number.isInteger(alignment) || alignment < 1 || (alignment & (alignment - 1)) !== 0 || alignment > 0x80000000) {
    throw fail("alignment must be a power of two", { field: GGUF_ALIGNMENT_KEY, found: String(alignment) });
  }

  const b = new ByteBuilder();
  b.u32(GGUF_MAGIC);
  b.u32(GGUF_VERSION);
  b.u64(tensors.length);
  b.u64(entries.length);
  const keys = new Set<string>();
  for (const [key, value] of entries) {
    if (key.length === 0 || new TextEncoder().encode(key).length > MAX_KEY_BYTES) throw fail("invalid key", { field: key, expected: "1..65535 bytes" });
    if (keys.has(key)) throw fail("duplicate key", { field: key });
    keys.add(key);
    const problem = valueProblem(value);
    if (problem !== undefined) throw fail(`invalid value for key "${key}"`, { field: key, expected: `a valid ${value.type}`, found: problem });
    b.string(key);
    b.u32(GGUF_VALUE_TYPES.indexOf(value.type));
    if (value.type === "array") {
      b.u32(GGUF_VALUE_TYPES.indexOf(value.itemType));
      b.u64(value.value.length);
      for (const x of value.value) b.item(value.itemType, x);
    } else {
      b.item(value.type, value.value);
    }
  }

  const infos: GgufTensorInfo[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    const type = findGgmlType(t.type);
    if (type === undefined) throw fail("unknown ggml type", { field: t.name, found: String(t.type), expected: GGML_TYPES.map((x) => x.name).join(", ") });
    if (t.name.length === 0 || names.has(t.name)) throw fail(t.name.length === 0 ? "empty tensor name" : "duplicate tensor name", { field: t.name });
    names.add(t.name);
    if (t.dims.length < 1 || t.dims.length > GGML_MAX_DIMS || !t.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw fail("invalid dims", { field: t.name, expected: `1..${GGML_MAX_DIMS} non-negative integers`, found: JSON.stringify(t.dims) });
    }
    const size = ggmlTensorBytes(type, t.dims);
    if (typeof size === "string") throw fail(size, { field: t.name, found: JSON.stringify(t.dims) });
    if (t.byteSize !== undefined && t.byteSize !== size) {
      throw fail("declared byte size does not match dims and type", { field: t.name, expected: `${size} bytes`, found: `${t.byteSize} bytes` });
    }
    infos.push({ name: t.name, dims: [...t.dims], type, offset, byteSize: size });
    b.string(t.name);
    b.u32(t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(type.id);
    b.u64(offset);
    offset += alignUp(size, alignment);
  }
  b.pad(alignment);
  return { header: b.result(), infos, alignment, dataBytes: offset };
}

/**
 * Streaming GGUF writer. Use as:
 *   const w = await GgufWriter.create(path, kvs, tensors);
 *   try { for (...) await w.writeTensor(name, bytes); await w.finish(); } catch (e) { await w.abort(); throw e; }
 */
export class GgufWriter {
  #handle: FileHandle | undefined;
  #next = 0;
  #pos: number;

  private constructor(
    readonly path: string, readonly tmpPath: string, handle: FileHandle,
    readonly infos: readonly GgufTensorInfo[], readonly alignment: number, readonly dataStart: number,
    /** Final file size: header + every tensor padded to the alignment. */
    readonly totalBytes: number,
  ) {
    this.#handle = handle;
    this.#pos = dataStart;
  }

  static async create(
    path: string, kvs: readonly (readonly [string, GgufValue])[], tensors: readonly GgufTensorDecl[], opts: GgufWriterOptions = {},
  ): Promise<GgufWriter> {
    const { header, infos, alignment, dataBytes } = encodeGgufHeader(kvs, tensors, opts);
    const tmp = tempPathFor(path);
    const h = await open(tmp, "wx");
    const w = new GgufWriter(path, tmp, h, infos, alignment, header.length, header.length + dataBytes);
    try {
      await w.#writeAt(header, 0);
    } catch (err) {
      await w.abort();
      throw err;
    }
    return w;
  }

  /** The tensor `writeTensor` expects next, or undefined when all are written. */
  get next(): GgufTensorInfo | undefined {
    return this.infos[this.#next];
  }

  /** Write the next tensor's raw bytes (ggml layout), then zero padding to the alignment. */
  async writeTensor(name: string, data: Uint8Array): Promise<void> {
    const t = this.next;
    if (t === undefined || t.name !== name) {
      throw new UsageError("GGUF tensors must be written in declaration order", {
        file: this.path, field: name, expected: t === undefined ? "no more tensors" : `"${t.name}"`, found: `"${name}"`,
      });
    }
    if (data.byteLength !== t.byteSize) {
      throw new UsageError(`GGUF tensor "${name}" has the wrong byte size`, {
        file: this.path, field: name, expected: `${t.byteSize} bytes (${t.type.name} [${t.dims.join(", ")}])`, found: `${data.byteLength} bytes`,
      });
    }
    invariant(this.#pos === this.dataStart + t.offset, `GGUF writer position ${this.#pos} != offset of ${name}`);
    await this.#writeAt(data, this.#pos);
    const padded = alignUp(t.byteSize, this.alignment);
    if (padded > t.byteSize) await this.#writeAt(new Uint8Array(padded - t.byteSize), this.#pos + t.byteSize);
    this.#pos += padded;
    this.#next++;
  }

  /** fsync, close and rename over `path`. Fails (keeping the temp file for `abort`) if tensors are missing. */
  async finish(): Promise<void> {
    const t = this.next;
    if (t !== undefined) {
      throw new UsageError("GGUF finish() before every tensor was written", {
        file: this.path, expected: `"${t.name}" and ${this.infos.length - this.#next - 1} more`,
      });
    }
    const h = this.#handleOrFail();
    await h.sync();
    this.#handle = undefined;
    await h.close();
    await renameAtomic(this.tmpPath, this.path);
  }

  /** Close and delete the temp file. Idempotent; a no-op after a successful finish(). */
  async abort(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    try {
      await h?.close();
    } finally {
      await removeTempFile(this.tmpPath);
    }
  }

  async #writeAt(data: Uint8Array, position: number): Promise<void> {
    const h = this.#handleOrFail();
    for (let off = 0; off < data.byteLength;) {
      const { bytesWritten } = await h.write(data, off, Math.min(data.byteLength - off, IO_CHUNK), position + off);
      invariant(bytesWritten > 0, `write to ${this.tmpPath} made no progress`);
      off += bytesWritten;
    }
  }

  #handleOrFail(): FileHandle {
    invariant(this.#handle !== undefined, `GGUF writer for ${this.path} is already finished or aborted`);
    return this.#handle;
  }
}

/** Write a whole GGUF file (tensors given with their bytes) atomically. */
export async function writeGguf(
  path: string, kvs: readonly (readonly [string, GgufValue])[],
  tensors: readonly (GgufTensorDecl & { data: Uint8Array })[], opts: GgufWriterOptions = {},
): Promise<void> {
  const w = await GgufWriter.create(path, kvs, tensors, opts);
  try {
    for (const t of tensors) await w.writeTensor(t.name, t.data);
    await w.finish();
  } catch (err) {
    await w.abort();
    throw err;
  }
}

// ---------------------------------------------------------------- reader

/** Sequential little-endian reader over a file descriptor, one positioned read per chunk. */
class HeaderCursor {
  private buf = new Uint8Array(0);
  private bufStart = 0;
  pos = 0;

  constructor(private readonly fd: number, readonly fileSize: number, private readonly file: string) {}

  get remaining(): number { return this.fileSize - this.pos; }

  /** Make bytes [pos, pos+n) available; returns their offset inside `buf`. */
  private need(n: number, field: string): number {
    if (n > this.remaining) {
      throw new FormatError("GGUF file is truncated", {
        file: this.file, field, expected: `${n} more bytes at offset ${this.pos}`, found: `${this.remaining} bytes left (file size ${this.fileSize})`,
        hint: "the file was cut short (interrupted download or write?); re-create or re-download it",
      });
    }
    const rel = this.pos - this.bufStart;
    if (rel >= 0 && rel + n <= this.buf.length) return rel;
    const len = Math.min(Math.max(n, READ_CHUNK), this.remaining);
    const buf = new Uint8Array(len);
    for (let off = 0; off < len;) {
      const got = readSync(this.fd, buf, off, Math.min(len - off, IO_CHUNK), this.pos + off);
      if (got === 0) throw new FormatError("GGUF file shrank while reading", { file: this.file, field });
      off += got;
    }
    this.buf = buf;
    this.bufStart = this.pos;
    return 0;
  }

  bytes(n: number, field: string): Uint8Array {
    const o = this.need(n, field);
    this.pos += n;
    return this.buf.subarray(o, o + n);
  }

  view(n: number, field: string): DataView {
    const b = this.bytes(n, field);
    return new DataView(b.buffer, b.byteOffset, n);
  }

  u32(field: string): number { return this.view(4, field).getUint32(0, true); }

  /** u64 as a number; values above 2^53 are reported as absurd. */
  u64(field: string): number {
    const v = this.view(8, field).getBigUint64(0, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError("GGUF value out of range", { file: this.file, field, expected: "at most 2^53", found: v.toString() });
    }
    return Number(v);
  }

  string(field: string, maxBytes = MAX_STRING_BYTES): string {
    const n = this.u64(`${field} (string length)`);
    if (n > maxBytes || n > this.remaining) {
      throw new FormatError("GGUF string length is absurd", {
        file: this.file, field, expected: `at most ${Math.min(maxBytes, this.remaining)} bytes (limit ${maxBytes}, ${this.remaining} bytes left in the file)`,
        found: `${n} bytes`, hint: "the file is corrupt or not a GGUF v3 file",
      });
    }
    return new TextDecoder("utf-8", { fatal: false }).decode(this.bytes(n, field));
  }
}

export class GgufFile {
  readonly kv: ReadonlyMap<string, GgufValue>;
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  #fd: number | undefined;

  constructor(
    readonly path: string, fd: number,
    readonly version: number, readonly fileSize: number, readonly alignment: number,
    /** Absolute file offset of the data section. */
    readonly dataStart: number,
    kvMap: Map<string, GgufValue>, tensors: Map<string, GgufTensorInfo>,
  ) {
    this.#fd = fd;
    this.kv = kvMap;
    this.tensors = tensors;
  }

  /** general.architecture, or undefined. */
  get architecture(): string | undefined {
    const v = this.kv.get("general.architecture");
    return v?.type === "string" ? v.value : undefined;
  }

  get(key: string): GgufValue | undefined { return this.kv.get(key); }

  /** A numeric scalar (any integer or float type; u64/i64 converted when safe), or a FormatError. */
  getNumber(key: string): number {
    const v = this.#require(key);
    if (v.type === "u64" || v.type === "i64") {
      if (v.value > BigInt(Number.MAX_SAFE_INTEGER) || v.value < BigInt(Number.MIN_SAFE_INTEGER)) throw this.#typeError(key, "a number below 2^53", v);
      return Number(v.value);
    }
    if (typeof v.value !== "number") throw this.#typeError(key, "a number", v);
    return v.value;
  }

  getString(key: string): string {
    const v = this.#require(key);
    if (v.type !== "string") throw this.#typeError(key, "a string", v);
    return v.value;
  }

  getBool(key: string): boolean {
    const v = this.#require(key);
    if (v.type !== "bool") throw this.#typeError(key, "a bool", v);
    return v.value;
  }

  getStringArray(key: string): readonly string[] {
    const v = this.#require(key);
    if (v.type !== "array" || v.itemType !== "string") throw this.#typeError(key, "an array of strings", v);
    return v.value;
  }

  getNumberArray(key: string): readonly number[] {
    const v = this.#require(key);
    if (v.type !== "array" || v.itemType === "string" || v.itemType === "bool" || v.itemType === "u64" || v.itemType === "i64") {
      throw this.#typeError(key, "an array of numbers", v);
    }
    return v.value as readonly number[];
  }

  tensor(name: string): GgufTensorInfo {
    const t = this.tensors.get(name);
    if (t === undefined) {
      throw new FormatError(`tensor "${name}" not found in GGUF file`, {
        file: this.path, field: name, hint: `the file has ${this.tensors.size} tensors`,
      });
    }
    return t;
  }

  /** PyTorch-order shape (outermost first) of a tensor: dims reversed. */
  shape(name: string): number[] {
    return [...this.tensor(name).dims].reverse();
  }

  /** The tensor's raw bytes (one positioned read). */
  readBytesSync(name: string): Uint8Array {
    const t = this.tensor(name);
    const fd = this.#fdOrFail();
    const out = new Uint8Array(t.byteSize);
    const at = this.dataStart + t.offset;
    for (let off = 0; off < out.length;) {
      const got = readSync(fd, out, off, Math.min(out.length - off, IO_CHUNK), at + off);
      if (got === 0) throw new FormatError("GGUF file is truncated", { file: this.path, field: name, expected: `${t.byteSize} bytes at offset ${at}` });
      off += got;
    }
    return out;
  }

  /** Decode a tensor to f32: F32, F16, BF16, and the block types of src/pack/gguf-blocks.ts (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K). */
  readF32Sync(name: string): Float32Array {
    const t = this.tensor(name);
    const dtype = t.type.name === "F32" ? "F32" : t.type.name === "F16" ? "F16" : t.type.name === "BF16" ? "BF16" : null;
    if (dtype !== null) return toF32(dtype, this.readBytesSync(name));
    const block = findBlockType(t.type.name);
    if (block === undefined) {
      throw new FormatError(`cannot decode GGUF tensor "${name}" of type ${t.type.name} to f32`, {
        file: this.path, field: name, expected: `F32, F16, BF16 or one of ${Object.keys(GGML_BLOCK_TYPES).join(", ")}`, found: t.type.name,
        hint: "re-quantize the model with llama-quantize to one of the supported types",
      });
    }
    const n = t.dims.reduce((a, b) => a * b, 1);
    return dequantizeBlocks(block, this.readBytesSync(name), n);
  }

  close(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) closeSync(fd);
  }

  #fdOrFail(): number {
    invariant(this.#fd !== undefined, `GGUF file ${this.path} is closed`);
    return this.#fd;
  }

  #require(key: string): GgufValue {
    const v = this.kv.get(key);
    if (v === undefined) throw new FormatError(`GGUF key "${key}" is missing`, { file: this.path, field: key, found: "no such key" });
    return v;
  }

  #typeError(key: string, expected: string, v: GgufValue): FormatError {
    return new FormatError(`GGUF key "${key}" has the wrong type`, {
      file: this.path, field: key, expected, found: v.type === "array" ? `array of ${v.itemType}` : v.type,
    });
  }
}

/** Open and validate a GGUF file; tensor data is read lazily. Close it with `close()`. */
export function openGguf(path: string): GgufFile {
  const fd = openSync(path, "r");
  try {
    return parseGguf(path, fd);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

function parseGguf(path: string, fd: number): GgufFile {
  const fileSize = fstatSync(fd).size;
  const c = new HeaderCursor(fd, fileSize, path);
  const bad = (summary: string, d: Omit<ErrorDetails, "file">): FormatError => new FormatError(`GGUF: ${summary}`, { file: path, ...d });

  if (fileSize < 4) throw bad("file is too small to be GGUF", { field: "magic", expected: "at least 24 header bytes", found: `${fileSize} bytes` });
  const magic = c.bytes(4, "magic");
  if (new DataView(magic.buffer, magic.byteOffset, 4).getUint32(0, true) !== GGUF_MAGIC) {
    throw bad("bad magic", {
      field: "magic", expected: '"GGUF" (47 47 55 46)', found: JSON.stringify(String.fromCharCode(...magic)),
      hint: "this is not a GGUF file (a GGML/GGJT file from before Aug 2023 must be converted with llama.cpp)",
    });
  }
  const version = c.u32("version");
  if (version !== GGUF_VERSION) {
    throw bad("unsupported GGUF version", {
      field: "version", expected: String(GGUF_VERSION), found: String(version),
      hint: version < GGUF_VERSION ? "re-convert the model with a current llama.cpp (GGUF v1/v2 are obsolete)" : "this file is newer than quantize-llm understands",
    });
  }
  const nTensors = c.u64("tensor_count");
  const nKv = c.u64("kv_count");
  // Each KV takes ≥ 8+1+4+1 bytes, each tensor info ≥ 8+1+4+8+4+8: a count that cannot fit is absurd.
  if (nKv > c.remaining / 14) {
    throw bad("absurd kv_count", { field: "kv_count", expected: `at most ${Math.floor(c.remaining / 14)} for a file of this size`, found: String(nKv) });
  }
  if (nTensors > c.remaining / 33) {
    throw bad("absurd tensor_count", { field: "tensor_count", expected: `at most ${Math.floor(c.remaining / 33)} for a file of this size`, found: String(nTensors) });
  }

  const kvMap = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`kv[${i}].key`, MAX_KEY_BYTES);
    if (key.length === 0) throw bad("empty key", { field: `kv[${i}].key` });
    if (kvMap.has(key)) throw bad("duplicate key", { field: key });
    const typeId = c.u32(`${key} (value type)`);
    const type = valueTypeName(typeId, key, bad);
    if (type === "array") {
      const itemId = c.u32(`${key} (array item type)`);
      const itemType = valueTypeName(itemId, key, bad);
      if (itemType === "array") throw bad("nested arrays are not supported", { field: key, expected: "an array of scalars or strings", found: "an array of arrays" });
      const n = c.u64(`${key} (array length)`);
      const minItem = itemType === "string" ? 8 : FIXED[itemType];
      if (n > MAX_ARRAY_ITEMS || n * minItem > c.remaining) {
        throw bad("absurd array length", {
          field: key, expected: `at most ${Math.min(MAX_ARRAY_ITEMS, Math.floor(c.remaining / minItem))} items of ${itemType}`, found: String(n),
        });
      }
      kvMap.set(key, readArray(c, key, itemType, n));
    } else {
      kvMap.set(key, readScalar(c, key, type));
    }
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const av = kvMap.get(GGUF_ALIGNMENT_KEY);
  if (av !== undefined) {
    if (av.type !== "u32") throw bad("general.alignment must be a u32", { field: GGUF_ALIGNMENT_KEY, expected: "u32", found: av.type });
    if (av.value === 0 || (av.value & (av.value - 1)) !== 0) {
      throw bad("general.alignment is not a power of two", { field: GGUF_ALIGNMENT_KEY, expected: "a power of two", found: String(av.value) });
    }
    alignment = av.value;
  }

  const infos: GgufTensorInfo[] = [];
  const tensors = new Map<string, GgufTensorInfo>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`tensor[${i}].name`, MAX_KEY_BYTES);
    if (tensors.has(name)) throw bad("duplicate tensor name", { field: name });
    const nDims = c.u32(`${name} (n_dims)`);
    if (nDims < 1 || nDims > GGML_MAX_DIMS) throw bad("invalid number of dimensions", { field: name, expected: `1..${GGML_MAX_DIMS}`, found: String(nDims) });
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.u64(`${name} (dims[${d}])`));
    const typeId = c.u32(`${name} (ggml type)`);
    const type = TYPE_BY_ID.get(typeId);
    if (type === undefined) {
      throw bad("unknown ggml type", {
        field: name, expected: `one of ${GGML_TYPES.map((t) => `${t.id} ${t.name}`).join(", ")}`, found: String(typeId),
        hint: "the file uses a tensor type this version does not know (or removed types like Q4_0_4_4: re-quantize it)",
      });
    }
    const size = ggmlTensorBytes(type, dims);
    if (typeof size === "string") throw bad(`invalid tensor shape: ${size}`, { field: name, found: `[${dims.join(", ")}] ${type.name}` });
    const offset = c.u64(`${name} (offset)`);
    if (offset % alignment !== 0) {
      throw bad("misaligned tensor offset", { field: name, expected: `a multiple of ${alignment} (general.alignment)`, found: String(offset) });
    }
    const info: GgufTensorInfo = { name, dims, type, offset, byteSize: size };
    infos.push(info);
    tensors.set(name, info);
  }

  const dataStart = alignUp(c.pos, alignment);
  const dataBytes = fileSize - dataStart;
  const byOffset = [...infos].sort((a, b) => a.offset - b.offset);
  let prevEnd = 0;
  let prevName = "";
  for (const t of byOffset) {
    if (t.offset + t.byteSize > dataBytes) {
      throw bad("tensor data beyond the end of the file", {
        field: t.name, expected: `bytes [${dataStart + t.offset}, ${dataStart + t.offset + t.byteSize}) inside the file`,
        found: `file size ${fileSize}`, hint: "the file is truncated or its tensor infos are corrupt",
      });
    }
    if (t.offset < prevEnd) {
      throw bad("tensors overlap", { field: t.name, expected: `offset ≥ ${prevEnd} (end of "${prevName}")`, found: String(t.offset) });
    }
    prevEnd = t.offset + t.byteSize;
    prevName = t.name;
  }
  return new GgufFile(path, fd, version, fileSize, alignment, dataStart, kvMap, tensors);
}

function valueTypeName(
  id: number, key: string, bad: (s: string, d: Omit<ErrorDetails, "file">) => FormatError,
): GgufValueTypeName {
  const t = GGUF_VALUE_TYPES[id];
  if (t === undefined) {
    throw bad("unknown value type", { field: key, expected: `0..${GGUF_VALUE_TYPES.length - 1} (${GGUF_VALUE_TYPES.join(", ")})`, found: String(id) });
  }
  return t;
}

function readScalar(c: HeaderCursor, key: string, type: GgufItemType): GgufValue {
  if (type === "string") return { type, value: c.string(key) };
  const dv = c.view(FIXED[type], key);
  switch (type) {
    case "u8": return { type, value: dv.getUint8(0) };
    case "i8": return { type, value: dv.getInt8(0) };
    case "bool": return { type, value: dv.getUint8(0) !== 0 };
    case "u16": return { type, value: dv.getUint16(0, true) };
    case "i16": return { type, value: dv.getInt16(0, true) };
    case "u32": return { type, value: dv.getUint32(0, true) };
    case "i32": return { type, value: dv.getInt32(0, true) };
    case "f32": return { type, value: dv.getFloat32(0, true) };
    case "f64": return { type, value: dv.getFloat64(0, true) };
    case "u64": return { type, value: dv.getBigUint64(0, true) };
    case "i64": return { type, value: dv.getBigInt64(0, true) };
  }
}

function readArray(c: HeaderCursor, key: string, itemType: GgufItemType, n: number): GgufValue {
  if (itemType === "string") {
    const out: string[] = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = c.string(`${key}[${i}]`);
    return { type: "array", itemType, value: out };
  }
  const size = FIXED[itemType];
  const dv = c.view(n * size, key);
  if (itemType === "bool") {
    const out: boolean[] = new Array<boolean>(n);
    for (let i = 0; i < n; i++) out[i] = dv.getUint8(i) !== 0;
    return { type: "array", itemType, value: out };
  }
  if (itemType === "u64" || itemType === "i64") {
    const out: bigint[] = new Array<bigint>(n);
    for (let i = 0; i < n; i++) out[i] = itemType === "u64" ? dv.getBigUint64(8 * i, true) : dv.getBigInt64(8 * i, true);
    return { type: "array", itemType, value: out };
  }
  const out: number[] = new Array<number>(n);
  const get: (o: number) => number = {
    u8: (o: number) => dv.getUint8(o), i8: (o: number) => dv.getInt8(o),
    u16: (o: number) => dv.getUint16(o, true), i16: (o: number) => dv.getInt16(o, true),
    u32: (o: number) => dv.getUint32(o, true), i32: (o: number) => dv.getInt32(o, true),
    f32: (o: number) => dv.getFloat32(o, true), f64: (o: number) => dv.getFloat64(o, true),
  }[itemType];
  for (let i = 0; i < n; i++) out[i] = get(i * size);
  return { type: "array", itemType, value: out };
}

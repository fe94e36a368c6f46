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
 *
 * Why one file of ~415 lines: the reader and the writer are the two halves of one byte
 * layout (the header encoding, alignment and offset rules must stay in lockstep); the
 * shared definitions and value encodings already live in gguf-types.ts and the streaming
 * file writer in gguf-write.ts, and what is left here is the header codec itself.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { dequantizeBlocks, findBlockType, GGML_BLOCK_TYPES } from "../pack/gguf-blocks.ts";
import { toF32 } from "../tensor/dtype.ts";
import { FormatError, UsageError, invariant, type ErrorDetails } from "../util/errors.ts";
import {
  GGUF_MAGIC, GGUF_VERSION, GGUF_DEFAULT_ALIGNMENT, GGUF_ALIGNMENT_KEY, GGML_MAX_DIMS, MAX_KEY_BYTES, MAX_STRING_BYTES, MAX_ARRAY_ITEMS, READ_CHUNK, IO_CHUNK, GGML_TYPES, TYPE_BY_ID, TYPE_BY_NAME, findGgmlType, ggmlTensorBytes, GGUF_VALUE_TYPES, kv, FIXED, NUMBER_RANGE, BIGINT_RANGE, ByteBuilder, alignUp, valueProblem,
  type GgmlTypeInfo, type GgufValueTypeName, type GgufNumberType, type GgufBigIntType, type GgufItemType, type GgufValue, type GgufArray,
} from "./gguf-types.ts";

// The public GGUF API lives here: shared definitions, the writer and the reader.
export * from "./gguf-types.ts";
export * from "./gguf-write.ts";
import type { GgufTensorInfo } from "./gguf-write.ts";

// ---------------------------------------------------------------- reader

/** More metadata keys or tensors than any real model has (the largest have ~10^4 tensors). */
const MAX_COUNT = 1 << 24;

/** Sequential little-endian reader over a file descriptor, one positioned read per chunk. */
class HeaderCursor {
  private buf = new Uint8Array(0);
  private bufStart = 0;
  pos = 0;

  constructor(private readonly fd: number, readonly fileSize: number, private readonly file: string) {}

  get remaining(): number { return this.fileSize - this.pos; }

  /** The file is shorter than its own header says (`n` more bytes needed for `field`). */
  truncated(field: string, n: number): FormatError {
    return new FormatError("GGUF file is truncated", {
      file: this.file, field, expected: `${n} more bytes at offset ${this.pos}`, found: `${this.remaining} bytes left (file size ${this.fileSize})`,
      hint: "the file was cut short (interrupted download or write?); re-create or re-download it",
    });
  }

  /** Make bytes [pos, pos+n) available; returns their offset inside `buf`. */
  private need(n: number, field: string): number {
    if (n > this.remaining) throw this.truncated(field, n);
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
    if (n > maxBytes) { // within the limit but past the end: need() reports the truncation
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
  // Each KV takes ≥ 8+1+4+1 bytes, each tensor info ≥ 8+1+4+8+4+8. A count beyond any real
  // model's is absurd (corrupt header); a plausible count that does not fit means the file
  // was cut short, which is what a user needs to hear (an interrupted download or copy).
  if (nKv > MAX_COUNT) throw bad("absurd kv_count", { field: "kv_count", expected: `at most ${MAX_COUNT}`, found: String(nKv) });
  if (nTensors > MAX_COUNT) throw bad("absurd tensor_count", { field: "tensor_count", expected: `at most ${MAX_COUNT}`, found: String(nTensors) });
  if (nKv * 14 + nTensors * 33 > c.remaining) throw c.truncated(`${nKv} metadata keys and ${nTensors} tensor infos (kv_count, tensor_count)`, nKv * 14 + nTensors * 33);

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
      if (n * minItem > c.remaining && n <= MAX_ARRAY_ITEMS) throw c.truncated(`${key} (${n} items of ${itemType})`, n * minItem);
      if (n > MAX_ARRAY_ITEMS) {
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


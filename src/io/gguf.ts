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
 * Files: gguf-types.ts (shared definitions, value encodings, ggml types), gguf-write.ts
 * (the streaming writer), gguf-cursor.ts (the reader's bounded byte cursor and KV value
 * decoders); this file is the reader's header parse and the GgufFile it returns, and
 * re-exports the public GGUF API of all three.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { dequantizeBlocks, findBlockType, GGML_BLOCK_TYPES } from "../pack/gguf-blocks.ts";
import { toF32 } from "../tensor/dtype.ts";
import { FormatError, invariant, type ErrorDetails } from "../util/errors.ts";
import {
  GGUF_MAGIC, GGUF_VERSION, GGUF_DEFAULT_ALIGNMENT, GGUF_ALIGNMENT_KEY, GGML_MAX_DIMS, MAX_KEY_BYTES, MAX_ARRAY_ITEMS, IO_CHUNK, GGML_TYPES, TYPE_BY_ID,
  ggmlTensorBytes, kv, FIXED, alignUp, type GgufValue,
} from "./gguf-types.ts";

// The public GGUF API lives here: shared definitions, the writer and the reader.
export * from "./gguf-types.ts";
export * from "./gguf-write.ts";
import type { GgufTensorInfo } from "./gguf-write.ts";
import { HeaderCursor, readArray, readScalar, valueTypeName } from "./gguf-cursor.ts";

// ---------------------------------------------------------------- reader

/** More metadata keys or tensors than any real model has (the largest have ~10^4 tensors). */
const MAX_COUNT = 1 << 24;

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

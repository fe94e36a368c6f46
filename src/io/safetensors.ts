/**
 * safetensors reader (FORMATS.md §1); the writer is safetensors-write.ts, shared
 * definitions safetensors-types.ts (both re-exported here: one import for the format).
 *
 *   [u64 LE n][n bytes UTF-8 JSON header, space-padded][data region: tensors back to back]
 *
 * The reader reads the 8-byte length and the header only, validates every entry up front
 * (as the reference `SafeTensors::read_metadata` + `Metadata::validate` in
 * huggingface/safetensors `safetensors/src/tensor.rs` do), and reads tensor bytes lazily
 * with one positioned read per tensor, so a 16 GB checkpoint costs a few KB to open.
 */

import { readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { DTYPE_SIZE, toF32, type DType } from "../tensor/dtype.ts";
import { FormatError, UsageError, invariant } from "../util/errors.ts";
import {
  HEADER_ALIGN, IO_CHUNK, MAX_HEADER_BYTES, UNSUPPORTED_DTYPES, bad, isCount, isDType, isObject, show, tensorByteSize,
  type Details, type SafetensorsHeader, type TensorInfo,
} from "./safetensors-types.ts";

export { HEADER_ALIGN, MAX_HEADER_BYTES, tensorByteSize, type SafetensorsHeader, type TensorInfo } from "./safetensors-types.ts";
export * from "./safetensors-write.ts";

/**
 * Validate the first 8 bytes. `prefix` holds at least min(8, fileSize) bytes of the file.
 * Returns n, the header length, known to fit in the file and under MAX_HEADER_BYTES.
 */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8) {
    throw bad(file, "file is too short to hold the 8-byte header length", {
      expected: "at least 8 bytes", found: `${fileSize} bytes`, hint: "the file is empty or truncated; download it again",
    });
  }
  invariant(prefix.length >= 8, "parseHeaderLength needs the first 8 bytes");
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw bad(file, "header length is absurdly large", {
      expected: `at most ${MAX_HEADER_BYTES} bytes (the reference reader's cap)`, found: `${n} bytes`,
      hint: "this is not a safetensors file, or its first 8 bytes are corrupted",
    });
  }
  if (8n + n > BigInt(fileSize)) {
    throw bad(file, "header length runs past the end of the file", {
      expected: `at most ${fileSize - 8} bytes`, found: `${n} bytes`, hint: "the file is truncated; download it again",
    });
  }
  return Number(n);
}

/**
 * Parse and validate a whole header. `bytes` is the start of the file, at least 8 + n bytes
 * (the whole file is fine); `fileSize` is the size of the whole file. Pure: no I/O, and no
 * allocation or loop driven by header numbers, only by the header's byte length.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const n = parseHeaderLength(bytes, fileSize, file);
  invariant(bytes.length >= 8 + n, "parseSafetensorsHeader needs the whole header");
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text so JSON.parse rejects it, as serde_json does.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw bad(file, "header is not valid UTF-8", { hint: "the file is corrupted or not a safetensors file" });
  }
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (err) {
    throw bad(file, "header is not valid JSON", { found: err instanceof Error ? err.message : String(err) });
  }
  if (!isObject(root)) {
    throw bad(file, "header is not a JSON object", { expected: '{"<tensor>": {...}, ...}', found: show(root) });
  }
  const dataLen = fileSize - 8 - n;
  let metadata: Record<string, string> = {};
  const list: TensorInfo[] = [];
  for (const [name, value] of Object.entries(root)) {
    if (name === "__metadata__") metadata = parseMetadata(value, file);
    else list.push(parseEntry(name, value, dataLen, file));
  }
  // Offset order, ties by end so zero-size tensors come first (`Metadata::deserialize` sorts the same way).
  list.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: TensorInfo | undefined;
  for (const t of list) {
    if (t.begin < cursor && prev !== undefined) {
      throw bad(file, `tensors "${prev.name}" and "${t.name}" overlap`, {
        field: t.name, expected: `"${t.name}" to start at data offset ${cursor}`,
        found: `"${prev.name}" [${prev.begin}, ${prev.end}) and "${t.name}" [${t.begin}, ${t.end})`,
      });
    }
    if (t.begin > cursor) {
      throw bad(file, `hole in the data region before tensor "${t.name}"`, {
        field: t.name, expected: `data offset ${cursor} (tensors back to back)`,
        found: `data_offsets [${t.begin}, ${t.end}): bytes [${cursor}, ${t.begin}) belong to no tensor`,
      });
    }
    cursor = t.end;
    prev = t;
  }
  if (cursor !== dataLen) {
    throw bad(file, "file has trailing bytes after the last tensor", {
      expected: `a data region of ${cursor} bytes (file size ${8 + n + cursor})`,
      found: `${dataLen} bytes (file size ${fileSize})`, hint: "the reference reader rejects this too (MetadataIncompleteBuffer)",
    });
  }
  return { headerLength: n, dataStart: 8 + n, metadata, tensors: new Map(list.map((t) => [t.name, t])) };
}

function parseMetadata(value: unknown, file: string): Record<string, string> {
  if (value === null) return {}; // serde reads `Option<HashMap>` null as None
  if (!isObject(value)) {
    throw bad(file, '"__metadata__" is not an object', { field: "__metadata__", expected: "{string: string}", found: show(value) });
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw bad(file, `"__metadata__" value for "${k}" is not a string`, {
        field: `__metadata__.${k}`, expected: "a string", found: show(v),
      });
    }
  }
  return Object.fromEntries(Object.entries(value)) as Record<string, string>;
}

function parseEntry(name: string, v: unknown, dataLen: number, file: string): TensorInfo {
  const fail = (problem: string, d: Details = {}): FormatError =>
    bad(file, `tensor "${name}": ${problem}`, { field: name, ...d });
  if (!isObject(v)) throw fail("entry is not an object", { expected: '{"dtype", "shape", "data_offsets"}', found: show(v) });
  for (const key of ["dtype", "shape", "data_offsets"]) {
    if (!Object.hasOwn(v, key)) throw fail(`entry has no "${key}"`, { found: show(v) });
  }
  const { dtype, shape, data_offsets: offsets } = v;
  if (typeof dtype !== "string") throw fail('"dtype" is not a string', { found: show(dtype) });
  if (!isDType(dtype)) {
    const known = UNSUPPORTED_DTYPES.includes(dtype);
    throw fail(known ? `dtype ${dtype} is not supported` : `unknown dtype ${show(dtype)}`, {
      expected: Object.keys(DTYPE_SIZE).join(", "), found: show(dtype),
    });
  }
  if (!Array.isArray(shape)) throw fail('"shape" is not an array', { found: show(shape) });
  const badDim = shape.findIndex((d) => !isCount(d));
  if (badDim >= 0) {
    throw fail(`shape[${badDim}] is not a non-negative integer`, { found: `shape ${show(shape)}` });
  }
  const dims = shape as number[];
  const nbytes = tensorByteSize(dims, dtype);
  if (nbytes === undefined) {
    throw fail("element count overflows", { expected: `prod(shape) * ${DTYPE_SIZE[dtype]} <= 2^53 - 1`, found: `shape ${show(shape)}` });
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !isCount(offsets[0]) || !isCount(offsets[1])) {
    throw fail('"data_offsets" is not two non-negative integers', { expected: "[begin, end]", found: show(offsets) });
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw fail("data_offsets begin > end", { found: `[${begin}, ${end}]` });
  if (end - begin !== nbytes) {
    throw fail("byte size does not match shape and dtype", {
      expected: `${nbytes} bytes (shape ${show(dims)} x ${dtype} ${DTYPE_SIZE[dtype]} B)`,
      found: `${end - begin} bytes (data_offsets [${begin}, ${end}])`,
    });
  }
  if (end > dataLen) {
    throw fail("data lies beyond the end of the file", {
      expected: `data_offsets within the ${dataLen}-byte data region`, found: `[${begin}, ${end}]`,
      hint: "the file is truncated; download it again",
    });
  }
  // `|| 0` turns a JSON "-0" into 0, so callers never see a negative zero.
  return { name, dtype, shape: dims.map((d) => d || 0), begin: begin || 0, end: end || 0 };
}

/** Read exactly `out.length` bytes at `position`; a short file means it shrank after it was validated. */
async function readFully(h: FileHandle, out: Uint8Array, position: number, file: string): Promise<void> {
  for (let off = 0; off < out.length; ) {
    const { bytesRead } = await h.read(out, off, Math.min(out.length - off, IO_CHUNK), position + off);
    if (bytesRead === 0) throw bad(file, "file ended early: it changed since it was opened", { found: `EOF at byte ${position + off}` });
    off += bytesRead;
  }
}

function readFullySync(fd: number, out: Uint8Array, position: number, file: string): void {
  for (let off = 0; off < out.length; ) {
    const bytesRead = readSync(fd, out, off, Math.min(out.length - off, IO_CHUNK), position + off);
    if (bytesRead === 0) throw bad(file, "file ended early: it changed since it was opened", { found: `EOF at byte ${position + off}` });
    off += bytesRead;
  }
}

/** An open, validated safetensors file. Owns one file handle until `close()`. */
export class SafetensorsFile {
  readonly metadata: Record<string, string>;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly dataStart: number;
  #handle: FileHandle | undefined;

  constructor(readonly path: string, handle: FileHandle, readonly fileSize: number, header: SafetensorsHeader) {
    this.#handle = handle;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
    this.dataStart = header.dataStart;
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (t === undefined) {
      const some = [...this.tensors.keys()].slice(0, 3).map((k) => `"${k}"`).join(", ");
      throw bad(this.path, `tensor "${name}" not found`, { field: name, hint: `the file has ${this.tensors.size} tensors, e.g. ${some}` });
    }
    return t;
  }

  /** Raw little-endian bytes of one tensor: one positioned read of exactly its byte range. */
  async readRaw(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const out = new Uint8Array(t.end - t.begin);
    await readFully(this.#open(), out, this.dataStart + t.begin, this.path);
    return out;
  }

  /** Tensor decoded to f32, shape `info(name).shape`. */
  async readF32(name: string): Promise<Float32Array> {
    return toF32(this.info(name).dtype, await this.readRaw(name));
  }

  readRawSync(name: string): Uint8Array {
    const t = this.info(name);
    const out = new Uint8Array(t.end - t.begin);
    readFullySync(this.#open().fd, out, this.dataStart + t.begin, this.path);
    return out;
  }

  readF32Sync(name: string): Float32Array {
    return toF32(this.info(name).dtype, this.readRawSync(name));
  }

  /** Idempotent. */
  async close(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    await h?.close();
  }

  #open(): FileHandle {
    invariant(this.#handle !== undefined, `read from closed safetensors file ${this.path}`);
    return this.#handle;
  }
}

/** Open `path`, reading only the 8-byte length and the header; throws FormatError if anything is malformed. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  const h = await open(path, "r");
  try {
    const st = await h.stat();
    if (!st.isFile()) throw bad(path, "not a regular file", { hint: "pass the path of a .safetensors file" });
    const size = st.size;
    const prefix = new Uint8Array(Math.min(8, size));
    await readFully(h, prefix, 0, path);
    const n = parseHeaderLength(prefix, size, path);
    const head = new Uint8Array(8 + n);
    head.set(prefix);
    await readFully(h, head.subarray(8), 8, path);
    return new SafetensorsFile(path, h, size, parseSafetensorsHeader(head, size, path));
  } catch (err) {
    await h.close();
    throw err;
  }
}

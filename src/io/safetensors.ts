/**
 * safetensors reader and writer (FORMATS.md §1).
 *
 *   [u64 LE n][n bytes UTF-8 JSON header, space-padded][data region: tensors back to back]
 *
 * The reader reads the 8-byte length and the header only, validates every entry up front
 * (as the reference `SafeTensors::read_metadata` + `Metadata::validate` in
 * huggingface/safetensors `safetensors/src/tensor.rs` do), and reads tensor bytes lazily
 * with one positioned read per tensor, so a 16 GB checkpoint costs a few KB to open.
 * The writer streams: header first (it only needs names, dtypes and shapes), then each
 * tensor's bytes in declaration order, into a temp file that is renamed on success.
 */

import { readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { DTYPE_SIZE, toF32, type DType } from "../tensor/dtype.ts";
import { FormatError, UsageError, invariant, type ErrorDetails } from "../util/errors.ts";
import { removeTempFile, renameAtomic, tempPathFor } from "./atomic.ts";

/** Header size cap of the reference reader (`MAX_HEADER_SIZE`, safetensors/src/tensor.rs). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Data start alignment the reference writer pads to (`prepare`, safetensors/src/tensor.rs). */
export const HEADER_ALIGN = 8;
/** Largest single read/write call: fs calls are limited to 2 GiB - 1 bytes each. */
const IO_CHUNK = 1 << 30;
/** Valid in the safetensors spec (`Dtype` enum) but with no DType here: a clearer error than "unknown". */
const UNSUPPORTED_DTYPES = ["U32", "U64", "C64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"];

export interface TensorInfo {
  name: string;
  dtype: DType;
  /** Dimensions, C order (row-major, last index fastest). `[]` is a scalar. */
  shape: number[];
  /** Byte offsets RELATIVE TO THE DATA REGION, as stored in the file: [begin, end). Absolute = dataStart + begin. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** n: JSON header length in bytes, padding included. */
  headerLength: number;
  /** Absolute file offset of the data region: 8 + n. */
  dataStart: number;
  /** `__metadata__` ({} when absent). */
  metadata: Record<string, string>;
  /** All tensors, iterated in file order (ascending `begin`). */
  tensors: Map<string, TensorInfo>;
}

type Details = Omit<ErrorDetails, "file">;
const bad = (file: string, summary: string, d: Details = {}): FormatError =>
  new FormatError(`safetensors: ${summary}`, { file, ...d });

/** A header value for an error message, cut short: values come from untrusted files. */
function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isDType = (v: string): v is DType => Object.hasOwn(DTYPE_SIZE, v);

/** prod(shape) * itemsize, or undefined when it is not a safe integer (a hostile shape like [1e15, 1e15]). */
export function tensorByteSize(shape: readonly number[], dtype: DType): number | undefined {
  if (shape.includes(0)) return 0;
  let count = DTYPE_SIZE[dtype];
  for (const d of shape) {
    if (count > Number.MAX_SAFE_INTEGER / d) return undefined;
    count *= d;
  }
  return count;
}

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

// ---------------------------------------------------------------- writer

export interface TensorDecl {
  name: string;
  dtype: DType;
  /** Dimensions, C order. */
  shape: readonly number[];
}

export interface TensorSource extends TensorDecl {
  /** Raw little-endian C-order bytes, or a producer called once, in file order, so only one tensor need be in memory. */
  data: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
}

/**
 * Header bytes (u64 length + JSON + space padding to HEADER_ALIGN) for tensors laid out back
 * to back in the given order. Key order matches the reference writer: `__metadata__` first,
 * then per tensor dtype, shape, data_offsets (`HashMetadata`/`TensorInfo`, safetensors/src/tensor.rs).
 */
export function buildSafetensorsHeader(
  decls: readonly TensorDecl[], metadata?: Record<string, string>,
): { header: Uint8Array; infos: TensorInfo[] } {
  const parts: string[] = [];
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new UsageError("safetensors metadata values must be strings", { field: k, found: show(v) });
    }
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  const seen = new Set<string>();
  const infos: TensorInfo[] = [];
  let offset = 0;
  for (const { name, dtype, shape } of decls) {
    const fail = (problem: string, found: string): UsageError =>
      new UsageError(`cannot write tensor "${name}": ${problem}`, { field: name, found });
    if (name === "__metadata__") throw fail("the name is reserved for metadata", name);
    if (seen.has(name)) throw fail("duplicate tensor name", name);
    seen.add(name);
    if (!isDType(dtype)) throw fail("unknown dtype", show(dtype));
    if (!shape.every(isCount)) throw fail("shape must be non-negative integers", show(shape));
    const nbytes = tensorByteSize(shape, dtype);
    if (nbytes === undefined || offset + nbytes > Number.MAX_SAFE_INTEGER) throw fail("tensor too large", show(shape));
    infos.push({ name, dtype, shape: shape.slice(), begin: offset, end: offset + nbytes });
    parts.push(`${JSON.stringify(name)}:{"dtype":"${dtype}","shape":${JSON.stringify(shape)},"data_offsets":[${offset},${offset + nbytes}]}`);
    offset += nbytes;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const n = Math.ceil(json.length / HEADER_ALIGN) * HEADER_ALIGN;
  const header = new Uint8Array(8 + n).fill(0x20, 8 + json.length); // pad with spaces (valid JSON whitespace)
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(json, 8);
  return { header, infos };
}

/**
 * Streaming writer: declare every tensor up front, then `write` each one's bytes in
 * declaration order. Use as: try { ...write...; await w.finish() } catch (e) { await w.abort(); throw e }.
 */
export class SafetensorsWriter {
  #handle: FileHandle | undefined;
  #next = 0;

  private constructor(readonly path: string, readonly tmpPath: string, handle: FileHandle, readonly infos: readonly TensorInfo[]) {
    this.#handle = handle;
  }

  static async create(path: string, decls: readonly TensorDecl[], metadata?: Record<string, string>): Promise<SafetensorsWriter> {
    const { header, infos } = buildSafetensorsHeader(decls, metadata);
    const tmp = tempPathFor(path);
    const h = await open(tmp, "wx");
    const w = new SafetensorsWriter(path, tmp, h, infos);
    try {
      await w.#writeAll(header);
    } catch (err) {
      await w.abort();
      throw err;
    }
    return w;
  }

  /** The tensor `write` expects next, or undefined when all are written. */
  get next(): TensorInfo | undefined {
    return this.infos[this.#next];
  }

  async write(name: string, data: Uint8Array): Promise<void> {
    const t = this.next;
    if (t === undefined || t.name !== name) {
      throw new UsageError(`tensors must be written in declaration order`, {
        file: this.path, field: name, expected: t === undefined ? "no more tensors" : `"${t.name}"`, found: `"${name}"`,
      });
    }
    if (data.byteLength !== t.end - t.begin) {
      throw new UsageError(`tensor "${name}" has the wrong byte size for its shape and dtype`, {
        file: this.path, field: name, expected: `${t.end - t.begin} bytes (shape ${show(t.shape)} x ${t.dtype})`, found: `${data.byteLength} bytes`,
      });
    }
    await this.#writeAll(data);
    this.#next++;
  }

  /** fsync, close and rename over `path`. Fails (keeping the temp file for `abort`) if tensors are missing. */
  async finish(): Promise<void> {
    const t = this.next;
    if (t !== undefined) {
      throw new UsageError(`finish() before every tensor was written`, { file: this.path, expected: `"${t.name}" and ${this.infos.length - this.#next - 1} more` });
    }
    const h = this.#handleOrFail();
    await h.sync();
    this.#handle = undefined;
    await h.close();
    await renameAtomic(this.tmpPath, this.path);
  }

  /** Close and remove the temp file. Idempotent; a no-op after a successful finish(). */
  async abort(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    try {
      await h?.close();
    } finally {
      await removeTempFile(this.tmpPath);
    }
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    const h = this.#handleOrFail();
    for (let off = 0; off < data.byteLength; ) {
      const { bytesWritten } = await h.write(data, off, Math.min(data.byteLength - off, IO_CHUNK));
      invariant(bytesWritten > 0, `write to ${this.tmpPath} made no progress`);
      off += bytesWritten;
    }
  }

  #handleOrFail(): FileHandle {
    invariant(this.#handle !== undefined, `safetensors writer for ${this.path} is already finished or aborted`);
    return this.#handle;
  }
}

/** Write tensors (back to back, in the given order) to `path` atomically. */
export async function writeSafetensors(path: string, tensors: readonly TensorSource[], metadata?: Record<string, string>): Promise<void> {
  const w = await SafetensorsWriter.create(path, tensors, metadata);
  try {
    for (const t of tensors) await w.write(t.name, typeof t.data === "function" ? await t.data() : t.data);
    await w.finish();
  } catch (err) {
    await w.abort();
    throw err;
  }
}

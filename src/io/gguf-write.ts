/**
 * GGUF v3 writer: every KV pair and tensor is declared up front (so offsets are known),
 * then tensor bytes stream one tensor at a time into a temp file renamed on `finish()`.
 */
import { UsageError, invariant, type ErrorDetails } from "../util/errors.ts";
import { removeTempFile, renameAtomic, tempPathFor } from "./atomic.ts";
import { AppendFile } from "./direct-write.ts";
import {
  GGUF_MAGIC, GGUF_VERSION, GGUF_DEFAULT_ALIGNMENT, GGUF_ALIGNMENT_KEY, GGML_MAX_DIMS, MAX_KEY_BYTES, MAX_STRING_BYTES, MAX_ARRAY_ITEMS, READ_CHUNK, IO_CHUNK, GGML_TYPES, TYPE_BY_ID, TYPE_BY_NAME, findGgmlType, ggmlTensorBytes, GGUF_VALUE_TYPES, kv, FIXED, NUMBER_RANGE, BIGINT_RANGE, ByteBuilder, alignUp, valueProblem,
  type GgmlTypeInfo, type GgufValueTypeName, type GgufNumberType, type GgufBigIntType, type GgufItemType, type GgufValue, type GgufArray,
} from "./gguf-types.ts";

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
  #file: AppendFile | undefined;
  #next = 0;
  #pos: number;

  private constructor(
    readonly path: string, readonly tmpPath: string, file: AppendFile,
    readonly infos: readonly GgufTensorInfo[], readonly alignment: number, readonly dataStart: number,
    /** Final file size: header + every tensor padded to the alignment. */
    readonly totalBytes: number,
  ) {
    this.#file = file;
    this.#pos = dataStart;
  }

  static async create(
    path: string, kvs: readonly (readonly [string, GgufValue])[], tensors: readonly GgufTensorDecl[], opts: GgufWriterOptions = {},
  ): Promise<GgufWriter> {
    const { header, infos, alignment, dataBytes } = encodeGgufHeader(kvs, tensors, opts);
    const tmp = tempPathFor(path);
    const w = new GgufWriter(path, tmp, await AppendFile.open(tmp, "wx"), infos, alignment, header.length, header.length + dataBytes);
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
    const f = this.#fileOrFail();
    await f.sync(true);
    this.#file = undefined;
    await f.close();
    await renameAtomic(this.tmpPath, this.path);
  }

  /** Close and delete the temp file. Idempotent; a no-op after a successful finish(). */
  async abort(): Promise<void> {
    const f = this.#file;
    this.#file = undefined;
    try {
      await f?.close();
    } finally {
      await removeTempFile(this.tmpPath);
    }
  }

  /** The file is written front to back: `position` is where the last write ended. */
  async #writeAt(data: Uint8Array, position: number): Promise<void> {
    const f = this.#fileOrFail();
    invariant(f.position === position, `GGUF writer at ${f.position}, asked to write at ${position}`);
    await f.append(data);
  }

  #fileOrFail(): AppendFile {
    invariant(this.#file !== undefined, `GGUF writer for ${this.path} is already finished or aborted`);
    return this.#file;
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


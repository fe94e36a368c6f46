/**
 * safetensors writer (FORMATS.md §1). It streams: header first (it only needs names,
 * dtypes and shapes), then each tensor's bytes in declaration order, into a temp file
 * that is renamed on success. Key order and padding match the reference writer.
 */
import type { DType } from "../tensor/dtype.ts";
import { UsageError, invariant } from "../util/errors.ts";
import { removeTempFile, renameAtomic, tempPathFor, writeOverlapped } from "./atomic.ts";
import { AppendFile } from "./direct-write.ts";
import { HEADER_ALIGN, IO_CHUNK, isCount, isDType, show, tensorByteSize, type TensorInfo } from "./safetensors-types.ts";

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
  #file: AppendFile | undefined;
  #next = 0;

  private constructor(readonly path: string, readonly tmpPath: string, file: AppendFile, readonly infos: readonly TensorInfo[]) {
    this.#file = file;
  }

  static async create(path: string, decls: readonly TensorDecl[], metadata?: Record<string, string>): Promise<SafetensorsWriter> {
    const { header, infos } = buildSafetensorsHeader(decls, metadata);
    const tmp = tempPathFor(path);
    const w = new SafetensorsWriter(path, tmp, await AppendFile.open(tmp, "wx"), infos);
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
    const f = this.#fileOrFail();
    await f.sync(true);
    this.#file = undefined;
    await f.close();
    await renameAtomic(this.tmpPath, this.path);
  }

  /** Close and remove the temp file. Idempotent; a no-op after a successful finish(). */
  async abort(): Promise<void> {
    const f = this.#file;
    this.#file = undefined;
    try {
      await f?.close();
    } finally {
      await removeTempFile(this.tmpPath);
    }
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    await this.#fileOrFail().append(data);
  }

  #fileOrFail(): AppendFile {
    invariant(this.#file !== undefined, `safetensors writer for ${this.path} is already finished or aborted`);
    return this.#file;
  }
}

/**
 * Write tensors (back to back, in the given order) to `path` atomically. The next tensor's
 * producer runs while the previous tensor is being written (at most two tensors in memory).
 */
export async function writeSafetensors(path: string, tensors: readonly TensorSource[], metadata?: Record<string, string>): Promise<void> {
  const w = await SafetensorsWriter.create(path, tensors, metadata);
  await writeOverlapped(w, tensors.length, (i) => { const t = tensors[i]!; return typeof t.data === "function" ? t.data() : t.data; }, (i, data) => w.write(tensors[i]!.name, data));
}

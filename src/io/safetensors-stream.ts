/**
 * A (sharded) safetensors checkpoint written in ONE pass, as one byte stream across its
 * shards, and resumable at any point it was synced (issue 10: the quantizer no longer writes
 * block files and then copies them into the final shards).
 *
 * Every tensor's name, dtype and shape is declared up front, so the whole layout (shard
 * split: checkpoint.ts planShards, each shard's header, every tensor's offset) is known
 * before the first byte is written and is exactly what writeShardedSafetensors would write.
 * Tensors are then written in declaration order; a shard's header is written when its first
 * tensor is. `sync()` makes everything written so far durable (fdatasync) and returns the
 * position to journal; `open(dir, plan, at)` truncates the stream back to such a position.
 *
 *   position = { tensors: n, file: shard holding the end, bytes: that shard's length }
 *
 * The position of "after n tensors" follows from the plan alone, so a journaled position is
 * checked against the plan on resume (a different layout, or a shard shorter than journaled,
 * is refused rather than patched).
 */
import { closeSync, existsSync, openSync, readSync, rmSync, statSync, truncateSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { toF32 } from "../tensor/dtype.ts";
import { FormatError, invariant, UsageError } from "../util/errors.ts";
import { fsyncDir, writeFileAtomic } from "./atomic.ts";
import { AppendFile } from "./direct-write.ts";
import { INDEX_FILE, planShards, shardIndexJson } from "./checkpoint.ts";
import { IO_CHUNK, type TensorInfo } from "./safetensors-types.ts";
import { buildSafetensorsHeader, type TensorDecl } from "./safetensors-write.ts";

/** Where a synced stream ends: after `tensors` tensors, `file` (a shard) is `bytes` long. */
export interface StreamPosition {
  tensors: number;
  file: string;
  bytes: number;
}

interface PlannedShard {
  file: string;
  header: Uint8Array;
  /** Offsets relative to the data region (header.length). */
  infos: TensorInfo[];
  /** header + data bytes. */
  size: number;
}

/** The full layout of a checkpoint: shards, headers, and where each tensor lies. */
export class ShardPlan {
  readonly shards: readonly PlannedShard[];
  /** Tensors in write order: shard index and info. */
  readonly order: readonly { shard: number; info: TensorInfo }[];
  readonly totalSize: number;
  readonly #byName = new Map<string, { shard: number; info: TensorInfo }>();

  constructor(readonly decls: readonly TensorDecl[], maxShardBytes: number, readonly metadata?: Record<string, string>) {
    buildSafetensorsHeader(decls); // names unique across shards, dtypes and shapes valid
    const { groups, files, totalSize } = planShards(decls, maxShardBytes);
    this.totalSize = totalSize;
    this.shards = (groups.length > 0 ? groups : [[]]).map((g, i) => {
      const { header, infos } = buildSafetensorsHeader(g, metadata);
      return { file: files[i]!, header, infos, size: header.length + (infos.at(-1)?.end ?? 0) };
    });
    const order: { shard: number; info: TensorInfo }[] = [];
    this.shards.forEach((s, shard) => { for (const info of s.infos) { order.push({ shard, info }); this.#byName.set(info.name, { shard, info }); } });
    this.order = order;
  }

  get files(): string[] { return this.shards.map((s) => s.file); }

  /** The index file's contents for a sharded layout, undefined for one file. */
  indexJson(): string | undefined {
    return this.shards.length > 1 ? shardIndexJson(this.shards.map((s) => s.infos), this.files, this.totalSize) : undefined;
  }

  /** A digest of the layout (file names and headers): a resumed run must plan the same one. */
  digest(): string {
    const h = createHash("sha256");
    for (const s of this.shards) h.update(s.file).update(s.header);
    return h.digest("hex");
  }

  /** The position after the first `n` tensors (n = 0: nothing written, shard 0 empty). */
  positionAfter(n: number): StreamPosition {
    invariant(Number.isSafeInteger(n) && n >= 0 && n <= this.order.length, `stream position ${n} out of range`);
    if (n === 0) return { tensors: 0, file: this.shards[0]!.file, bytes: 0 };
    const { shard, info } = this.order[n - 1]!;
    const s = this.shards[shard]!;
    return { tensors: n, file: s.file, bytes: s.header.length + info.end };
  }

  /** Where tensor `name` lies: its shard file and absolute byte range. */
  locate(name: string): { file: string; begin: number; end: number; info: TensorInfo } {
    const t = this.#byName.get(name);
    invariant(t !== undefined, `tensor ${name} is not in the plan`);
    const s = this.shards[t.shard]!;
    return { file: s.file, begin: s.header.length + t.info.begin, end: s.header.length + t.info.end, info: t.info };
  }
}

/** Writes a ShardPlan into a folder in declaration order; see the file comment. */
export class ShardedStreamWriter {
  #next: number;
  #shard = -1;
  #file: AppendFile | undefined;

  private constructor(readonly dir: string, readonly plan: ShardPlan, at: number) {
    this.#next = at;
  }

  /**
   * Start writing `plan` into `dir` (created by the caller), after the first `at.tensors`
   * tensors (a journaled position of an earlier run of the same plan; none: from scratch).
   * Shards past the position are removed, the one holding it is truncated to it.
   */
  static async open(dir: string, plan: ShardPlan, at?: StreamPosition): Promise<ShardedStreamWriter> {
    const n = at?.tensors ?? 0;
    const want = plan.positionAfter(n);
    if (at !== undefined && (at.file !== want.file || at.bytes !== want.bytes)) {
      throw new FormatError("the journal's output position does not match this output's layout", {
        file: dir, expected: `${want.file} at ${want.bytes} bytes after ${n} tensors`, found: `${at.file} at ${at.bytes} bytes`,
        hint: "the interrupted run was made by another version of quantize-llm; pass --overwrite to start over",
      });
    }
    const w = new ShardedStreamWriter(dir, plan, n);
    const cur = n === 0 ? -1 : plan.order[n - 1]!.shard;
    plan.shards.forEach((s, i) => {
      const path = join(dir, s.file);
      if (i > cur) { rmSync(path, { force: true }); return; }
      const size = existsSync(path) ? statSync(path).size : -1;
      const need = i === cur ? want.bytes : s.size;
      if (size < need) {
        throw new FormatError("an output shard of the interrupted run is shorter than its journal says", {
          file: path, expected: `at least ${need} bytes`, found: size < 0 ? "no file" : `${size} bytes`,
          hint: "the work folder was changed or the disk lost data; pass --overwrite to start over",
        });
      }
      if (size > need) truncateSync(path, need); // bytes written after the last sync: written again
    });
    w.#shard = cur;
    if (cur >= 0 && plan.order[n]?.shard === cur) { // else the shard is complete: the next tensor opens the next one
      w.#file = await AppendFile.open(join(dir, plan.shards[cur]!.file), "r+", want.bytes);
    }
    return w;
  }

  /** Tensors written so far. */
  get written(): number { return this.#next; }

  /** The next tensor `write` expects, or undefined when all are written. */
  get next(): TensorInfo | undefined { return this.plan.order[this.#next]?.info; }

  async write(name: string, data: Uint8Array): Promise<void> {
    const o = await this.#start(name, data.byteLength);
    await this.#writeAt(data, this.plan.shards[o.shard]!.header.length + o.info.begin);
    this.#next++;
  }

  /**
   * Write tensor `name` in pieces of at most `chunk.length` bytes, each filled by
   * `read(piece, offset)` (the tensor's bytes from `offset` on): the same bytes as `write`,
   * without the whole tensor in memory.
   */
  async writeFrom(name: string, read: (dst: Uint8Array, offset: number) => void, chunk: Uint8Array): Promise<void> {
    invariant(chunk.length > 0, "writeFrom needs a non-empty chunk buffer");
    const o = this.plan.order[this.#next];
    const size = o !== undefined && o.info.name === name ? o.info.end - o.info.begin : 0;
    await this.#start(name, size);
    const at = this.plan.shards[o!.shard]!.header.length + o!.info.begin;
    for (let off = 0; off < size; off += chunk.length) {
      const piece = chunk.subarray(0, Math.min(chunk.length, size - off));
      read(piece, off);
      await this.#writeAt(piece, at + off);
    }
    this.#next++;
  }

  /** Checks that `name` (of `bytes` bytes) is the next tensor and opens its shard. */
  async #start(name: string, bytes: number): Promise<{ shard: number; info: TensorInfo }> {
    const o = this.plan.order[this.#next];
    if (o === undefined || o.info.name !== name) {
      throw new UsageError("tensors must be written in declaration order", {
        file: this.dir, field: name, expected: o === undefined ? "no more tensors" : `"${o.info.name}"`, found: `"${name}"`,
      });
    }
    if (bytes !== o.info.end - o.info.begin) {
      throw new UsageError(`tensor "${name}" has the wrong byte size for its shape and dtype`, {
        file: this.dir, field: name, expected: `${o.info.end - o.info.begin} bytes (shape [${o.info.shape.join(", ")}] x ${o.info.dtype})`, found: `${bytes} bytes`,
      });
    }
    if (o.shard !== this.#shard) await this.#openShard(o.shard);
    return o;
  }

  /** Make everything written so far durable (fdatasync); the position to journal. */
  async sync(): Promise<StreamPosition> {
    await this.#file?.sync();
    return this.plan.positionAfter(this.#next);
  }

  /** After the last tensor: fsync and close the last shard, write the index (sharded), fsync the folder. */
  async finish(): Promise<string[]> {
    const t = this.next;
    if (t !== undefined) throw new UsageError("finish() before every tensor was written", { file: this.dir, expected: `"${t.name}" and ${this.plan.order.length - this.#next - 1} more` });
    if (this.plan.order.length === 0) await this.#openShard(0); // an empty checkpoint is still a file
    await this.#closeShard(true);
    const index = this.plan.indexJson();
    if (index !== undefined) await writeFileAtomic(join(this.dir, INDEX_FILE), index);
    await fsyncDir(this.dir);
    return index !== undefined ? [...this.plan.files, INDEX_FILE] : this.plan.files;
  }

  /** Close without finishing (an error or an interruption): the files stay for a resume. Idempotent. */
  async close(): Promise<void> {
    await this.#closeShard(false).catch(() => {});
  }

  /** The tensors written so far, by name (as a block file's `tensors`: dtype and shape; offsets within their shard's data region). */
  get tensors(): ReadonlyMap<string, TensorInfo> {
    return new Map(this.plan.order.slice(0, this.#next).map((o) => [o.info.name, o.info]));
  }

  /** Tensor `name` as written (it must be before the stream's position): raw bytes. */
  readRawSync(name: string): Uint8Array {
    const { file, begin, end } = this.plan.locate(name);
    const idx = this.plan.order.findIndex((o) => o.info.name === name);
    invariant(idx < this.#next, `tensor ${name} is not written yet`);
    const out = new Uint8Array(end - begin);
    const fd = openSync(join(this.dir, file), "r");
    try {
      for (let off = 0; off < out.length;) {
        const got = readSync(fd, out, off, Math.min(out.length - off, IO_CHUNK), begin + off);
        if (got === 0) throw new FormatError("output shard is truncated", { file: join(this.dir, file), field: name, expected: `${end} bytes`, found: `${begin + off} bytes` });
        off += got;
      }
    } finally { closeSync(fd); }
    return out;
  }

  /** Tensor `name` as written, decoded to f32. */
  readF32Sync(name: string): Float32Array {
    const { info } = this.plan.locate(name);
    return toF32(info.dtype, this.readRawSync(name));
  }

  async #openShard(i: number): Promise<void> {
    await this.#closeShard(true);
    const s = this.plan.shards[i]!;
    this.#file = await AppendFile.open(join(this.dir, s.file), "w");
    this.#shard = i;
    await this.#writeAt(s.header, 0);
  }

  /** Close the open shard (`sync`: fsync it first, as a finished shard must be). */
  async #closeShard(sync: boolean): Promise<void> {
    const f = this.#file;
    if (f === undefined) return;
    this.#file = undefined;
    try {
      if (sync) await f.sync(true);
    } finally {
      await f.close();
    }
  }

  /** A shard is written front to back: `position` is where the last write ended. */
  async #writeAt(data: Uint8Array, position: number): Promise<void> {
    const f = this.#file;
    invariant(f !== undefined, `stream writer for ${this.dir} has no open shard`);
    invariant(f.position === position, `stream writer at ${f.position} of ${this.dir}, asked to write at ${position}`);
    await f.append(data);
  }
}

/**
 * Sequential file output that bypasses the page cache (O_DIRECT, Linux) when it can, for the
 * multi-GB outputs of export and quantization (issue 10). A buffered write copies every byte
 * into freshly allocated page-cache pages; on a host that hands freed memory back to its
 * hypervisor (this project's KVM machine: free page reporting) touching those pages is slower
 * than the disk (eval/reports/bench-throughput.md: `dd` 1 GiB buffered + fdatasync 0.34 GB/s,
 * O_DIRECT 1.7 GB/s). Here the bytes are copied into page-aligned staging buffers (native
 * `alignedBuffer`, 4 × 8 MiB per open file, reused across files) and each full buffer is
 * written on a libuv thread while the next ones fill; the file's partial last block is written zero-padded and the file is
 * truncated back to its length at every sync and close.
 *
 * Where O_DIRECT is not available (no addon, not Linux, a file system that refuses it, or
 * QLLM_DIRECT_IO=0) the same interface writes through the page cache as before, with a
 * background fdatasync every FLUSH_EVERY bytes (atomic.ts BackgroundFlush). The bytes on disk
 * are the same either way.
 *
 *   const f = await AppendFile.open(path, "wx");   // or "w", or ("r+", at) to continue at byte `at`
 *   await f.append(bytes); ...; await f.sync(); await f.close();
 */
import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { createRequire } from "node:module";
import { invariant } from "../util/errors.ts";
import { BackgroundFlush } from "./atomic.ts";

/** O_DIRECT's alignment of buffer addresses, file offsets and lengths (≥ any logical block size in use). */
export const DIRECT_ALIGN = 4096;
/** Bytes per staging buffer, and buffers per open file (filled while the others are written). */
const STAGE_BYTES = 8 * 2 ** 20;
const STAGES = 4;
const IO_CHUNK = 1 << 30;

type AlignedBuffer = (bytes: number, align: number) => ArrayBuffer;
let aligned: AlignedBuffer | null | undefined;

/**
 * The addon's alignedBuffer, or null (not built, or built before it). Loaded here, not through
 * backend/native.ts: io/ is a room below backend/ (test/quant/rooms.test.ts), and this needs only
 * one allocator, no kernel.
 */
function alignedAllocator(): AlignedBuffer | null {
  if (aligned !== undefined) return aligned;
  aligned = null;
  try {
    const file = new URL("../../native/build/Release/quantize_llm.node", import.meta.url);
    const addon = createRequire(import.meta.url)(file.pathname) as { alignedBuffer?: AlignedBuffer };
    if (typeof addon.alignedBuffer === "function") aligned = addon.alignedBuffer.bind(addon);
  } catch { /* no addon: buffered writes */ }
  return aligned;
}

/** Staging buffers of closed files, kept for the next file (already-touched memory is cheap to reuse). */
const spare: Uint8Array[] = [];
function stage(): Uint8Array {
  return spare.pop() ?? new Uint8Array(alignedAllocator()!(STAGE_BYTES, DIRECT_ALIGN));
}

/** Whether O_DIRECT is tried at all: Linux, the addon's aligned buffers, and QLLM_DIRECT_IO not "0". */
export function directIoWanted(): boolean {
  return process.platform === "linux" && constants.O_DIRECT !== undefined && process.env["QLLM_DIRECT_IO"] !== "0" && alignedAllocator() !== null;
}

const alignDown = (n: number): number => n - (n % DIRECT_ALIGN);
const alignUp = (n: number): number => alignDown(n + DIRECT_ALIGN - 1);

async function writeFully(h: FileHandle, data: Uint8Array, offset: number, length: number, position: number): Promise<void> {
  for (let off = 0; off < length;) {
    const { bytesWritten } = await h.write(data, offset + off, Math.min(length - off, IO_CHUNK), position + off);
    invariant(bytesWritten > 0, "write made no progress");
    off += bytesWritten;
  }
}

/** A file written front to back; see the file comment. */
export interface AppendFile {
  /** true when the page cache is bypassed. */
  readonly direct: boolean;
  /** Bytes in the file so far (the next append's offset). */
  readonly position: number;
  append(data: Uint8Array): Promise<void>;
  /** Everything appended so far on disk: fdatasync, or fsync when `full`. */
  sync(full?: boolean): Promise<void>;
  /** Write out what is staged (no fdatasync) and close. Idempotent. */
  close(): Promise<void>;
}

export const AppendFile = {
  /**
   * "wx": a new file (fails if it exists); "w": created or truncated; "r+": an existing file,
   * appended to from byte `at` (the caller has truncated it there).
   */
  async open(path: string, flags: "wx" | "w" | "r+", at = 0): Promise<AppendFile> {
    if (directIoWanted()) {
      const f = await DirectFile.open(path, flags, at).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code === "EINVAL") return null; // the file system refuses O_DIRECT
        throw e;
      });
      if (f !== null) return f;
      // The refused open created the file when it could (O_CREAT comes before the O_DIRECT check): ours, so "w".
      if (flags === "wx") flags = "w";
    }
    return BufferedFile.open(path, flags, at);
  },
};

class BufferedFile implements AppendFile {
  readonly direct = false;
  #h: FileHandle | undefined;
  readonly #flush: BackgroundFlush;
  private constructor(h: FileHandle, public position: number) {
    this.#h = h;
    this.#flush = new BackgroundFlush(h);
  }

  static async open(path: string, flags: "wx" | "w" | "r+", at: number): Promise<BufferedFile> {
    return new BufferedFile(await open(path, flags), at);
  }

  async append(data: Uint8Array): Promise<void> {
    const h = this.#h;
    invariant(h !== undefined, "append after close");
    await writeFully(h, data, 0, data.byteLength, this.position);
    this.position += data.byteLength;
    await this.#flush.wrote(data.byteLength);
  }

  async sync(full = false): Promise<void> {
    invariant(this.#h !== undefined, "sync after close");
    await this.#flush.settle();
    await (full ? this.#h.sync() : this.#h.datasync());
  }

  async close(): Promise<void> {
    const h = this.#h;
    this.#h = undefined;
    if (h === undefined) return;
    try { await this.#flush.settle(); } finally { await h.close(); }
  }
}

/**
 * O_DIRECT: `#cur` holds the bytes from file offset `#base` (aligned) to `position`; full
 * buffers before it are queued, written one after another in file order (at most STAGES − 1
 * in flight, so the producer runs ahead of the disk by up to that much). The file may be
 * longer than `position` (a zero-padded last block) only between a tail write and the
 * truncate that follows it.
 */
class DirectFile implements AppendFile {
  readonly direct = true;
  #h: FileHandle | undefined;
  #cur: Uint8Array;
  #base: number;
  #fill: number;
  readonly #free: Uint8Array[] = [];
  #queued: Uint8Array[] = [];
  #allocated = 1;
  /** The last queued write (never rejects: a failure is kept in #failed and thrown by the next call). */
  #tail: Promise<void> = Promise.resolve();
  #failed: { error: unknown } | undefined;

  private constructor(h: FileHandle, at: number) {
    this.#h = h;
    this.#cur = stage();
    this.#base = alignDown(at);
    this.#fill = at - this.#base;
  }

  get position(): number { return this.#base + this.#fill; }

  static async open(path: string, flags: "wx" | "w" | "r+", at: number): Promise<DirectFile> {
    const f = { wx: constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, w: constants.O_CREAT | constants.O_TRUNC | constants.O_WRONLY, "r+": constants.O_RDWR }[flags];
    const h = await open(path, f | constants.O_DIRECT, 0o666);
    const d = new DirectFile(h, flags === "r+" ? at : 0);
    try {
      if (d.#fill > 0) {
        // Continue inside a block: its first bytes come back from the file (an aligned read).
        const { bytesRead } = await h.read(d.#cur, 0, DIRECT_ALIGN, d.#base);
        invariant(bytesRead >= d.#fill, `${path}: ${bytesRead} bytes at ${d.#base}, expected ${d.#fill}`);
        d.#cur.fill(0, d.#fill, DIRECT_ALIGN);
      } else if (flags !== "r+") {
        // Some file systems take O_DIRECT at open and refuse it at the first write: find out now.
        await writeFully(h, d.#cur, 0, DIRECT_ALIGN, 0);
        await h.truncate(0);
      }
    } catch (e) {
      await d.#release();
      throw e;
    }
    return d;
  }

  async append(data: Uint8Array): Promise<void> {
    invariant(this.#h !== undefined, "append after close");
    this.#throwIfFailed();
    for (let off = 0; off < data.byteLength;) {
      const n = Math.min(STAGE_BYTES - this.#fill, data.byteLength - off);
      this.#cur.set(data.subarray(off, off + n), this.#fill);
      this.#fill += n;
      off += n;
      if (this.#fill === STAGE_BYTES) {
        this.#enqueue(this.#cur, STAGE_BYTES);
        this.#cur = await this.#nextBuffer();
        this.#base += STAGE_BYTES;
        this.#fill = 0;
      }
    }
  }

  #enqueue(buf: Uint8Array, length: number): void {
    const h = this.#h!, at = this.#base;
    this.#tail = this.#tail.then(() => (this.#failed === undefined ? writeFully(h, buf, 0, length, at) : undefined))
      .catch((error: unknown) => { this.#failed ??= { error }; });
    this.#queued.push(buf);
  }

  /** A staging buffer to fill: a spare one, a new one (up to STAGES), or the oldest queued once written. */
  async #nextBuffer(): Promise<Uint8Array> {
    const b = this.#free.pop();
    if (b !== undefined) return b;
    if (this.#allocated < STAGES) {
      this.#allocated++;
      return stage();
    }
    await this.#settle();
    return this.#free.pop()!;
  }

  /** Wait for every queued write; their buffers are free again. */
  async #settle(): Promise<void> {
    await this.#tail;
    this.#free.push(...this.#queued);
    this.#queued = [];
    this.#throwIfFailed();
  }

  #throwIfFailed(): void {
    if (this.#failed !== undefined) throw this.#failed.error;
  }

  /** Write the staged bytes (the last block zero-padded) and truncate the file to `position`. */
  async #writeTail(): Promise<void> {
    const h = this.#h!;
    await this.#settle();
    if (this.#fill === 0) return;
    const end = alignUp(this.#fill);
    this.#cur.fill(0, this.#fill, end);
    await writeFully(h, this.#cur, 0, end, this.#base);
    await h.truncate(this.position);
    // Keep only the partial last block staged: it is written again, completed, by the next tail or full buffer.
    const done = alignDown(this.#fill);
    if (done > 0) {
      this.#cur.copyWithin(0, done, this.#fill);
      this.#base += done;
      this.#fill -= done;
    }
  }

  async sync(full = false): Promise<void> {
    invariant(this.#h !== undefined, "sync after close");
    await this.#writeTail();
    await (full ? this.#h.sync() : this.#h.datasync());
  }

  async close(): Promise<void> {
    if (this.#h === undefined) return;
    try {
      await this.#writeTail();
    } finally {
      await this.#release();
    }
  }

  async #release(): Promise<void> {
    const h = this.#h;
    this.#h = undefined;
    await this.#tail;
    spare.push(this.#cur, ...this.#free, ...this.#queued);
    this.#free.length = 0;
    this.#queued = [];
    await h?.close();
  }
}

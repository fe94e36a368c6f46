/**
 * Atomic file output: write to a temp file in the SAME folder, fsync, then rename over
 * the final name. A crash or error leaves either the old file or the new one, never a
 * half-written file that a later run would mistake for a finished checkpoint.
 * Same folder because rename(2) is only atomic within one file system.
 */

import { randomBytes } from "node:crypto";
import { open, rename, rm, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** `<dir>/<name>.tmp-<pid>-<rand>`: unique per process and call, next to `finalPath`. */
export function tempPathFor(finalPath: string): string {
  const rand = randomBytes(6).toString("hex");
  return join(dirname(finalPath), `${basename(finalPath)}.tmp-${process.pid}-${rand}`);
}

/**
 * Rename `tmpPath` over `finalPath`, then fsync the folder so the new directory entry
 * itself survives a power loss (the file's data must already be fsynced by the caller).
 */
export async function renameAtomic(tmpPath: string, finalPath: string): Promise<void> {
  await rename(tmpPath, finalPath);
  await fsyncDir(dirname(finalPath));
}

/** fsync a folder. Windows cannot open folders for fsync; there the rename is all we get. */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === "win32") return;
  const h = await open(dir, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * Best-effort removal of a temp file after a failure. A failure to clean up must not
 * hide the error that caused it, so it becomes a process warning instead of a throw.
 */
export async function removeTempFile(tmpPath: string): Promise<void> {
  try {
    await rm(tmpPath, { force: true });
  } catch (err) {
    process.emitWarning(`could not remove temp file ${tmpPath}: ${String(err)}`);
  }
}

/** Write `data` to `path` atomically (temp file + fsync + rename); the temp file is removed on failure. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = tempPathFor(path);
  try {
    // "wx": never clobber an existing file that happens to have our temp name.
    const h = await open(tmp, "wx");
    try {
      await h.writeFile(data);
      await h.sync();
    } finally {
      await h.close();
    }
    await renameAtomic(tmp, path);
  } catch (err) {
    await removeTempFile(tmp);
    throw err;
  }
}

/** Bytes written between two background flushes (BackgroundFlush). */
export const FLUSH_EVERY = 256 * 2 ** 20;

/**
 * Writeback while writing: after every FLUSH_EVERY bytes a file's data is flushed to disk
 * in the background (fdatasync on a libuv thread, at most one at a time), so the fsync
 * before the rename finds little left to write instead of the whole file (on this kind of
 * host the disk, not the CPU, bounds a multi-GB output). It only adds syncs: the final
 * fsync and rename are unchanged.
 */
export class BackgroundFlush {
  #since = 0;
  #pending: Promise<void> | null = null;

  constructor(private readonly handle: FileHandle) {}

  /** Count `n` bytes just written; maybe start a flush (waiting for the previous one first). */
  async wrote(n: number): Promise<void> {
    this.#since += n;
    if (this.#since < FLUSH_EVERY) return;
    this.#since = 0;
    await this.settle();
    this.#pending = this.handle.datasync().catch(() => {}); // the final fsync reports real errors
  }

  /** Wait for the running flush (before the final fsync, close or abort). */
  async settle(): Promise<void> {
    const p = this.#pending;
    this.#pending = null;
    await p;
  }
}

/** A writer of a temp file that `finish()` renames into place and `abort()` deletes. */
export interface FinishableWriter {
  finish(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * Write `count` items in order through `w`, producing item i + 1 while item i is being
 * written (at most one write in flight, so the producer may reuse two output buffers
 * alternately), then `finish()`. On any error the write in flight settles, the writer
 * is aborted (no half-written output) and the error is rethrown.
 */
export async function writeOverlapped<T>(
  w: FinishableWriter, count: number, produce: (i: number) => T | Promise<T>, write: (i: number, data: T) => Promise<void>,
): Promise<void> {
  let writing: Promise<void> = Promise.resolve();
  try {
    for (let i = 0; i < count; i++) {
      const data = await produce(i);
      await writing;
      writing = write(i, data);
    }
    await writing;
    await w.finish();
  } catch (err) {
    await writing.catch(() => {});
    await w.abort();
    throw err;
  }
}

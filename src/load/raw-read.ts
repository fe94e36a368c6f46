/**
 * Positioned reads of one tensor's stored bytes into a reusable buffer (canonical.ts
 * Scratch), so a packed load touches the same memory tensor after tensor instead of
 * allocating (and page-faulting) a fresh array per tensor.
 */
import { closeSync, openSync, readSync } from "node:fs";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { GgufFile } from "../io/gguf.ts";
import { FormatError } from "../util/errors.ts";
import type { Buffers } from "./canonical.ts";

const IO_CHUNK = 1 << 30;

/** `length` bytes of `path` at `position` into buffers slot `slot`. */
export function readRange(path: string, position: number, length: number, m: Buffers, slot: string, field: string): Uint8Array {
  const out = m.u8(slot, length);
  const fd = openSync(path, "r");
  try {
    for (let off = 0; off < length;) {
      const got = readSync(fd, out, off, Math.min(length - off, IO_CHUNK), position + off);
      if (got === 0) throw new FormatError("file is truncated", { file: path, field, expected: `${length} bytes at offset ${position}`, found: `${off} bytes` });
      off += got;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** A checkpoint tensor's raw bytes (its shard's data region + the header offsets). */
export function checkpointRaw(ckpt: Checkpoint, name: string, m: Buffers, slot = "raw"): Uint8Array {
  const shard = ckpt.shards.get(ckpt.info(name).file)!;
  const t = shard.info(name);
  return readRange(shard.path, shard.dataStart + t.begin, t.end - t.begin, m, slot, name);
}

/** A GGUF tensor's raw bytes. */
export function ggufRaw(f: GgufFile, name: string, m: Buffers, slot = "raw"): Uint8Array {
  const t = f.tensor(name);
  return readRange(f.path, f.dataStart + t.offset, t.byteSize, m, slot, name);
}

/**
 * Positioned reads of one tensor's stored bytes into a reusable buffer (canonical.ts
 * Scratch), so a packed load touches the same memory tensor after tensor instead of
 * allocating (and page-faulting) a fresh array per tensor.
 */
import { closeSync, openSync, readSync } from "node:fs";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { GgufFile } from "../io/gguf.ts";
import { FormatError, invariant } from "../util/errors.ts";
import { DTYPE_SIZE, toF32Into } from "../tensor/dtype.ts";
import type { Buffers } from "./canonical.ts";
import type { WeightDType } from "../backend/weight-kernels.ts";

const IO_CHUNK = 1 << 30;

/** `length` bytes of `path` at `position` into buffers slot `slot`. */
export function readRange(path: string, position: number, length: number, m: Buffers, slot: string, field: string): Uint8Array {
  return readRangeInto(path, position, m.u8(slot, length), field);
}

/** `out.length` bytes of `path` at `position` into `out`. */
export function readRangeInto(path: string, position: number, out: Uint8Array, field: string): Uint8Array {
  const length = out.length;
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

/** Bytes offset .. offset + out.length of a checkpoint tensor's stored data into `out` (a piece of a tensor too large to hold whole). */
export function checkpointBytesInto(ckpt: Checkpoint, name: string, offset: number, out: Uint8Array): Uint8Array {
  const shard = ckpt.shards.get(ckpt.info(name).file)!;
  const t = shard.info(name);
  invariant(offset >= 0 && offset + out.length <= t.end - t.begin, () => `${name}: bytes ${offset}..${offset + out.length} of ${t.end - t.begin}`);
  return readRangeInto(shard.path, shard.dataStart + t.begin + offset, out, name);
}

/**
 * A checkpoint tensor decoded to f32 into `out`: F32 bytes are read straight into it (this
 * host is little-endian, as safetensors is), other dtypes through `buffers` slot "raw".
 */
export function checkpointF32Into(ckpt: Checkpoint, name: string, out: Float32Array, buffers: Buffers): Float32Array {
  const { dtype } = ckpt.info(name);
  if (dtype !== "F32" || !LITTLE_ENDIAN) return toF32Into(dtype, checkpointRaw(ckpt, name, buffers), out);
  const shard = ckpt.shards.get(ckpt.info(name).file)!;
  const t = shard.info(name);
  invariant(t.end - t.begin === out.byteLength, () => `${name}: ${t.end - t.begin} bytes into an array of ${out.byteLength}`);
  readRangeInto(shard.path, shard.dataStart + t.begin, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), name);
  return out;
}

/**
 * Rows `ids` of a 2-D checkpoint tensor [R, C] (an embedding) decoded to f32, row i into
 * out[i·C ..): one positioned read per row through `buffers` slot "row", so the calibration
 * windows are embedded without reading (and dropping) the whole matrix.
 */
export function checkpointRowsF32Into(ckpt: Checkpoint, name: string, C: number, ids: readonly number[], out: Float32Array, buffers: Buffers): Float32Array {
  const { dtype, shape } = ckpt.info(name);
  const shard = ckpt.shards.get(ckpt.info(name).file)!;
  const t = shard.info(name);
  const rowBytes = C * DTYPE_SIZE[dtype];
  const raw = buffers.u8("row", rowBytes);
  ids.forEach((id, i) => {
    invariant(Number.isInteger(id) && id >= 0 && id < shape[0]!, () => `${name}: row ${id} of ${shape[0]}`);
    readRangeInto(shard.path, shard.dataStart + t.begin + id * rowBytes, raw, name);
    toF32Into(dtype, raw, out.subarray(i * C, (i + 1) * C));
  });
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A GGUF tensor's raw bytes. */
export function ggufRaw(f: GgufFile, name: string, m: Buffers, slot = "raw"): Uint8Array {
  const t = f.tensor(name);
  return readRange(f.path, f.dataStart + t.offset, t.byteSize, m, slot, name);
}

/**
 * A checkpoint tensor as its stored elements, for the kernels that read them directly
 * (backend/weight-kernels.ts): F16/BF16 bits or F32 values viewed in `buffers` slot `slot`
 * (valid until that slot's next use), any other dtype decoded to a fresh f32 array.
 */
export function readStored(ckpt: Checkpoint, name: string, buffers: Buffers, slot = "raw"): { data: Uint16Array | Float32Array; dtype: WeightDType } {
  const { dtype } = ckpt.info(name);
  if (dtype !== "F16" && dtype !== "BF16" && dtype !== "F32") return { data: ckpt.readF32Sync(name), dtype: "F32" };
  const raw = checkpointRaw(ckpt, name, buffers, slot);
  return dtype === "F32" ? { data: new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), dtype }
    : { data: new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2), dtype };
}

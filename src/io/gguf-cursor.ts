/**
 * The byte level of the GGUF reader (gguf.ts): a bounded, sequential little-endian
 * cursor over the header (one positioned read per chunk; every length is checked
 * against the bytes left in the file before anything is allocated) and the decoders
 * of one KV value (scalar or array) in the encodings of gguf-types.ts.
 */
import { readSync } from "node:fs";
import { FormatError, type ErrorDetails } from "../util/errors.ts";
import {
  MAX_STRING_BYTES, READ_CHUNK, IO_CHUNK, GGUF_VALUE_TYPES, FIXED,
  type GgufValueTypeName, type GgufItemType, type GgufValue,
} from "./gguf-types.ts";

/** Sequential little-endian reader over a file descriptor, one positioned read per chunk. */
export class HeaderCursor {
  private buf = new Uint8Array(0);
  private bufStart = 0;
  pos = 0;

  constructor(private readonly fd: number, readonly fileSize: number, private readonly file: string) {}

  get remaining(): number { return this.fileSize - this.pos; }

  /** The file is shorter than its own header says (`n` more bytes needed for `field`). */
  truncated(field: string, n: number): FormatError {
    return new FormatError("GGUF file is truncated", {
      file: this.file, field, expected: `${n} more bytes at offset ${this.pos}`, found: `${this.remaining} bytes left (file size ${this.fileSize})`,
      hint: "the file was cut short (interrupted download or write?); re-create or re-download it",
    });
  }

  /** Make bytes [pos, pos+n) available; returns their offset inside `buf`. */
  private need(n: number, field: string): number {
    if (n > this.remaining) throw this.truncated(field, n);
    const rel = this.pos - this.bufStart;
    if (rel >= 0 && rel + n <= this.buf.length) return rel;
    const len = Math.min(Math.max(n, READ_CHUNK), this.remaining);
    const buf = new Uint8Array(len);
    for (let off = 0; off < len;) {
      const got = readSync(this.fd, buf, off, Math.min(len - off, IO_CHUNK), this.pos + off);
      if (got === 0) throw new FormatError("GGUF file shrank while reading", { file: this.file, field });
      off += got;
    }
    this.buf = buf;
    this.bufStart = this.pos;
    return 0;
  }

  bytes(n: number, field: string): Uint8Array {
    const o = this.need(n, field);
    this.pos += n;
    return this.buf.subarray(o, o + n);
  }

  view(n: number, field: string): DataView {
    const b = this.bytes(n, field);
    return new DataView(b.buffer, b.byteOffset, n);
  }

  u32(field: string): number { return this.view(4, field).getUint32(0, true); }

  /** u64 as a number; values above 2^53 are reported as absurd. */
  u64(field: string): number {
    const v = this.view(8, field).getBigUint64(0, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError("GGUF value out of range", { file: this.file, field, expected: "at most 2^53", found: v.toString() });
    }
    return Number(v);
  }

  string(field: string, maxBytes = MAX_STRING_BYTES): string {
    const n = this.u64(`${field} (string length)`);
    if (n > maxBytes) { // within the limit but past the end: need() reports the truncation
      throw new FormatError("GGUF string length is absurd", {
        file: this.file, field, expected: `at most ${Math.min(maxBytes, this.remaining)} bytes (limit ${maxBytes}, ${this.remaining} bytes left in the file)`,
        found: `${n} bytes`, hint: "the file is corrupt or not a GGUF v3 file",
      });
    }
    return new TextDecoder("utf-8", { fatal: false }).decode(this.bytes(n, field));
  }
}

export function valueTypeName(
  id: number, key: string, bad: (s: string, d: Omit<ErrorDetails, "file">) => FormatError,
): GgufValueTypeName {
  const t = GGUF_VALUE_TYPES[id];
  if (t === undefined) {
    throw bad("unknown value type", { field: key, expected: `0..${GGUF_VALUE_TYPES.length - 1} (${GGUF_VALUE_TYPES.join(", ")})`, found: String(id) });
  }
  return t;
}

export function readScalar(c: HeaderCursor, key: string, type: GgufItemType): GgufValue {
  if (type === "string") return { type, value: c.string(key) };
  const dv = c.view(FIXED[type], key);
  switch (type) {
    case "u8": return { type, value: dv.getUint8(0) };
    case "i8": return { type, value: dv.getInt8(0) };
    case "bool": return { type, value: dv.getUint8(0) !== 0 };
    case "u16": return { type, value: dv.getUint16(0, true) };
    case "i16": return { type, value: dv.getInt16(0, true) };
    case "u32": return { type, value: dv.getUint32(0, true) };
    case "i32": return { type, value: dv.getInt32(0, true) };
    case "f32": return { type, value: dv.getFloat32(0, true) };
    case "f64": return { type, value: dv.getFloat64(0, true) };
    case "u64": return { type, value: dv.getBigUint64(0, true) };
    case "i64": return { type, value: dv.getBigInt64(0, true) };
  }
}

export function readArray(c: HeaderCursor, key: string, itemType: GgufItemType, n: number): GgufValue {
  if (itemType === "string") {
    const out: string[] = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = c.string(`${key}[${i}]`);
    return { type: "array", itemType, value: out };
  }
  const size = FIXED[itemType];
  const dv = c.view(n * size, key);
  if (itemType === "bool") {
    const out: boolean[] = new Array<boolean>(n);
    for (let i = 0; i < n; i++) out[i] = dv.getUint8(i) !== 0;
    return { type: "array", itemType, value: out };
  }
  if (itemType === "u64" || itemType === "i64") {
    const out: bigint[] = new Array<bigint>(n);
    for (let i = 0; i < n; i++) out[i] = itemType === "u64" ? dv.getBigUint64(8 * i, true) : dv.getBigInt64(8 * i, true);
    return { type: "array", itemType, value: out };
  }
  const out: number[] = new Array<number>(n);
  const get: (o: number) => number = {
    u8: (o: number) => dv.getUint8(o), i8: (o: number) => dv.getInt8(o),
    u16: (o: number) => dv.getUint16(o, true), i16: (o: number) => dv.getInt16(o, true),
    u32: (o: number) => dv.getUint32(o, true), i32: (o: number) => dv.getInt32(o, true),
    f32: (o: number) => dv.getFloat32(o, true), f64: (o: number) => dv.getFloat64(o, true),
  }[itemType];
  for (let i = 0; i < n; i++) out[i] = get(i * size);
  return { type: "array", itemType, value: out };
}

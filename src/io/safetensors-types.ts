/**
 * safetensors definitions shared by the reader (safetensors.ts) and the writer
 * (safetensors-write.ts), FORMATS.md §1:
 *
 *   [u64 LE n][n bytes UTF-8 JSON header, space-padded][data region: tensors back to back]
 */
import { DTYPE_SIZE, type DType } from "../tensor/dtype.ts";
import { FormatError, type ErrorDetails } from "../util/errors.ts";

/** Header size cap of the reference reader (`MAX_HEADER_SIZE`, safetensors/src/tensor.rs). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Data start alignment the reference writer pads to (`prepare`, safetensors/src/tensor.rs). */
export const HEADER_ALIGN = 8;
/** Largest single read/write call: fs calls are limited to 2 GiB - 1 bytes each. */
export const IO_CHUNK = 1 << 30;
/** Valid in the safetensors spec (`Dtype` enum) but with no DType here: a clearer error than "unknown". */
export const UNSUPPORTED_DTYPES = ["U32", "U64", "C64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"];

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

export type Details = Omit<ErrorDetails, "file">;
export const bad = (file: string, summary: string, d: Details = {}): FormatError =>
  new FormatError(`safetensors: ${summary}`, { file, ...d });

/** A header value for an error message, cut short: values come from untrusted files. */
export function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
export const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
export const isDType = (v: string): v is DType => Object.hasOwn(DTYPE_SIZE, v);

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

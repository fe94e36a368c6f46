/**
 * The native conversion kernels (native/src/convert.h) behind the WeightKernels contract
 * (weight-kernels.ts), with every length checked here: the C++ side trusts its inputs.
 */
import { UsageError } from "../util/errors.ts";
import type { RtnOutput, RtnSums, WeightDType, WeightKernels } from "./weight-kernels.ts";

/** The addon's conversion entry points (types: 0 F32, 1 F16, 2 BF16). */
export interface NativeConvertAddon {
  convertRows(src: Uint16Array | Float32Array, srcType: number, rows: Int32Array | null, N: number, K: number, dst: Uint16Array | Float32Array, dstType: number): number;
  ggmlQuantizeRows(src: Uint16Array | Float32Array, srcType: number, rows: Int32Array | null, N: number, K: number, type: number, out: Uint8Array): void;
  rtnQuantize(src: Uint16Array | Float32Array, srcType: number, N: number, K: number, bits: number, g: number, sym: boolean,
    codes: Uint8Array, scales: Float32Array, zeros: Uint8Array, err: Float64Array): number;
  gptqPackCodes(codes: Uint8Array, N: number, K: number, bits: number, qweight: Int32Array): void;
}

const TYPE: Readonly<Record<WeightDType, number>> = { F32: 0, F16: 1, BF16: 2 };

function need(what: string, got: number, want: number): void {
  if (got < want) throw new UsageError(`${what} is too short`, { field: what, expected: `at least ${want} elements`, found: String(got) });
}

function checkSource(src: Uint16Array | Float32Array, t: WeightDType, rows: Int32Array | null, N: number, K: number): void {
  if (!Number.isSafeInteger(N) || !Number.isSafeInteger(K) || N < 0 || K < 1) throw new UsageError("bad matrix shape", { field: "N, K", found: `${N}, ${K}` });
  if ((t === "F32") !== (src instanceof Float32Array)) throw new UsageError("source array does not match its dtype", { field: "src", expected: t === "F32" ? "Float32Array" : "Uint16Array", found: src.constructor.name });
  if (rows === null) { need("src", src.length, N * K); return; }
  need("rows", rows.length, N);
  const srcRows = src.length / K;
  for (let r = 0; r < N; r++) {
    if (!(rows[r]! >= 0 && rows[r]! < srcRows)) throw new UsageError("row index out of range", { field: `rows[${r}]`, expected: `0 ≤ row < ${srcRows}`, found: String(rows[r]) });
  }
}

export class NativeWeightKernels implements WeightKernels {
  readonly name = "native" as const;
  constructor(private readonly addon: NativeConvertAddon) {}

  convertRows(src: Uint16Array | Float32Array, srcType: WeightDType, rows: Int32Array | null, N: number, K: number, dst: Uint16Array | Float32Array, dstType: "F16" | "F32"): number {
    checkSource(src, srcType, rows, N, K);
    if ((dstType === "F32") !== (dst instanceof Float32Array)) throw new UsageError("destination array does not match its dtype", { field: "dst", found: dst.constructor.name });
    need("dst", dst.length, N * K);
    if (N === 0) return -1;
    return this.addon.convertRows(src, TYPE[srcType], rows, N, K, dst, TYPE[dstType]);
  }

  ggmlQuantizeRows(src: Uint16Array | Float32Array, srcType: WeightDType, rows: Int32Array | null, N: number, K: number, type: "Q4_0" | "Q8_0", out: Uint8Array): void {
    checkSource(src, srcType, rows, N, K);
    if (K % 32 !== 0) throw new UsageError(`${type} needs rows of a multiple of 32`, { field: "K", found: String(K) });
    need("out", out.length, (N * K / 32) * (type === "Q4_0" ? 18 : 34));
    if (N > 0) this.addon.ggmlQuantizeRows(src, TYPE[srcType], rows, N, K, type === "Q4_0" ? 0 : 1, out);
  }

  rtnQuantize(src: Uint16Array | Float32Array, srcType: WeightDType, N: number, K: number, bits: number, groupSize: number, sym: boolean, out: RtnOutput): RtnSums {
    checkSource(src, srcType, null, N, K);
    if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new UsageError("bits must be 1..8", { field: "bits", found: String(bits) });
    if (!Number.isInteger(groupSize) || groupSize < 1) throw new UsageError("group size must be ≥ 1", { field: "groupSize", found: String(groupSize) });
    const G = Math.ceil(K / groupSize);
    need("codes", out.codes.length, N * K);
    need("scales", out.scales.length, N * G);
    need("zeros", out.zeros.length, N * G);
    const err = new Float64Array(2);
    const bad = N === 0 ? -1 : this.addon.rtnQuantize(src, TYPE[srcType], N, K, bits, groupSize, sym, out.codes, out.scales, out.zeros, err);
    return { nonFinite: bad, num: err[0]!, den: err[1]! };
  }

  gptqPackCodes(codes: Uint8Array, N: number, K: number, bits: 2 | 4 | 8, qweight: Int32Array): void {
    if (![2, 4, 8].includes(bits) || K % (32 / bits) !== 0) throw new UsageError("codes cannot be packed", { field: "bits, K", found: `${bits}, ${K}` });
    need("codes", codes.length, N * K);
    need("qweight", qweight.length, (K * bits / 32) * N);
    if (N > 0) this.addon.gptqPackCodes(codes, N, K, bits, qweight);
  }
}

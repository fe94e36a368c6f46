/**
 * Per-weight conversions of the paths that touch every weight once (issue 10: RTN, GGUF
 * export, reading 16-bit checkpoints), as one contract with two implementations: the
 * native kernels (native/src/convert.h, row chunks on the addon's pool) and the
 * TypeScript references below, which are the specification (they call the same functions
 * the per-element paths always used: toF32/fromF32, the ggml reference quantizers, the RTN
 * grid). test/native/convert.test.ts keeps the two equal.
 *
 *   convertRows       dst[r, :] = src[rows?.[r] ?? r, :] as F16 or F32 (the llama Q/K
 *                     permutation in the same pass); F16 checks |x| ≤ 65504
 *   ggmlQuantizeRows  quantize_row_q4_0_ref / quantize_row_q8_0_ref of each (permuted) row
 *   rtnQuantize       src/methods/rtn.ts codes, scales and zeros, plus the weight error sums
 *                     (native only; the reference is rtnQuantizeRowsRef in src/methods/rtn.ts)
 *   gptqPackCodes     HF-GPTQ qweight [K·b/32, N] of codes [N, K] (b = 2, 4, 8)
 */
import { GGML_BLOCK_TYPES } from "../pack/gguf-blocks.ts";
import { packStream } from "../pack/bits.ts";
import { fromF32, toF32 } from "../tensor/dtype.ts";

/** Element types a weight is stored in. */
export type WeightDType = "F32" | "F16" | "BF16";

export interface RtnOutput {
  /** [N, K] */
  codes: Uint8Array;
  /** [N, G] */
  scales: Float32Array;
  /** [N, G] */
  zeros: Uint8Array;
}

export interface RtnSums {
  /** First flat index of a NaN / ±inf weight, or −1 (then nothing else is meaningful). */
  nonFinite: number;
  /** Σ(w − s·(q − z))² and Σw² (per row with 4 interleaved f64 sums, element k into sum k mod 4, then rows in order). */
  num: number;
  den: number;
}

export interface WeightKernels {
  readonly name: "ref" | "native";
  /** Returns the first flat destination index with |x| > 65504 when dstType is F16 (nothing after it is written), else −1. */
  convertRows(src: Uint16Array | Float32Array, srcType: WeightDType, rows: Int32Array | null, N: number, K: number, dst: Uint16Array | Float32Array, dstType: "F16" | "F32"): number;
  /** K % 32 == 0; out holds N·K/32 blocks of 18 (Q4_0) or 34 (Q8_0) bytes. */
  ggmlQuantizeRows(src: Uint16Array | Float32Array, srcType: WeightDType, rows: Int32Array | null, N: number, K: number, type: "Q4_0" | "Q8_0", out: Uint8Array): void;
  /** Native only: its reference is src/methods/rtn.ts rtnQuantizeRowsRef (the grid lives in methods/). */
  rtnQuantize?(src: Uint16Array | Float32Array, srcType: WeightDType, N: number, K: number, bits: number, groupSize: number, sym: boolean, out: RtnOutput): RtnSums;
  gptqPackCodes(codes: Uint8Array, N: number, K: number, bits: 2 | 4 | 8, qweight: Int32Array): void;
}

const bytesOf = (a: Uint16Array | Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Source row r as f32 (a fresh array). */
function rowF32(src: Uint16Array | Float32Array, t: WeightDType, r: number, K: number): Float32Array {
  if (t === "F32") return (src as Float32Array).slice(r * K, (r + 1) * K);
  return toF32(t, bytesOf((src as Uint16Array).subarray(r * K, (r + 1) * K)));
}

/** The TypeScript references (the specification of the native kernels). */
export const refWeightKernels: WeightKernels = {
  name: "ref",
  convertRows(src, srcType, rows, N, K, dst, dstType) {
    for (let r = 0; r < N; r++) {
      const x = rowF32(src, srcType, rows?.[r] ?? r, K);
      if (dstType === "F32") { (dst as Float32Array).set(x, r * K); continue; }
      for (let k = 0; k < K; k++) if (Math.abs(x[k]!) > 65504) return r * K + k;
      const h = fromF32("F16", x);
      (dst as Uint16Array).set(new Uint16Array(h.buffer, 0, K), r * K);
    }
    return -1;
  },
  ggmlQuantizeRows(src, srcType, rows, N, K, type, out) {
    const t = GGML_BLOCK_TYPES[type], rowBytes = (K / 32) * t.bytesPerBlock;
    for (let r = 0; r < N; r++) t.quantizeRow(rowF32(src, srcType, rows?.[r] ?? r, K), out, r * rowBytes);
  },
  gptqPackCodes(codes, N, K, bits, qweight) {
    for (let n = 0; n < N; n++) packStream(codes, n * K, 1, K, bits, qweight, n, N);
  },
};

/** A backend's kernels, or the references. */
export function weightKernels(b: { weights?: WeightKernels | undefined } | undefined): WeightKernels {
  return b?.weights ?? refWeightKernels;
}

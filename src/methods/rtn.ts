/**
 * Round-to-nearest: each (row, group) gets its own grid from its min/max and
 * every weight is rounded independently. The baseline GPTQ and AWQ must beat.
 */
import { gptqGrid, minMax, quantizeValue } from "./grid.ts";
import { contiguousGIdx, groupLength, numGroups, type QuantizedLinear } from "../tensor/quantized.ts";
import { toF32 } from "../tensor/dtype.ts";
import { invariant } from "../util/errors.ts";
import type { RtnOutput, RtnSums, WeightDType, WeightKernels } from "../backend/weight-kernels.ts";

export interface RtnOptions {
  /** [N, K] row-major */
  weight: Float32Array;
  rows: number;
  cols: number;
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
  sym: boolean;
  /** Reused memory for the codes [N·K] (the result's codes then), instead of a fresh array. */
  codes?: Uint8Array;
}

/** `codes` zeroed (the bits of a fresh array), or a fresh array of n. */
function reuse(codes: Uint8Array | undefined, n: number): Uint8Array {
  if (codes === undefined) return new Uint8Array(n);
  invariant(codes.length === n, () => `RTN codes buffer of ${codes.length} values for ${n} weights`);
  return codes.fill(0);
}

export function rtnQuantizeLinear(o: RtnOptions): QuantizedLinear {
  const { weight: W, rows: N, cols: K, bits, sym } = o;
  const g = groupLength(o.groupSize, K);
  const G = numGroups(K, g);
  const maxq = 2 ** bits - 1;
  const codes = reuse(o.codes, N * K); // [N, K]
  const scales = new Float32Array(N * G); // [N, G]
  const zeros = new Uint8Array(N * G); // [N, G]
  for (let n = 0; n < N; n++) {
    for (let gi = 0; gi < G; gi++) {
      const k0 = gi * g, len = Math.min(g, K - k0);
      const [lo, hi] = minMax(W, n * K + k0, len);
      const p = gptqGrid(lo, hi, bits, sym);
      scales[n * G + gi] = p.scale;
      zeros[n * G + gi] = p.zero;
      for (let k = k0; k < k0 + len; k++) codes[n * K + k] = quantizeValue(W[n * K + k]!, p, maxq);
    }
  }
  return { N, K, bits, groupSize: g, sym, codes, scales, zeros, gIdx: contiguousGIdx(K, g) };
}

/**
 * RTN of a stored [N, K] matrix straight from its stored elements (F32, F16 or BF16),
 * through the backend's kernel (native/src/convert.h) or this file's reference: codes,
 * scales and zeros identical to rtnQuantizeLinear, plus ‖W − Q‖² and ‖W‖² without a
 * dequantized copy (summation order: see RtnSums).
 */
export function rtnQuantizeRows(
  k: WeightKernels, src: Uint16Array | Float32Array, dtype: WeightDType, N: number, K: number, bits: number, groupSize: number, sym: boolean, codes?: Uint8Array,
): { q: QuantizedLinear } & RtnSums {
  const g = groupLength(groupSize, K);
  const G = numGroups(K, g);
  const out: RtnOutput = { codes: reuse(codes, N * K), scales: new Float32Array(N * G), zeros: new Uint8Array(N * G) }; // [N, K], [N, G], [N, G]
  const sums = k.rtnQuantize !== undefined ? k.rtnQuantize(src, dtype, N, K, bits, g, sym, out) : rtnQuantizeRowsRef(src, dtype, N, K, bits, g, sym, out);
  return { q: { N, K, bits, groupSize: g, sym, ...out, gIdx: contiguousGIdx(K, g) }, ...sums };
}

/** The reference of WeightKernels.rtnQuantize: rtnQuantizeLinear row by row, with the error sums in the kernel's order. */
export function rtnQuantizeRowsRef(src: Uint16Array | Float32Array, dtype: WeightDType, N: number, K: number, bits: number, g: number, sym: boolean, out: RtnOutput): RtnSums {
  const G = numGroups(K, g), maxq = 2 ** bits - 1;
  let num = 0, den = 0;
  for (let r = 0; r < N; r++) {
    const x = dtype === "F32" ? (src as Float32Array).subarray(r * K, (r + 1) * K)
      : toF32(dtype, new Uint8Array(src.buffer, src.byteOffset + 2 * r * K, 2 * K));
    for (let k = 0; k < K; k++) if (!Number.isFinite(x[k]!)) return { nonFinite: r * K + k, num: NaN, den: NaN };
    const rn = [0, 0, 0, 0], rd = [0, 0, 0, 0]; // element k into sum k mod 4
    for (let gi = 0; gi < G; gi++) {
      const k0 = gi * g, len = Math.min(g, K - k0);
      const [lo, hi] = minMax(x, k0, len);
      const p = gptqGrid(lo, hi, bits, sym);
      out.scales[r * G + gi] = p.scale;
      out.zeros[r * G + gi] = p.zero;
      for (let k = k0; k < k0 + len; k++) {
        const q = quantizeValue(x[k]!, p, maxq);
        out.codes[r * K + k] = q;
        const e = x[k]! - Math.fround(p.scale * (q - p.zero));
        rn[k & 3]! += e * e;
        rd[k & 3]! += x[k]! * x[k]!;
      }
    }
    num += (rn[0]! + rn[1]!) + (rn[2]! + rn[3]!);
    den += (rd[0]! + rd[1]!) + (rd[2]! + rd[3]!);
  }
  return { nonFinite: -1, num, den };
}

/**
 * The canonical, format-neutral result of every quantization method. Packers
 * turn it into format bytes; every pack has an unpack, and unpack(pack(x)) == x.
 */
import { invariant } from "../util/errors.ts";

export interface QuantizedLinear {
  /** out_features */
  N: number;
  /** in_features */
  K: number;
  bits: number;
  /** Group size along K (K itself for one group per row, i.e. `--group-size -1`). */
  groupSize: number;
  sym: boolean;
  /** [N, K] integer codes in [0, 2^bits − 1] */
  codes: Uint8Array;
  /** [N, G] scales, already rounded to their storage dtype (f16) */
  scales: Float32Array;
  /** [N, G] integer zero points in [0, 2^bits − 1] (true zero: W = s·(q − z)) */
  zeros: Uint8Array;
  /** [K] group of each input column; contiguous (k / g) unless act-order with dynamic groups */
  gIdx: Int32Array;
  /** [N] bias carried through unquantized, if the layer has one */
  bias?: Float32Array;
}

export function numGroups(K: number, groupSize: number): number {
  return Math.ceil(K / groupSize);
}

/**
 * The group geometry, resolved in this one place: the group length along K of a layer
 * with K inputs for a `--group-size` setting (−1: one group per row, i.e. K).
 */
export function groupLength(groupSize: number, K: number): number {
  return groupSize === -1 ? K : groupSize;
}

/** G, the groups per row of a quantized layer ([N, G] scales and zeros). */
export function groupCount(q: Pick<QuantizedLinear, "K" | "groupSize">): number {
  return numGroups(q.K, q.groupSize);
}

/** Contiguous g_idx: column k belongs to group floor(k / g). */
export function contiguousGIdx(K: number, groupSize: number): Int32Array {
  const g = new Int32Array(K);
  for (let k = 0; k < K; k++) g[k] = Math.floor(k / groupSize);
  return g;
}

/** W[n, k] = s[n, g(k)] · (q[n, k] − z[n, g(k)]) — [N, K] f32, into `out` (N·K values) when given. */
export function dequantize(q: QuantizedLinear, out?: Float32Array): Float32Array {
  const { N, K, codes, scales, zeros, gIdx } = q;
  const G = groupCount(q);
  invariant(out === undefined || out.length === N * K, () => `dequantize: ${N}×${K} into an array of ${out!.length}`);
  const W = out ?? new Float32Array(N * K); // [N, K]
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const g = n * G + gIdx[k]!;
      W[n * K + k] = scales[g]! * (codes[n * K + k]! - zeros[g]!);
    }
  }
  return W;
}

/**
 * Round-to-nearest: each (row, group) gets its own grid from its min/max and
 * every weight is rounded independently. The baseline GPTQ and AWQ must beat.
 */
import { gptqGrid, minMax, quantizeValue } from "./grid.ts";
import { contiguousGIdx, numGroups, type QuantizedLinear } from "../tensor/quantized.ts";

export interface RtnOptions {
  /** [N, K] row-major */
  weight: Float32Array;
  rows: number;
  cols: number;
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
  sym: boolean;
}

export function rtnQuantizeLinear(o: RtnOptions): QuantizedLinear {
  const { weight: W, rows: N, cols: K, bits, sym } = o;
  const g = o.groupSize === -1 ? K : o.groupSize;
  const G = numGroups(K, g);
  const maxq = 2 ** bits - 1;
  const codes = new Uint8Array(N * K); // [N, K]
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

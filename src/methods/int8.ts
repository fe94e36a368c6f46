/**
 * LLM.int8() (Dettmers et al. 2022, ALGORITHMS.md §4) — the plain-TS specification.
 *
 *   weights      per output row absmax:  CB[n,k] = round(127·W[n,k] / SCB[n]),  SCB[n] = max_k |W[n,k]|
 *   activations  per token (row) absmax, at run time; with threshold t > 0 every input
 *                feature (column) where ANY |x[m,k]| ≥ t in the current batch is an outlier:
 *                its int8 codes are zeroed and it is computed in f32 against the
 *                dequantized weight column W̃[n,k] = CB[n,k]·SCB[n]/127, then added back.
 *   output       y[m,n] = C[m,n]·SCA[m]·SCB[n]/127² + bias[n] + Σ_{k∈O} x[m,k]·W̃[n,k]
 *                with C = CA·CBᵀ in int32.
 *
 * Every step follows bitsandbytes' reference ("default") backend op by op
 * (bitsandbytes/backends/default/ops.py: `int8_vectorwise_quant`, `int8_mixed_scaled_mm`,
 * `int8_mm_dequant`, `int8_vectorwise_dequant`): in
 * particular only the outlier ELEMENTS are zeroed before the row absmax, so a small value in
 * an outlier column still counts in its row's scale (it is then moved to the f32 part with
 * the rest of its column). Rounding is round-half-to-even (torch.round, cvtps2dq).
 * threshold 0 is plain per-token dynamic int8 (PyTorch's "dynamic quantization" of Linear).
 * The native kernel (native/src/llm_int8*.cc) is kept equal to this by test/int8/.
 */
import { invariant } from "../util/errors.ts";
import { dequantizeInt8, INV_127, INV_127_SQ, type Int8Linear } from "../tensor/int8.ts";

// The core type and its dequantization live on the ground floor (tensor/int8.ts), like QuantizedLinear.
export { dequantizeInt8, INV_127, INV_127_SQ, type Int8Linear };


/** Round half to even, as torch.round and the SIMD cvtps2dq do. */
export function rint(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

/** Per-row absmax int8 (Int8Params._quantize → int8_vectorwise_quant with threshold 0). */
export function quantizeInt8Rows(W: Float32Array, N: number, K: number): { CB: Int8Array; SCB: Float32Array } {
  invariant(W.length === N * K, () => `quantizeInt8Rows: W has ${W.length} values, expected N·K = ${N * K}`);
  const CB = new Int8Array(N * K); // [N, K]
  const SCB = new Float32Array(N); // [N]
  for (let n = 0; n < N; n++) {
    const o = n * K;
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(W[o + k]!));
    SCB[n] = amax;
    if (amax === 0) continue; // an all-zero row stays zero (torch would give NaN codes)
    const s = Math.fround(127 / Math.fround(amax));
    for (let k = 0; k < K; k++) CB[o + k] = rint(Math.fround(W[o + k]! * s));
  }
  return { CB, SCB };
}


/** Quantized activations of one batch. */
export interface Int8Activations {
  /** [M, K] int8 codes; 0 in every outlier column */
  CA: Int8Array;
  /** [M] f32 row absmax over the non-outlier elements */
  SCA: Float32Array;
  /** ascending outlier columns (empty when none or threshold 0) */
  outlierCols: Int32Array;
}

/**
 * Outlier columns of x [M, K]: any |x| ≥ threshold (threshold > 0), or the fixed
 * `staticCols` when given (then no scan: `--static-outliers`).
 */
export function outlierColumns(x: Float32Array, M: number, K: number, threshold: number, staticCols?: Int32Array): Int32Array {
  if (staticCols) return staticCols;
  if (!(threshold > 0)) return new Int32Array(0);
  const hit = new Uint8Array(K);
  for (let i = 0; i < M * K; i++) if (Math.abs(x[i]!) >= threshold) hit[i % K] = 1;
  const cols: number[] = [];
  for (let k = 0; k < K; k++) if (hit[k]) cols.push(k);
  return Int32Array.from(cols);
}

/**
 * Per-token int8 of x [M, K] (bitsandbytes' int8_vectorwise_quant): elements with
 * |x| ≥ threshold are excluded from the row absmax, and every code of an outlier column
 * is 0. With static columns, those columns are excluded from the absmax too (no scan).
 */
export function quantizeActivations(x: Float32Array, M: number, K: number, threshold: number, staticCols?: Int32Array): Int8Activations {
  const outlierCols = outlierColumns(x, M, K, threshold, staticCols);
  const isOut = new Uint8Array(K);
  for (const c of outlierCols) isOut[c] = 1;
  const dynamic = !staticCols && threshold > 0;
  const CA = new Int8Array(M * K); // [M, K]
  const SCA = new Float32Array(M); // [M]
  for (let m = 0; m < M; m++) {
    const o = m * K;
    let amax = 0;
    for (let k = 0; k < K; k++) {
      const a = Math.abs(x[o + k]!);
      const excluded = dynamic ? a >= threshold : isOut[k] === 1;
      if (!excluded) amax = Math.max(amax, a);
    }
    SCA[m] = amax;
    if (amax === 0) continue;
    const s = Math.fround(127 / Math.fround(amax));
    for (let k = 0; k < K; k++) if (!isOut[k]) CA[o + k] = rint(Math.fround(x[o + k]! * s));
  }
  return { CA, SCA, outlierCols };
}

/**
 * y [M, N] = LLM.int8() of x [M, K] against q, the reference formula:
 * int32 C = CA·CBᵀ (exact), dequantized C·(SCA ⊗ SCB)/127² + bias, plus the outlier
 * columns in f32 against W̃. Every float op is an f32 op (Math.fround after each), in the
 * order bitsandbytes writes them; the native kernel does the same ops in the same order,
 * so the two agree bit for bit.
 */
export function int8MatmulRef(x: Float32Array, M: number, q: Int8Linear, threshold: number, staticCols?: Int32Array): Float32Array {
  const { N, K, CB, SCB, bias } = q;
  invariant(x.length >= M * K, () => `int8MatmulRef: x has ${x.length} values, expected M·K = ${M * K}`);
  const { CA, SCA, outlierCols } = quantizeActivations(x, M, K, threshold, staticCols);
  const y = new Float32Array(M * N); // [M, N]
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let c = 0; // int32 in bitsandbytes; |c| ≤ K·127² stays exact in a double
      for (let k = 0; k < K; k++) c += CA[m * K + k]! * CB[n * K + k]!;
      let v = Math.fround(Math.fround(Math.fround(c) * Math.fround(SCA[m]! * SCB[n]!)) * INV_127_SQ);
      if (bias) v = Math.fround(v + bias[n]!);
      let o = 0; // f32, in ascending column order
      for (const k of outlierCols) o = Math.fround(o + Math.fround(x[m * K + k]! * Math.fround(Math.fround(CB[n * K + k]! * SCB[n]!) * INV_127)));
      y[m * N + n] = Math.fround(v + o);
    }
  }
  return y;
}

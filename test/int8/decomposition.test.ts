/**
 * LLM.int8() reference (src/methods/int8.ts) against hand-built cases whose answer is known
 * without the implementation: values on exact int8 grids make the int8 part exact, so with
 * the decomposition y must equal x·Wᵀ up to the f32 rounding of bitsandbytes' 1/127 and
 * 1/127² constants; without it (or below the threshold) the outlier inflates the row scale.
 */
import { describe, expect, it } from "vitest";
import { dequantizeInt8, int8MatmulRef, quantizeActivations, quantizeInt8Rows, rint, type Int8Linear } from "../../src/methods/int8.ts";

/** f32 rounding of 1/127 and 1/127² (bitsandbytes' constants) bounds the relative error of exact-grid cases. */
const CONST_ROUNDING = 1e-6;

/** W [3, 4] on the grid step 1/32 with every row absmax 127/32: CB = 32·W exactly, SCB = 127/32. */
const W = Float32Array.from([
  127, -3, 40, 5,
  -127, 64, -1, 0,
  17, 127, -90, 33,
].map((v) => v / 32));

function exact(x: Float32Array, M: number): Float64Array {
  const y = new Float64Array(M * 3);
  for (let m = 0; m < M; m++) for (let n = 0; n < 3; n++) for (let k = 0; k < 4; k++) y[m * 3 + n]! += x[m * 4 + k]! * W[n * 4 + k]!;
  return y;
}

function maxRelErr(y: Float32Array, ref: Float64Array): number {
  let e = 0, s = 0;
  for (let i = 0; i < ref.length; i++) { e = Math.max(e, Math.abs(y[i]! - ref[i]!)); s = Math.max(s, Math.abs(ref[i]!)); }
  return e / s;
}

/** Plain per-token dynamic int8, written independently (f64, no outlier logic). */
function plainDynamicInt8(x: Float32Array, M: number, K: number, w: Float32Array, N: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    const ax = Math.max(...x.subarray(m * K, (m + 1) * K).map(Math.abs));
    for (let n = 0; n < N; n++) {
      const aw = Math.max(...w.subarray(n * K, (n + 1) * K).map(Math.abs));
      let c = 0;
      for (let k = 0; k < K; k++) c += Math.round((127 * x[m * K + k]!) / ax) * Math.round((127 * w[n * K + k]!) / aw);
      y[m * N + n] = (c * ax * aw) / (127 * 127);
    }
  }
  return y;
}

const q: Int8Linear = { N: 3, K: 4, ...quantizeInt8Rows(W, 3, 4) };

describe("int8 weights", () => {
  it("per-row absmax: CB = round(127·W/rowmax), SCB = rowmax", () => {
    expect(Array.from(q.SCB)).toEqual([127 / 32, 127 / 32, 127 / 32]);
    expect(Array.from(q.CB)).toEqual(Array.from(W, (v) => v * 32));
    const d = dequantizeInt8(q);
    for (let i = 0; i < W.length; i++) expect(Math.abs(d[i]! - W[i]!)).toBeLessThanOrEqual(CONST_ROUNDING * Math.abs(W[i]!));
  });

  it("rounds half to even (torch.round), and an all-zero row stays zero", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001].map(rint)).toEqual([0, 2, 2, -0, -2, -2, 2, 3]);
    const z = quantizeInt8Rows(new Float32Array(4), 1, 4);
    expect(Array.from(z.CB)).toEqual([0, 0, 0, 0]);
    expect(z.SCB[0]).toBe(0);
  });
});

describe("outlier decomposition on hand-built matrices (threshold 6)", () => {
  // Row 0's non-outlier values sit on the grid step 1/64 with absmax 127/64: exact codes.
  const row = (v: number): Float32Array => Float32Array.from([127 / 64, -50 / 64, v, 3 / 64]);

  it.each([
    ["exactly at the threshold", 6.0],
    ["above the threshold", 6.5],
    ["far above (paper-size outlier)", 60],
  ])("outlier column %s goes to f32 and the result is exact", (_, v) => {
    const x = row(v);
    const a = quantizeActivations(x, 1, 4, 6);
    expect(Array.from(a.outlierCols)).toEqual([2]);
    expect(a.SCA[0]).toBe(127 / 64); // the outlier is excluded from the row scale
    expect(a.CA[2]).toBe(0);
    expect(maxRelErr(int8MatmulRef(x, 1, q, 6), exact(x, 1))).toBeLessThan(CONST_ROUNDING);
    // Without the decomposition the outlier sets the scale and the small features lose precision.
    expect(maxRelErr(int8MatmulRef(x, 1, q, 0), exact(x, 1))).toBeGreaterThan(1e-3);
  });

  it("a column just below the threshold stays in int8 (same result as threshold 0)", () => {
    const x = row(5.984375); // 383/64 < 6
    expect(quantizeActivations(x, 1, 4, 6).outlierCols.length).toBe(0);
    expect(Array.from(int8MatmulRef(x, 1, q, 6))).toEqual(Array.from(int8MatmulRef(x, 1, q, 0)));
    expect(maxRelErr(int8MatmulRef(x, 1, q, 6), exact(x, 1))).toBeGreaterThan(1e-3);
  });

  it("batch: a column is an outlier when ANY row crosses; small values of that column still count in their row scale (bitsandbytes)", () => {
    // Row 1 has 5.0 in column 2 (below t) while row 0 has 7 there: the whole column goes to f32,
    // but row 1's absmax is taken over its elements below t, 5.0 included (int8_vectorwise_quant).
    const x = Float32Array.from([...row(7), 0.5, -1, 5.0, 2]);
    const a = quantizeActivations(x, 2, 4, 6);
    expect(Array.from(a.outlierCols)).toEqual([2]);
    expect(Array.from(a.SCA)).toEqual([127 / 64, 5]);
    expect(a.CA[4 + 2]).toBe(0);
    const y = int8MatmulRef(x, 2, q, 6);
    const e = exact(x, 2);
    expect(maxRelErr(y.subarray(0, 3), e.subarray(0, 3))).toBeLessThan(CONST_ROUNDING);
    // Row 1: only its int8 features are rounded, at step 5/127: error ≤ ½·step·Σ|w| over them.
    const bound = 0.5 * (5 / 127) * Math.max(...[0, 1, 2].map((n) => Math.abs(W[n * 4]!) + Math.abs(W[n * 4 + 1]!) + Math.abs(W[n * 4 + 3]!)));
    for (let n = 0; n < 3; n++) expect(Math.abs(y[3 + n]! - e[3 + n]!)).toBeLessThanOrEqual(bound * (1 + 1e-6));
  });

  it("static outlier columns replace the scan and are excluded from the scale", () => {
    const x = row(60);
    const s = Int32Array.of(2);
    expect(Array.from(int8MatmulRef(x, 1, q, 0, s))).toEqual(Array.from(int8MatmulRef(x, 1, q, 6)));
  });
});

describe("threshold 0 is plain per-token dynamic int8", () => {
  it("equals an independent f64 implementation on random data", () => {
    let seed = 7;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    const M = 5, K = 37, N = 11;
    const x = Float32Array.from({ length: M * K }, () => rand() * 3);
    x[3] = 25; // a big value: with t = 0 it is an ordinary element
    const w = Float32Array.from({ length: N * K }, () => rand());
    const ql: Int8Linear = { N, K, ...quantizeInt8Rows(w, N, K) };
    const y = int8MatmulRef(x, M, ql, 0);
    const ref = plainDynamicInt8(x, M, K, w, N);
    for (let i = 0; i < ref.length; i++) expect(Math.abs(y[i]! - ref[i]!)).toBeLessThanOrEqual(2e-6 * (1 + Math.abs(ref[i]!)));
  });
});

import { describe, expect, it } from "vitest";
import { gptqQuantizeLinear, type GptqOptions } from "../../src/methods/gptq.ts";
import { rtnQuantizeLinear } from "../../src/methods/rtn.ts";
import { gptqGrid, roundEven } from "../../src/methods/grid.ts";
import { dequantize } from "../../src/tensor/quantized.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { randn } from "../helpers/random-weights.ts";
import { activations } from "../helpers/activations.ts";

function matrix(rows: number, cols: number, seed: number, f: (r: number, c: number, z: number) => number): Float32Array {
  const rand = mulberry32(seed);
  const m = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) m[r * cols + c] = f(r, c, randn(rand));
  return m;
}


function hessian(X: Float32Array, T: number, K: number): Float64Array {
  const H = new Float64Array(K * K);
  for (let t = 0; t < T; t++) for (let i = 0; i < K; i++) {
    const xi = X[t * K + i]!;
    for (let j = 0; j < K; j++) H[i * K + j] = H[i * K + j]! + (2 / T) * xi * X[t * K + j]!;
  }
  return H;
}

/** ‖X·Wᵀ − X·Qᵀ‖² / ‖X·Wᵀ‖² */
function outputError(X: Float32Array, T: number, K: number, W: Float32Array, Q: Float32Array, N: number): number {
  let num = 0, den = 0;
  for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) {
    let a = 0, b = 0;
    for (let k = 0; k < K; k++) { a += X[t * K + k]! * W[n * K + k]!; b += X[t * K + k]! * Q[n * K + k]!; }
    num += (a - b) ** 2; den += a * a;
  }
  return num / den;
}

const N = 32, K = 128, T = 2048;
const W = matrix(N, K, 1, (_r, _c, z) => 0.05 * z);
const Xcal = activations(T, K, 2);
const Xheld = activations(T, K, 3);
const H = hessian(Xcal, T, K);
const base: GptqOptions = { weight: W, rows: N, cols: K, hessian: H, bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128 };

describe("grid", () => {
  it("rounds half to even like torch.round", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(roundEven)).toEqual([0, 2, 2, -0, -2, 2, 3]);
  });
  it("symmetric and asymmetric parameters (hand-computed, 4-bit)", () => {
    expect(gptqGrid(-1.5, 0.75, 4, true)).toEqual({ scale: 0.199951171875, zero: 8 }); // 2·1.5/15 = 0.2 → f16 0.199951171875
    expect(gptqGrid(-0.5, 1, 2, false)).toEqual({ scale: 0.5, zero: 1 }); // (1 + 0.5)/3, zero = round(0.5/0.5)
    expect(gptqGrid(0.25, 1, 4, false)).toEqual({ scale: 0.066650390625, zero: 0 }); // 0 forced into the range
    expect(gptqGrid(0, 0, 4, false)).toEqual({ scale: 0.13330078125, zero: 8 }); // all-zero group → [−1, 1]
  });
});

describe("RTN", () => {
  it("codes dequantize within half a step of the weights", () => {
    const q = rtnQuantizeLinear({ weight: W, rows: N, cols: K, bits: 4, groupSize: 32, sym: false });
    const dq = dequantize(q);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
      const s = q.scales[n * 4 + Math.floor(k / 32)]!;
      // f16 rounding of the scale (≤ 2⁻¹¹ relative) moves the top of the grid by ≤ maxq·2⁻¹¹·s ≈ 0.0073·s at 4 bits
      expect(Math.abs(dq[n * K + k]! - W[n * K + k]!)).toBeLessThanOrEqual(s * (0.5 + 15 * 2 ** -11));
    }
  });
});

describe("GPTQ reference", () => {
  it("equals RTN when H is diagonal (no error to spread)", () => {
    const D = new Float64Array(K * K);
    for (let i = 0; i < K; i++) D[i * K + i] = 1 + i;
    for (const [bits, g, sym] of [[4, 32, true], [3, -1, false], [8, 64, false]] as const) {
      const gq = gptqQuantizeLinear({ ...base, hessian: D, bits, groupSize: g, sym });
      const rq = rtnQuantizeLinear({ weight: W, rows: N, cols: K, bits, groupSize: g, sym });
      expect(Array.from(gq.codes)).toEqual(Array.from(rq.codes));
      expect(Array.from(gq.scales)).toEqual(Array.from(rq.scales));
    }
  });

  it.each([
    ["4-bit g32 sym", {}],
    ["3-bit g32 asym", { bits: 3, sym: false }],
    ["4-bit per-row (g = −1)", { groupSize: -1 }],
    ["4-bit g32 act-order", { actOrder: true }],
    ["4-bit g32 act-order + static groups", { actOrder: true, staticGroups: true }],
  ])("%s: beats RTN on held-out activations, and its dequantized output is its codes", (_n, over: Partial<GptqOptions>) => {
    const o = { ...base, ...over };
    const gq = gptqQuantizeLinear(o);
    const rq = rtnQuantizeLinear({ weight: W, rows: N, cols: K, bits: o.bits, groupSize: o.groupSize, sym: o.sym });
    expect(Array.from(dequantize(gq))).toEqual(Array.from(gq.dequantized));
    const eG = outputError(Xheld, 256, K, W, gq.dequantized, N);
    const eR = outputError(Xheld, 256, K, W, dequantize(rq), N);
    expect(eG).toBeLessThan(0.8 * eR);
    expect(gq.loss).toBeGreaterThan(0);
    expect(gq.dampUsed).toBe(0.01);
  });

  it("g_idx: contiguous without act-order or with static groups, permuted with act-order", () => {
    const plain = gptqQuantizeLinear(base);
    expect(Array.from(plain.gIdx)).toEqual(Array.from({ length: K }, (_, k) => Math.floor(k / 32)));
    expect(Array.from(gptqQuantizeLinear({ ...base, actOrder: true, staticGroups: true }).gIdx)).toEqual(Array.from(plain.gIdx));
    const ao = gptqQuantizeLinear({ ...base, actOrder: true });
    // columns with the largest H[i,i] come first, i.e. land in group 0
    const diag = Array.from({ length: K }, (_, i) => H[i * K + i]!);
    const top = diag.map((d, i) => [d, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 32).map(([, i]) => i);
    for (const i of top) expect(ao.gIdx[i]).toBe(0);
    expect(new Set(ao.gIdx).size).toBe(4);
  });

  it("dead input columns are zeroed", () => {
    const Hd = H.slice();
    for (const i of [5, 77]) for (let j = 0; j < K; j++) { Hd[i * K + j] = 0; Hd[j * K + i] = 0; }
    const gq = gptqQuantizeLinear({ ...base, hessian: Hd, sym: false });
    for (let n = 0; n < N; n++) { expect(gq.dequantized[n * K + 5]).toBe(0); expect(gq.dequantized[n * K + 77]).toBe(0); }
  });

  it("raises the damping until the Cholesky succeeds, and reports it", () => {
    // [[1, 1.02], [1.02, 1]] has eigenvalue −0.02: needs damp > 0.02 → 0.01 + 5·0.0025
    const H2 = new Float64Array([1, 1.02, 1.02, 1]);
    const r = gptqQuantizeLinear({ ...base, weight: new Float32Array([0.3, -0.2]), rows: 1, cols: 2, hessian: H2, groupSize: -1 });
    expect(r.dampUsed).toBeCloseTo(0.0225, 10);
  });
});

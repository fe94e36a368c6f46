import { describe, expect, it } from "vitest";
import { mulberry32 } from "../../src/util/random.ts";
import { AWQ_ORDER, AWQ_REVERSE_ORDER, awqGemmShapeProblem, packAwqGemm, unpackAwqGemm } from "../../src/pack/awq-gemm.ts";
import { awqQuantizeLinear } from "../../src/methods/awq-grid.ts";
import { awqGrid } from "../../src/methods/awq-grid.ts";
import { toF16 } from "../../src/methods/grid.ts";
import { contiguousGIdx, dequantize, type QuantizedLinear } from "../../src/tensor/quantized.ts";
import { FormatError, UsageError } from "../../src/util/errors.ts";
import { randn } from "../helpers/random-weights.ts";

function randomQuantized(N: number, K: number, g: number, seed: number): QuantizedLinear {
  const rand = mulberry32(seed);
  const G = K / g;
  return {
    N, K, bits: 4, groupSize: g, sym: false,
    codes: Uint8Array.from({ length: N * K }, () => Math.floor(rand() * 16)),
    scales: Float32Array.from({ length: N * G }, () => toF16(1e-3 + 0.05 * rand())),
    zeros: Uint8Array.from({ length: N * G }, () => Math.floor(rand() * 16)),
    gIdx: contiguousGIdx(K, g),
  };
}

describe("AWQ GEMM nibble order", () => {
  it("the two orders are inverse permutations", () => {
    for (let m = 0; m < 8; m++) expect(AWQ_ORDER[AWQ_REVERSE_ORDER[m]!]).toBe(m);
  });

  it("matches a hand-packed word (qweight and qzeros)", () => {
    // N = 8 output columns, K = g = 4. Input row k = 0 holds codes 1..8 in columns 0..7.
    const q = randomQuantized(8, 4, 4, 1);
    for (let n = 0; n < 8; n++) { q.codes[n * 4 + 0] = n + 1; q.zeros[n] = 15 - n; }
    const t = packAwqGemm(q);
    // Nibble i (bits 4i..4i+3) holds column ORDER[i] = 0,2,4,6,1,3,5,7:
    //   codes   col: 1 2 3 4 5 6 7 8 → nibbles 0..7 = 1,3,5,7,2,4,6,8 → 0x86427531
    //   zeros   col: F E D C B A 9 8 → nibbles 0..7 = F,D,B,9,E,C,A,8 → 0x8ACE9BDF
    expect(t.qweight.length).toBe(4); // [K, N/8] = [4, 1]
    expect(t.qweight[0]! >>> 0).toBe(0x86427531);
    expect(t.qweight[0]).toBe(0x86427531 | 0); // as stored: a negative int32
    expect(t.qzeros[0]! >>> 0).toBe(0x8ace9bdf);
  });
});

describe("AWQ GEMM pack ∘ unpack", () => {
  for (const [N, K, g] of [[64, 256, 32], [64, 256, 128], [24, 96, 96], [8, 16, 8]] as const) {
    it(`identity on random codes, N=${N} K=${K} g=${g}`, () => {
      const q = randomQuantized(N, K, g, N + K + g);
      const t = packAwqGemm(q);
      expect([t.qweight.length, t.qzeros.length, t.scales.length]).toEqual([K * N / 8, (K / g) * N / 8, (K / g) * N]);
      const u = unpackAwqGemm(t, { N, K, groupSize: g });
      expect(u.codes).toEqual(q.codes);
      expect(u.scales).toEqual(q.scales);
      expect(u.zeros).toEqual(q.zeros);
      expect(u.gIdx).toEqual(q.gIdx);
      expect(dequantize(u)).toEqual(dequantize(q));
    });
  }

  it("dequantizes as W[n,k] = (q[k,n] − z[k/g,n])·s[k/g,n] read straight from the tensors", () => {
    const N = 16, K = 64, g = 32;
    const q = randomQuantized(N, K, g, 5);
    const t = packAwqGemm(q);
    const W = dequantize(unpackAwqGemm(t, { N, K, groupSize: g }));
    const nib = (word: number, n: number): number => (word >>> (4 * AWQ_REVERSE_ORDER[n % 8]!)) & 0xf;
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
      const code = nib(t.qweight[k * (N / 8) + Math.floor(n / 8)]!, n);
      const zero = nib(t.qzeros[Math.floor(k / g) * (N / 8) + Math.floor(n / 8)]!, n);
      const s = halfToNumber(t.scales[Math.floor(k / g) * N + n]!);
      expect(W[n * K + k]).toBe(Math.fround((code - zero) * s));
    }
  });
});

/** IEEE half → number, written independently of src/tensor/dtype.ts. */
function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

describe("AWQ GEMM constraints", () => {
  it("reports unpackable shapes", () => {
    expect(awqGemmShapeProblem(64, 128, 4, 128)).toBeNull();
    expect(awqGemmShapeProblem(64, 128, 3, 128)).toMatch(/4-bit/);
    expect(awqGemmShapeProblem(12, 128, 4, 128)).toMatch(/multiple of 8/);
    expect(awqGemmShapeProblem(64, 96, 4, 64)).toMatch(/multiple of the group size/);
    expect(awqGemmShapeProblem(64, 128, 4, -1)).toMatch(/positive group size/);
  });

  it("pack refuses them with a UsageError, and non-contiguous groups too", () => {
    expect(() => packAwqGemm({ ...randomQuantized(8, 16, 8, 1), bits: 3 })).toThrow(UsageError);
    expect(() => packAwqGemm(randomQuantized(12, 16, 8, 1))).toThrow(/multiple of 8/);
    const q = randomQuantized(8, 16, 8, 1);
    q.gIdx[0] = 1;
    expect(() => packAwqGemm(q)).toThrow(/g_idx/);
  });

  it("unpack refuses tensors of the wrong size with a FormatError", () => {
    const t = packAwqGemm(randomQuantized(16, 64, 32, 2));
    expect(() => unpackAwqGemm(t, { N: 16, K: 64, groupSize: 16, name: "model.layers.0.mlp.up_proj" })).toThrow(FormatError);
    expect(() => unpackAwqGemm({ ...t, qweight: t.qweight.subarray(1) }, { N: 16, K: 64, groupSize: 32 })).toThrow(/qweight/);
  });
});

describe("AWQ grid (awqQuantizeLinear)", () => {
  it("uses the group's own min and max (0 not forced in), f16 scale, clamped zero", () => {
    // [0.25, 1]: scale = 0.75/15 = 0.05 → f16 0.0499877929...; zero = clamp(−round(5), 0, 15) = 0.
    expect(awqGrid(0.25, 1, 4)).toEqual({ scale: 0.04998779296875, zero: 0 });
    // [−0.3, 0.9]: scale = 0.08 → f16 0.08001708984375; zero = −round(−3.749...) = 4.
    expect(awqGrid(-0.3, 0.9, 4)).toEqual({ scale: 0.08001708984375, zero: 4 });
    // a flat group: the range is clamped to 1e-5 before dividing (never a zero scale).
    expect(awqGrid(0.5, 0.5, 4).scale).toBe(toF16(1e-5 / 15));
  });

  it("codes dequantize within half a step, and pack/unpack preserves them", () => {
    const rand = mulberry32(11);
    const N = 32, K = 128, g = 32, G = 4;
    const W = Float32Array.from({ length: N * K }, () => 0.05 * randn(rand));
    const q = awqQuantizeLinear({ weight: W, rows: N, cols: K, bits: 4, groupSize: g });
    expect(q.sym).toBe(false);
    expect(q.gIdx).toEqual(contiguousGIdx(K, g));
    const dq = dequantize(q);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
      const s = q.scales[n * G + Math.floor(k / g)]!;
      // f16 rounding of the scale (≤ 2⁻¹¹ relative) can push the top code over maxq by ≤ 15·2⁻¹¹ of a step.
      expect(Math.abs(dq[n * K + k]! - W[n * K + k]!)).toBeLessThanOrEqual(s * (0.5 + 15 * 2 ** -11) + 1e-7);
    }
    const u = unpackAwqGemm(packAwqGemm(q), { N, K, groupSize: g });
    expect(u.codes).toEqual(q.codes);
    expect(u.zeros).toEqual(q.zeros);
    expect(u.scales).toEqual(q.scales);
  });
});

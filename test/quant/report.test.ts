/**
 * The cheap relative output error after GPTQ (numerator 2·loss − λ·‖D‖², quantize/report.ts)
 * equals the direct tr(D·H·Dᵀ) / tr(W·H·Wᵀ), on both GPTQ paths, with dead input columns,
 * act-order, static groups and raised damping.
 */
import { describe, expect, it } from "vitest";
import { createNativeBackend } from "../../src/backend/native.ts";
import { refBackend } from "../../src/backend/ref.ts";
import { gptqQuantizeLinear, type GptqOptions } from "../../src/methods/gptq.ts";
import { gptqQuantizeLinearFast } from "../../src/methods/gptq-fast.ts";
import { relOutputError, relOutputErrorAsync } from "../../src/quantize/report.ts";
import { mulberry32 } from "../../src/util/random.ts";

const N = 48, K = 160, T = 400;
const r = mulberry32(9);
const X = new Float32Array(T * K).map((_, i) => (r() - 0.5) * (i % K % 5 === 0 ? 4 : 1)); // [T, K], uneven channels
for (let t = 0; t < T; t++) for (const d of [3, 100]) X[t * K + d] = 0; // dead input columns
const H = new Float64Array(K * K); // [K, K] = 2/T · XᵀX
for (let t = 0; t < T; t++) for (let i = 0; i < K; i++) { const a = X[t * K + i]!; if (a !== 0) for (let j = 0; j < K; j++) H[i * K + j]! += (2 / T) * a * X[t * K + j]!; }
const W = new Float32Array(N * K).map(() => r() - 0.5); // [N, K]
const base: GptqOptions = { weight: W, rows: N, cols: K, hessian: H, bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 64 };
const nb = createNativeBackend({ threads: 1 });

describe("relative output error from GPTQ's loss", () => {
  it.each([
    ["4-bit g32", {}],
    ["3-bit asym act-order", { bits: 3, sym: false, actOrder: true }],
    ["act-order + static groups", { actOrder: true, staticGroups: true }],
    ["damp 0.2", { damp: 0.2 }],
  ] as [string, Partial<GptqOptions>][])("%s: equals tr(D·H·Dᵀ) / tr(W·H·Wᵀ)", async (_n, over) => {
    const o = { ...base, ...over };
    for (const res of [gptqQuantizeLinear(o), gptqQuantizeLinearFast({ ...o, backend: nb })]) {
      const direct = relOutputError(refBackend, W, res.dequantized, H, N, K);
      const cheap = relOutputError(refBackend, W, res.dequantized, H, N, K, res);
      const cheapAsync = await relOutputErrorAsync(nb, W, res.dequantized, H, N, K, {}, res);
      expect(direct).toBeGreaterThan(1e-4);
      expect(Math.abs(cheap / direct - 1)).toBeLessThan(1e-5);
      expect(Math.abs(cheapAsync / direct - 1)).toBeLessThan(1e-5);
    }
  });

  it("is not the same number for a Q that GPTQ did not produce (the identity needs GPTQ's loss)", () => {
    const res = gptqQuantizeLinear(base);
    const other = Float32Array.from(res.dequantized, (v, i) => (i % 7 === 0 ? v + 0.05 : v));
    const direct = relOutputError(refBackend, W, other, H, N, K);
    expect(Math.abs(relOutputError(refBackend, W, other, H, N, K, res) / direct - 1)).toBeGreaterThan(1e-2);
  });
});

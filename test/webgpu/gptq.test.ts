/**
 * GPTQ's lazy-batch sweep on the GPU (GpuGptq, kernels/gptq.wgsl) against the CPU kernel it
 * mirrors (native/src/gptq.cc through gptqQuantizeLinearFast, one thread), on small odd shapes:
 * N odd, K not a multiple of the block nor of the group nor of the 64-wide tiles; every grid rule
 * (dynamic "current" and "block-start", static, per row, act-order, dead columns).
 *
 * On Mesa lavapipe (software Vulkan: LLVM, no FMA contraction) every code, scale and zero point
 * is IDENTICAL to the CPU's in every case below (measured 2026-12-03; the loss differs by ≤ 1e-5
 * relative: f32 Kahan sums per row against f64), and the test asserts exactly that on a software
 * adapter. A hardware GPU may fuse w − e·h into an FMA or divide to 2.5 ulp
 * (src/methods/gptq-webgpu.ts), so there the named bounds apply: g_idx, damping, static grids
 * and — with no error to spread (diagonal H) — every code identical; otherwise codes agree on
 * ≥ CODE_AGREEMENT_MIN, dynamic scales are identical on ≥ SCALE_AGREEMENT_MIN of the (row,
 * group) grids and within SCALE_REL_TOL everywhere, loss within LOSS_REL_TOL.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNativeBackend, type NativeBackend } from "../../src/backend/native.ts";
import { refBackend, refSyrkAccumulate } from "../../src/backend/ref.ts";
import type { GpuContext } from "../../src/backend/webgpu-device.ts";
import type { GptqOptions, GptqResult } from "../../src/methods/gptq.ts";
import { gptqQuantizeLinearAsync, gptqQuantizeLinearFast } from "../../src/methods/gptq-fast.ts";
import { GpuGptq, gptqBlockEnds } from "../../src/methods/gptq-webgpu.ts";
import { dequantize } from "../../src/tensor/quantized.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { activations } from "../helpers/activations.ts";
import { randn } from "../helpers/random-weights.ts";
import { tryOpenGpu } from "./gpu.ts";

/** Codes equal to the CPU kernel's on a hardware GPU, at least this fraction (the CPU kernel's own bound against the f64 reference). */
const CODE_AGREEMENT_MIN = 0.995;
/** Dynamic (row, group) scales bit-identical to the CPU's, at least this fraction. */
const SCALE_AGREEMENT_MIN = 0.99;
/** |s_gpu − s_cpu| ≤ this · s_cpu for every scale (a flip moves a later group's range by about one step). */
const SCALE_REL_TOL = 0.25;
/** |loss_gpu − loss_cpu| ≤ this · loss_cpu. */
const LOSS_REL_TOL = 0.01;
/** The same on lavapipe, where the weights are bit-identical and only the loss's summation differs (measured ≤ 1e-5). */
const LOSS_REL_TOL_SOFTWARE = 1e-4;

function weights(N: number, K: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: N * K }, () => 0.05 * randn(rand));
}

function hessianOf(X: Float32Array, T: number, K: number): Float32Array {
  const H = new Float32Array(K * K);
  refSyrkAccumulate(X, T, K, H, 2 / T, 1);
  return H;
}

function agreement(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (Object.is(a[i], b[i])) same++;
  return same / a.length;
}

function expectSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  expect(agreement(got, want), what).toBe(1);
  expect(got.length, what).toBe(want.length);
}

const N = 37, K = 200, T = 256;

describe("GPTQ sweep on the GPU", () => {
  let ctx: GpuContext | null = null;
  let gpu: GpuGptq | null = null;
  let nb: NativeBackend;
  let W: Float32Array, H: Float32Array;
  beforeAll(async () => {
    ctx = await tryOpenGpu();
    if (ctx) gpu = await GpuGptq.open(ctx);
    nb = createNativeBackend({ threads: 1 });
    W = weights(N, K, 5);
    H = hessianOf(activations(T, K, 4), T, K);
  });
  afterAll(() => { gpu?.destroy(); ctx?.device.destroy(); });

  const base = (over: Partial<GptqOptions>): GptqOptions => ({
    weight: W, rows: N, cols: K, hessian: H, bits: 4, groupSize: 32, sym: true,
    actOrder: false, staticGroups: false, damp: 0.01, blockSize: 64, ...over,
  });

  function compare(o: GptqOptions, got: GptqResult, want: GptqResult, what: string): { codes: number; scales: number; loss: number } {
    expect(got.dampUsed, what).toBe(want.dampUsed);
    expectSame(got.gIdx, want.gIdx, `${what}: g_idx`);
    expectSame(dequantize(got), got.dequantized, `${what}: dequantized = its codes`);
    const codes = agreement(got.codes, want.codes);
    if (ctx!.info.software) {
      expectSame(got.codes, want.codes, `${what}: codes (software adapter)`);
      expectSame(got.scales, want.scales, `${what}: scales (software adapter)`);
      expectSame(got.zeros, want.zeros, `${what}: zeros (software adapter)`);
      expect(Math.abs(got.loss - want.loss), `${what}: loss (software adapter)`).toBeLessThanOrEqual(LOSS_REL_TOL_SOFTWARE * want.loss);
    }
    const scales = agreement(got.scales, want.scales);
    let worst = 0;
    for (let i = 0; i < want.scales.length; i++) worst = Math.max(worst, Math.abs(got.scales[i]! - want.scales[i]!) / want.scales[i]!);
    if (o.staticGroups) { expectSame(got.scales, want.scales, `${what}: static scales`); expectSame(got.zeros, want.zeros, `${what}: static zeros`); }
    expect(codes, `${what}: codes agreement`).toBeGreaterThanOrEqual(CODE_AGREEMENT_MIN);
    expect(scales, `${what}: scales agreement`).toBeGreaterThanOrEqual(SCALE_AGREEMENT_MIN);
    expect(worst, `${what}: worst scale difference`).toBeLessThanOrEqual(SCALE_REL_TOL);
    const loss = Math.abs(got.loss - want.loss) / want.loss;
    expect(loss, `${what}: loss ${got.loss} vs ${want.loss}`).toBeLessThanOrEqual(LOSS_REL_TOL);
    return { codes, scales, loss };
  }

  it.for([
    ["4-bit g32 sym, block 64", {}],
    ["3-bit g32 asym", { bits: 3, sym: false }],
    ["8-bit g64 asym", { bits: 8, groupSize: 64, sym: false }],
    ["4-bit per row (g = −1), block 48", { groupSize: -1, blockSize: 48 }],
    ["4-bit g32 act-order", { actOrder: true, sym: false }],
    ["4-bit g32 act-order + static groups", { actOrder: true, staticGroups: true, sym: false }],
    ["4-bit g16 block-start grids, block 48", { groupSize: 16, blockSize: 48, groupGrid: "block-start" }],
    ["4-bit g128 act-order, block 100 (groups reach past blocks)", { groupSize: 128, blockSize: 100, actOrder: true }],
  ] as [string, Partial<GptqOptions>][])("%s: within the bounds of the CPU kernel", async ([name, over], t) => {
    if (gpu === null) return t.skip();
    const o = base(over);
    const got = await gptqQuantizeLinearAsync({ ...o, backend: nb, sweep: gpu });
    const r = compare(o, got, gptqQuantizeLinearFast({ ...o, backend: nb }), name);
    process.stderr.write(`gptq gpu vs cpu, ${name}: codes ${(100 * r.codes).toFixed(2)}% identical, scales ${(100 * r.scales).toFixed(2)}%, loss ${r.loss.toExponential(2)} relative\n`);
  });

  it("every code and grid identical when H is diagonal (no error to spread), with a dead column", async (t) => {
    if (gpu === null) return t.skip();
    const rand = mulberry32(7);
    const Hd = new Float32Array(K * K);
    for (let i = 0; i < K; i++) Hd[i * K + i] = i === 3 ? 0 : 0.5 + rand();
    for (const over of [{ sym: false }, { actOrder: true }, { groupGrid: "block-start" as const, groupSize: 16, blockSize: 48 }]) {
      const o = { ...base(over), hessian: Hd };
      const got = await gptqQuantizeLinearAsync({ ...o, backend: nb, sweep: gpu });
      const want = gptqQuantizeLinearFast({ ...o, backend: nb });
      expectSame(got.codes, want.codes, `codes ${JSON.stringify(over)}`);
      expectSame(got.scales, want.scales, `scales ${JSON.stringify(over)}`);
      expectSame(got.zeros, want.zeros, `zeros ${JSON.stringify(over)}`);
      expect(Math.abs(got.loss - want.loss)).toBeLessThanOrEqual(1e-5 * want.loss);
    }
  });

  it("runs on a backend without GPTQ kernels (the TS Hinv) with the same result", async (t) => {
    if (gpu === null) return t.skip();
    const o = base({});
    const a = await gptqQuantizeLinearAsync({ ...o, backend: refBackend, sweep: gpu });
    compare(o, a, gptqQuantizeLinearFast({ ...o, backend: nb }), "ref backend's Hinv");
  });

  it("cuts blocks like the native kernel", () => {
    expect(gptqBlockEnds(200, 64, 32, true)).toEqual([64, 128, 192, 200]);
    expect(gptqBlockEnds(300, 100, 128, true)).toEqual([100, 128, 228, 300]);
    expect(gptqBlockEnds(200, 48, 16, false)).toEqual([48, 96, 144, 192, 200]);
  });
});

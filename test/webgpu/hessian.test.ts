/**
 * GPTQ's Hessian on the GPU (src/methods/gptq-webgpu.ts, kernels/syrk.wgsl) against the CPU's
 * running average (HessianAccumulatorF32 on the plain-TS backend): K not a multiple of the
 * 16-wide tile, T not a multiple of the 16-row stage, sequences of different lengths.
 * Tolerance HESS_F32 relative to √(H_ii·H_jj) (≥ |H_ij|, the scale of the f32 sums' rounding).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refBackend } from "../../src/backend/ref.ts";
import type { GpuContext } from "../../src/backend/webgpu-device.ts";
import { HessianAccumulatorF32 } from "../../src/methods/gptq-fast.ts";
import { GpuHessianAccumulator } from "../../src/methods/gptq-webgpu.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { randomArray } from "../helpers/random-weights.ts";
import { tryOpenGpu } from "./gpu.ts";

const HESS_F32 = 1e-5;

describe("GPTQ Hessian on the GPU", () => {
  let ctx: GpuContext | null = null;
  beforeAll(async () => { ctx = await tryOpenGpu(); });
  afterAll(() => ctx?.device.destroy());

  it("equals HessianAccumulatorF32 (K 200, T 37/16/50, 3 sequences)", async (t) => {
    if (ctx === null) return t.skip();
    const K = 200, lengths = [37, 16, 50];
    const gpu = await GpuHessianAccumulator.create(ctx, K, 50);
    const cpu = new HessianAccumulatorF32(K);
    const rand = mulberry32(3);
    for (const T of lengths) {
      const x = randomArray(T * K, 1, rand); // [T, K]
      cpu.add(refBackend, x, T);
      gpu.add(x, T);
    }
    const h = await gpu.hessian(), ref = cpu.hessian();
    gpu.destroy();
    expect(gpu.count).toBe(3);
    let worst = 0;
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) {
      worst = Math.max(worst, Math.abs(h[i * K + j]! - ref[i * K + j]!) / Math.sqrt(ref[i * K + i]! * ref[j * K + j]!));
    }
    expect(worst).toBeLessThan(HESS_F32);
    expect(worst).toBeGreaterThanOrEqual(0);
    expect(h[0]).toBeGreaterThan(0);
  });
});

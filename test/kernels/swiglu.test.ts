/**
 * The native SwiGLU activation (native/src/elementwise.cc, kernel_impl.h swiglu) against
 * nn/block.ts's TS formula g / (1 + exp(−g))·u in f64, for every kernel level this CPU
 * runs, and every fast level against the scalar level (expf). Lengths are odd on purpose
 * (tails of the 8 / 16 lanes) and one is past the pool threshold (two threads split it).
 */
import { afterAll, describe, expect, it } from "vitest";
import { createNativeBackend, type KernelLevel } from "../../src/backend/native.ts";
import { UsageError } from "../../src/util/errors.ts";
import { rng } from "./packed-ref.ts";

const nb = createNativeBackend({ threads: 2 });
const levels: KernelLevel[] = nb.kernelLevels();
afterAll(() => { nb.setKernelLevel(levels[0]!); });

/** The Cephes exp of the SIMD levels is within ~2 ulp; division and product add one rounding each. */
const REL_TOL_VS_F64 = 8 * 2 ** -23;
/** Plus an absolute allowance: silu(g) → 0 as g → −∞, where the clamp of exp's argument gives g/1.65e38 (≤ 1e-35 here). */
const ABS_TOL = 1e-30;

function inputs(n: number, seed: number): { g: Float32Array; u: Float32Array } {
  const r = rng(seed);
  const g = Float32Array.from({ length: n }, () => (r() * 2 - 1) * 12);
  const u = Float32Array.from({ length: n }, () => (r() * 2 - 1) * 3);
  // the extremes: exp's clamp (g ≤ −88), saturation (g ≥ 88), zero, and tiny values
  const special = [-1000, -89, -88, -87.5, -50, -1e-8, 0, 1e-8, 50, 88, 89, 1000];
  for (let i = 0; i < special.length && i < n; i++) g[i] = special[i]!;
  return { g, u };
}

function refSwiglu(g: Float32Array, u: Float32Array): Float64Array {
  return Float64Array.from(g, (a, i) => (a / (1 + Math.exp(-a))) * u[i]!);
}

describe.each(levels)("swiglu on %s", (level) => {
  it.each([1, 7, 17, 5632, 70001])("n = %i equals the f64 formula and the scalar level", (n) => {
    const { g, u } = inputs(n, n);
    const want = refSwiglu(g, u);
    nb.setKernelLevel(level);
    const got = g.slice();
    nb.swiglu(got, u, n);
    nb.setKernelLevel("scalar");
    const scalar = g.slice();
    nb.swiglu(scalar, u, n);
    // excess over the allowance (≤ 0: within it), against f64 and against the scalar level
    let worst = -Infinity, worstScalar = -Infinity;
    for (let i = 0; i < n; i++) {
      worst = Math.max(worst, Math.abs(got[i]! - want[i]!) - (REL_TOL_VS_F64 * Math.abs(want[i]!) + ABS_TOL));
      worstScalar = Math.max(worstScalar, Math.abs(got[i]! - scalar[i]!) - (REL_TOL_VS_F64 * Math.abs(scalar[i]!) + ABS_TOL));
    }
    expect(worst).toBeLessThanOrEqual(0);
    expect(worstScalar).toBeLessThanOrEqual(0);
    expect(got.every(Number.isFinite)).toBe(true);
  });
});

it("swiglu leaves elements past n alone and refuses bad arguments", () => {
  const g = new Float32Array([1, 2, 3]), u = new Float32Array([1, 1, 1]);
  nb.swiglu(g, u, 2);
  expect(g[2]).toBe(3);
  expect(() => nb.swiglu(g, u, 4)).toThrow(UsageError);
  expect(() => nb.swiglu(g, g, 3)).toThrow(/overlaps/);
});

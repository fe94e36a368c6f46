/**
 * BlockContext.exactElementwise: the quantizers' calibration forwards compute silu(gate)·up by
 * the plain f64 formula even on a backend with a SIMD swiglu kernel, so quantized output bytes
 * do not depend on the CPU's SIMD level (the kernel's f32 exp differs in the last bits between
 * levels and from Math.exp). With the flag, the native backend's MLP half must give the same
 * bits as the same backend without its swiglu kernel; without it, the kernel is used (and the
 * two differ somewhere, or this test would not be telling the cases apart).
 */
import { afterAll, expect, it } from "vitest";
import { createNativeBackend } from "../../src/backend/native.ts";
import type { Backend } from "../../src/backend/backend.ts";
import { blockForward, mlpHalf, type BlockContext } from "../../src/nn/block.ts";
import { KvCache } from "../../src/nn/model.ts";
import { RopeTable } from "../../src/nn/rope.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { withoutSwiglu } from "../helpers/without-swiglu.ts";
import { randomArray, randomWeights, tinyConfig } from "../helpers/random-weights.ts";

const nb = createNativeBackend({ threads: 2 });
afterAll(() => { nb.setKernelLevel(nb.kernelLevels()[0]!); });

const noKernel = withoutSwiglu(nb);

function sameBits(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) diff++;
  return diff;
}

it.each(nb.kernelLevels())("exactElementwise mlpHalf on %s equals the f64 formula bit for bit", (level) => {
  nb.setKernelLevel(level);
  const cfg = tinyConfig({});
  const w = randomWeights(cfg, 5).blocks[0]!;
  const T = 9, H = cfg.hiddenSize;
  const xm = randomArray(T * H, 3, mulberry32(11)); // [T, H], wide enough that silu's exp sees large |g|
  const rope = new RopeTable(cfg);
  const ctx = (backend: Backend, exact: boolean): BlockContext => ({ cfg, backend, rope, exactElementwise: exact });
  const want = mlpHalf(ctx(noKernel, false), 0, w.linears, xm, T); // [T, H]
  const exact = mlpHalf(ctx(nb, true), 0, w.linears, xm, T);
  expect(sameBits(exact, want)).toBe(0);
  // The MLP activation itself (the tensor GPTQ's down_proj Hessian is built from), tapped.
  let actKernel: Float32Array | null = null, actExact: Float32Array | null = null;
  mlpHalf({ ...ctx(nb, false), tap: (ev) => { if (ev.input === "mlp_act") actKernel = ev.x.slice(); } }, 0, w.linears, xm, T);
  mlpHalf({ ...ctx(nb, true), tap: (ev) => { if (ev.input === "mlp_act") actExact = ev.x.slice(); } }, 0, w.linears, xm, T);
  expect(actKernel).not.toBeNull();
  expect(actExact).not.toBeNull();
  expect(sameBits(actKernel!, actExact!)).toBeGreaterThan(0);
});

it.each(nb.kernelLevels())("exactElementwise blockForward on %s (norms, RoPE, residuals, f16 KV rows) equals the TS code bit for bit", (level) => {
  nb.setKernelLevel(level);
  const cfg = tinyConfig({});
  const w = randomWeights(cfg, 6).blocks[0]!;
  const T = 5, H = cfg.hiddenSize, pos0 = 3;
  const x = randomArray(T * H, 1, mulberry32(12)); // [T, H]
  const rope = new RopeTable(cfg);
  const run = (backend: Backend, exact: boolean): { y: Float32Array; k: Uint16Array } => {
    const cache = new KvCache(cfg, pos0 + T, "f16");
    const y = blockForward({ cfg, backend, rope, exactElementwise: exact }, 0, w, x, T, pos0, cache.layers[0]!);
    return { y, k: cache.layers[0]!.k as Uint16Array };
  };
  const want = run(noKernel, false), exact = run(nb, true), fast = run(nb, false);
  expect(sameBits(exact.y, want.y)).toBe(0);
  expect(exact.k.every((b, i) => b === want.k[i])).toBe(true);
  expect(sameBits(fast.y, want.y)).toBeGreaterThan(0); // the kernels did run
});

/**
 * Shared by the WebGPU tests: open the device once per file. Under CI (CI=true) or with
 * QLLM_REQUIRE_GPU=1 a missing adapter FAILS the tests (CI installs lavapipe); elsewhere the
 * files are skipped with the reason printed.
 */
import { openGpu, type GpuContext } from "../../src/backend/webgpu-device.ts";

export const requireGpu = process.env["CI"] === "true" || process.env["QLLM_REQUIRE_GPU"] === "1";

export async function tryOpenGpu(subgroups = true): Promise<GpuContext | null> {
  try {
    return await openGpu({ choice: "gpu", subgroups });
  } catch (e) {
    if (requireGpu) throw e;
    const hint = (e as { details?: { hint?: string } }).details?.hint;
    process.stderr.write(`WebGPU tests skipped: ${(e as Error).message.split("\n")[0]}${hint ? ` (fix: ${hint})` : ""}\n`);
    return null;
  }
}

/** max |a − b| / scale, with scale[i] the size the error is measured against. */
export function maxRelErr(a: Float32Array, b: Float32Array, scale: Float32Array | number): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const s = typeof scale === "number" ? scale : scale[i]!;
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(s, 1e-30));
  }
  if (a.length !== b.length) return Infinity;
  return worst;
}

/** Σ_k |x[m, k]·w[n, k]| per output: the scale of a dot product's rounding error. */
export function dotScale(x: Float32Array, w: Float32Array, M: number, K: number, N: number): Float32Array {
  const s = new Float32Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let a = 0;
    for (let k = 0; k < K; k++) a += Math.abs(x[m * K + k]! * w[n * K + k]!);
    s[m * N + n] = a;
  }
  return s;
}

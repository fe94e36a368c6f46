/**
 * Native calls off the JS thread (native/src/async.h): the async variants give the
 * same bits as the synchronous calls, keep the event loop running, report progress,
 * and stop promptly when their AbortSignal fires (the promise rejects with the
 * signal's reason). Plus the AWQ kernels (native/src/awq.cc) against their
 * TypeScript specification (src/methods/awq-clip.ts, awq-grid.ts), bit for bit.
 */
import { describe, expect, it } from "vitest";
import { createNativeBackend } from "../src/backend/native.ts";
import { mulberry32 } from "../src/util/random.ts";
import { awqClipSearchLayer } from "../src/methods/awq-clip.ts";
import { awqFakeQuantize, awqScaledFakeQuantize } from "../src/methods/awq-grid.ts";
import { UsageError } from "../src/util/errors.ts";
import { activations } from "./helpers/activations.ts";
import { randomArray } from "./helpers/random-weights.ts";

const nb = createNativeBackend({ threads: 1 });

function countDiffs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) d++;
  return d;
}

/** A GPTQ problem of N×K with a well-conditioned Hinv (from structured activations). */
async function gptqProblem(N: number, K: number) {
  const T = 2 * K;
  const x = activations(T, K, 3);
  const H = new Float32Array(K * K);
  await nb.syrkAccumulateAsync(x, T, K, H, 2 / T, 0);
  const diag = new Float64Array(K);
  let mean = 0;
  for (let i = 0; i < K; i++) mean += H[i * K + i]! / K;
  for (let i = 0; i < K; i++) diag[i] = H[i * K + i]! + 0.01 * mean;
  const hinv = new Float32Array(K * K);
  expect(await nb.gptqHinvAsync(H, K, null, diag, hinv)).toBe(true);
  const w = randomArray(N * K, 0.05, mulberry32(7));
  const G = K / 128;
  const args = () => ({
    w, perm: null, dead: null, hinv, N, K, bits: 4, groupSize: 128, sym: true, colGroup: null,
    scales: new Float32Array(N * G), zeros: new Uint8Array(N * G), codes: new Uint8Array(N * K), dequantized: new Float32Array(N * K), blockSize: 128,
  });
  return { x, T, H, diag, hinv, args };
}

describe("async native calls", () => {
  it("give the same bits as the synchronous calls", async () => {
    const K = 384, N = 256;
    const p = await gptqProblem(N, K);
    const H2 = new Float32Array(K * K);
    nb.syrkAccumulate(p.x, p.T, K, H2, 2 / p.T, 0);
    expect(countDiffs(p.H, H2)).toBe(0);
    const hinv2 = new Float32Array(K * K);
    expect(nb.gptqHinv(p.H, K, null, p.diag, hinv2)).toBe(true);
    expect(countDiffs(p.hinv, hinv2)).toBe(0);
    const a = p.args(), b = p.args();
    const la = await nb.gptqQuantizeAsync(a);
    expect(la).toBe(nb.gptqQuantize(b));
    expect(countDiffs(a.codes, b.codes)).toBe(0);
    expect(countDiffs(a.dequantized, b.dequantized)).toBe(0);
    const y = await nb.matmulAsync(p.x, a.w, 64, K, N);
    expect(countDiffs(y, nb.matmul(p.x, a.w, 64, K, N))).toBe(0);
  });

  it("keep the event loop running, report progress, and honour an abort within the call", async () => {
    const K = 1024, N = 1024;
    const p = await gptqProblem(N, K);
    // Uninterrupted: progress reaches its total, timers fire while the sweep runs.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const seen: [number, number][] = [];
    const t0 = performance.now();
    await nb.gptqQuantizeAsync(p.args(), { onProgress: (d, t) => seen.push([d, t]) });
    const full = performance.now() - t0;
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
    if (seen.length > 0) expect(seen.every(([d, t]) => d <= t && t > 0)).toBe(true);
    // Aborted after a tenth of that: rejects with the reason, well before the full time.
    const ac = new AbortController();
    const reason = new Error("stop now");
    setTimeout(() => ac.abort(reason), Math.max(1, full / 10));
    const t1 = performance.now();
    await expect(nb.gptqQuantizeAsync(p.args(), { signal: ac.signal })).rejects.toBe(reason);
    expect(performance.now() - t1).toBeLessThan(full * 0.8 + 20);
    // Already aborted: rejects without starting.
    await expect(nb.gptqHinvAsync(p.H, K, null, p.diag, new Float32Array(K * K), { signal: ac.signal })).rejects.toBe(reason);
    await expect(nb.syrkAccumulateAsync(p.x, p.T, K, new Float32Array(K * K), 1, 0, { signal: ac.signal })).rejects.toBe(reason);
  });

  it("validate their arguments before starting", async () => {
    await expect(nb.matmulAsync(new Float32Array(3), new Float32Array(4), 2, 2, 2)).rejects.toThrow(UsageError);
    await expect(nb.awqFakeQuantize(new Float32Array(8), null, 2, 4, 4, 3, new Float32Array(8))).rejects.toThrow(/divide K/);
    await expect(nb.awqFakeQuantize(new Float32Array(8), null, 2, 4, 9, 4, new Float32Array(8))).rejects.toThrow(/bit width/);
    await expect(nb.awqClipSearch(new Float32Array(8), new Float32Array(4), 2, 4, 1, 4, 4, new Float32Array(1))).rejects.toThrow(/maxVal/);
  });
});

describe("native AWQ kernels equal awq.ts", () => {
  const rand = mulberry32(11);
  it.each([
    [64, 256, 128, 4], [100, 384, 64, 3], [33, 128, 128, 8], [48, 192, 192, 2],
  ])("N=%i K=%i g=%i bits=%i: scaled fake quantization and clip search", async (N, K, g, bits) => {
    // Rows of mixed magnitude, positive scales spanning ~0.2…3.2, correlated inputs.
    const w = Float32Array.from({ length: N * K }, () => (rand() - 0.5) * (1 + 3 * rand()));
    const s = Float32Array.from({ length: K }, () => 0.2 + 3 * rand());
    const got = new Float32Array(N * K);
    await nb.awqFakeQuantize(w, s, N, K, bits, g, got);
    expect(countDiffs(got, awqScaledFakeQuantize({ N, K, weight: w }, s, bits, g))).toBe(0);
    await nb.awqFakeQuantize(w, null, N, K, bits, g, got);
    expect(countDiffs(got, awqFakeQuantize(w, N, K, bits, g))).toBe(0);
    const T = 96, x = activations(T, K, 5);
    const mv = new Float32Array(N * (K / g));
    await nb.awqClipSearch(w, x, N, K, T, bits, g, mv);
    const want = awqClipSearchLayer({ backend: nb, weight: w, N, K, x, T, bits, groupSize: g });
    expect(countDiffs(mv, want)).toBe(0);
    // Non-trivial: some groups are clipped below their max |w|, some are not.
    const G = K / g;
    let clipped = 0;
    for (let n = 0; n < N; n++) for (let gi = 0; gi < G; gi++) {
      let amax = 0;
      for (let j = 0; j < g; j++) amax = Math.max(amax, Math.abs(w[n * K + gi * g + j]!));
      if (mv[n * G + gi]! < amax) clipped++;
    }
    expect(clipped).toBeGreaterThan(0);
    expect(clipped).toBeLessThan(N * G);
  });
});

/**
 * Fused LLM.int8() weights (NativeBackend.fuse → native int8Concat; matmulMany → int8MatmulParts):
 * the concatenation is exactly int8Pack of the concatenated rows, one call over the views equals a
 * matmul per unfused weight bit for bit at every level (dynamic, static and no outlier columns,
 * biases, M = 1 / 2 / 3 / 17, a last part whose rows are not a multiple of 16, 1 and 2 threads),
 * a view alone multiplies only its rows, and weights that cannot share a call are left alone.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNativeBackend, type NativeBackend } from "../../src/backend/native.ts";
import type { Int8PackedWeight, Int8RunOptions } from "../../src/backend/native-int8.ts";
import { int8MatmulRef, quantizeInt8Rows, type Int8Linear } from "../../src/methods/int8.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { randn } from "../helpers/random-weights.ts";
import { int8Layer } from "../helpers/int8-layer.ts";

let nb: NativeBackend;
beforeAll(() => { nb = createNativeBackend({ threads: 1 }); });
afterAll(() => nb.setThreads(1));

const layer = int8Layer;

/** x [M, K] ~ N(0, 1) with columns 3 and K − 2 ≥ 20 on most rows. */
function acts(M: number, K: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const x = Float32Array.from({ length: M * K }, () => randn(r));
  for (let m = 0; m < M; m++) for (const c of [3, K - 2]) if (r() < 0.8) x[m * K + c] = 25;
  return x;
}

const RUNS: [string, Int8RunOptions][] = [
  ["t=0", { threshold: 0, staticCols: null }],
  ["t=6 dynamic", { threshold: 6, staticCols: null }],
  ["t=6 static", { threshold: 6, staticCols: Int32Array.of(1, 3, 40) }],
];

describe("fused LLM.int8() weights", () => {
  // q | k | v shaped parts: [N] per part, the last not a multiple of 16
  const Ns = [64, 32, 37], K = 130;
  const qs = Ns.map((N, i) => layer(N, K, 10 + i, i !== 1));

  it.each(RUNS)("one call over the views equals a matmul per weight and the TS reference (%s), every level, 1 and 2 threads", (_, run) => {
    const views = nb.fuse(qs.map((q) => nb.packInt8({ ...q, ...run }))) as Int8PackedWeight[] | null;
    expect(views).not.toBeNull();
    for (const threads of [1, 2]) {
      nb.setThreads(threads);
      for (const M of [1, 2, 3, 17]) {
        const x = acts(M, K, M);
        const refs = qs.map((q) => int8MatmulRef(x, M, q, run.threshold, run.staticCols ?? undefined));
        for (const level of nb.int8.levels()) {
          const outs = Ns.map((N) => new Float32Array(M * N).fill(NaN));
          nb.int8.matmulParts(x, views!, M, qs.map((q) => q.bias), outs, level);
          outs.forEach((y, p) => expect(Array.from(y), `${level} M=${M} part ${p}`).toEqual(Array.from(refs[p]!)));
          views!.forEach((v, p) => expect(Array.from(nb.int8.matmul(x, v, M, qs[p]!.bias, undefined, level).y), `${level} view ${p} alone`).toEqual(Array.from(refs[p]!)));
        }
        const outs = Ns.map((N) => new Float32Array(M * N));
        nb.matmulMany(x, M, K, views!.map((w, p) => ({ w, N: Ns[p]!, bias: qs[p]!.bias, out: outs[p]! })));
        outs.forEach((y, p) => expect(Array.from(y), `matmulMany M=${M} part ${p}`).toEqual(Array.from(refs[p]!)));
      }
    }
    nb.setThreads(1);
    for (const v of views!) v.dispose();
    expect(views!.every((v) => v.disposed)).toBe(true);
  });

  it("the concatenation unpacks to the parts' codes, one after the other", () => {
    const views = nb.fuse(qs.map((q) => nb.packInt8({ ...q, threshold: 0, staticCols: null }))) as Int8PackedWeight[];
    const whole = { handle: views[0]!.handle, N: Ns.reduce((a, b) => a + b), K } as unknown as Int8PackedWeight;
    const codes = nb.int8.unpack(whole);
    let o = 0;
    for (const q of qs) { expect(Array.from(codes.subarray(o, o + q.CB.length))).toEqual(Array.from(q.CB)); o += q.CB.length; }
    expect(views.reduce((a, v) => a + v.bytes, 0)).toBeGreaterThanOrEqual(o);
  });

  it("weights that cannot share one call stay as they are", () => {
    const pack = (q: Int8Linear, run: Int8RunOptions): Int8PackedWeight => nb.packInt8({ ...q, ...run });
    const t0 = RUNS[0]![1], t6 = RUNS[1]![1];
    const inner37 = [layer(37, K, 1, false), layer(32, K, 2, false)]; // an inner part of 37 rows would straddle a group
    for (const ws of [inner37.map((q) => pack(q, t0)), [pack(qs[0]!, t0), pack(qs[1]!, t6)], [pack(qs[0]!, t0), pack(layer(16, 64, 3, false), t0)], [pack(qs[0]!, t0)]]) {
      expect(nb.fuse(ws)).toBeNull();
      expect(ws.every((w) => !w.disposed && w.fused === null)).toBe(true);
    }
  });

  it("matmulParts refuses weights that are not one group's views, and overlapping outputs", () => {
    const views = nb.fuse(qs.map((q) => nb.packInt8({ ...q, threshold: 0, staticCols: null }))) as Int8PackedWeight[];
    const x = acts(1, K, 5);
    expect(() => nb.int8.matmulParts(x, views.slice(0, 2), 1, [undefined, undefined], [new Float32Array(64), new Float32Array(32)])).toThrow(/views of one fused group/);
    const buf = new Float32Array(200);
    expect(() => nb.int8.matmulParts(x, views, 1, [undefined, undefined, undefined], [buf.subarray(0, 64), buf.subarray(60, 92), buf.subarray(100, 137)])).toThrow(/overlaps/);
    expect(() => nb.int8.matmulParts(x, views, 1, [undefined, undefined, undefined], [new Float32Array(64), new Float32Array(31), new Float32Array(37)])).toThrow(/too short/);
  });
});

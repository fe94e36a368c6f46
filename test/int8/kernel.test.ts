/**
 * The native LLM.int8() kernels (native/src/llm_int8*.cc) against the plain-TS reference
 * int8MatmulRef: bit-identical at every compiled level (the int32 part is exact and the f32
 * epilogue does the reference's operations in its order), with shapes that exercise the
 * 16-row and 4-column padding, 1–4-row kernel tails, dynamic and static outlier columns,
 * and the thread pool. The VNNI level runs only where the CPU has avx512vnni.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNativeBackend, type NativeBackend } from "../../src/backend/native.ts";
import type { Int8Level } from "../../src/backend/native-int8.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { int8MatmulRef, outlierColumns, quantizeInt8Rows, type Int8Linear } from "../../src/methods/int8.ts";
import { QuantizeLlmError } from "../../src/util/errors.ts";
import { randn } from "../helpers/random-weights.ts";
import { int8Layer } from "../helpers/int8-layer.ts";

let nb: NativeBackend;
beforeAll(() => { nb = createNativeBackend({ threads: 1 }); });
afterAll(() => nb.setThreads(1));

const layer = int8Layer;

/** x [M, K] ~ N(0, 1), with `hot` columns carrying |x| ≥ 20 on most rows (emergent outliers). */
function acts(M: number, K: number, seed: number, hot: number[]): Float32Array {
  const r = mulberry32(seed);
  const x = Float32Array.from({ length: M * K }, () => randn(r));
  for (let m = 0; m < M; m++) for (const c of hot) if (r() < 0.8) x[m * K + c] = (r() < 0.5 ? -1 : 1) * (20 + 10 * r());
  return x;
}

const SHAPES: [number, number, number][] = [
  // [M, N, K]
  [1, 16, 64], [1, 37, 70], [3, 33, 129], [4, 64, 256], [5, 48, 96], [17, 31, 203], [64, 80, 160],
  // decode (M ≤ 2): the two-stream kernel over two halves of 7 groups (+ the odd one alone)
  [1, 100, 70], [2, 100, 131],
  // an odd number of quads (the pair kernel's one-quad tail), and a long row
  [1, 100, 130], [2, 64, 2050],
];

describe("int8 matmul: native levels equal the TS reference bit for bit", () => {
  const levels = (): Int8Level[] => nb.int8.levels();

  it("offers the scalar reference level and at least one of this CPU's SIMD levels", () => {
    expect(levels()).toContain("scalar");
    expect(levels().length).toBeGreaterThanOrEqual(1);
  });

  it.each(SHAPES)("M=%i N=%i K=%i, thresholds 0 / 6 / static, every level", (M, N, K) => {
    const q = layer(N, K, M * 1000 + N, N % 2 === 1);
    const hot = [1, Math.floor(K / 2), K - 1];
    const x = acts(M, K, N + K, hot);
    expect(outlierColumns(x, M, K, 6).length).toBeGreaterThan(0);
    const staticCols = Int32Array.from([0, ...hot.slice(0, 2)]);
    for (const [threshold, cols] of [[0, null], [6, null], [6, staticCols]] as const) {
      const ref = int8MatmulRef(x, M, q, threshold, cols ?? undefined);
      const w = nb.int8.pack(q, { threshold, staticCols: cols });
      for (const level of levels()) {
        const { y, outliers } = nb.int8.matmul(x, w, M, q.bias, undefined, level);
        expect(outliers, `${level} t=${threshold}`).toBe(outlierColumns(x, M, K, threshold, cols ?? undefined).length);
        expect(Array.from(y), `${level} t=${threshold} static=${cols !== null}`).toEqual(Array.from(ref));
      }
      w.dispose();
    }
  });

  it("two pool threads give the same bits", () => {
    const q = layer(200, 512, 3, true);
    const x = acts(6, 512, 4, [7, 300]);
    const w = nb.int8.pack(q, { threshold: 6, staticCols: null });
    const one = nb.int8.matmul(x, w, 6, q.bias).y;
    nb.setThreads(2);
    try {
      expect(Array.from(nb.int8.matmul(x, w, 6, q.bias).y)).toEqual(Array.from(one));
    } finally { nb.setThreads(1); }
    expect(Array.from(one)).toEqual(Array.from(int8MatmulRef(x, 6, q, 6)));
  });

  it("the packed layout unpacks to the same codes, and holds ≈ 1 byte per weight", () => {
    const q = layer(37, 70, 9, false);
    const w = nb.int8.pack(q, { threshold: 0, staticCols: null });
    expect(Array.from(nb.int8.unpack(w))).toEqual(Array.from(q.CB));
    // 48 padded rows × 72 padded columns of codes + SCB + row sums (each 64-byte aligned)
    expect(w.bytes).toBe(48 * 72 + 192 + 192);
    w.dispose();
    expect(w.bytes).toBe(0);
    expect(() => nb.int8.matmul(new Float32Array(70), w, 1)).toThrow(QuantizeLlmError);
  });

  it("bad arguments are typed errors, not crashes", () => {
    const q = layer(16, 8, 1, false);
    expect(() => nb.int8.pack({ ...q, CB: new Int8Array(3) }, { threshold: 0, staticCols: null })).toThrow(/CB/);
    expect(() => nb.int8.pack(q, { threshold: -1, staticCols: null })).toThrow(/threshold/);
    expect(() => nb.int8.pack(q, { threshold: 6, staticCols: Int32Array.of(3, 2) })).toThrow(/ascending/);
    expect(() => nb.int8.pack(q, { threshold: 6, staticCols: Int32Array.of(8) })).toThrow(/ascending/);
    const w = nb.int8.pack(q, { threshold: 0, staticCols: null });
    expect(() => nb.int8.matmul(new Float32Array(7), w, 1)).toThrow(/x is too short/);
    expect(() => nb.int8.matmul(new Float32Array(8), w, 1, new Float32Array(3))).toThrow(/bias/);
    expect(() => nb.int8.matmul(new Float32Array(8), w, 1, undefined, undefined, "nope" as Int8Level)).toThrow(/level/);
  });
});

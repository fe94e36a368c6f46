/**
 * The native backend against the plain-TS reference (src/backend/ref.ts), on
 * random data, for every SIMD level this CPU runs; plus argument validation and
 * backend selection. One pool thread throughout (vitest runs files in parallel on
 * two cores), except the test that checks two threads give the same bits.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AttentionShape } from "../src/backend/backend.ts";
import { ADDON_FILE, checkAddon, createNativeBackend, loadAddon, type KernelLevel, type NativeBackend } from "../src/backend/native.ts";
import { refAttention, refBackend, refMatmul } from "../src/backend/ref.ts";
import { defaultThreads, selectBackend } from "../src/backend/select.ts";
import { f32ToF16 } from "../src/tensor/dtype.ts";
import { DependencyError, UsageError } from "../src/util/errors.ts";

/** Machine epsilon of f32 (2^-23). */
const F32_EPS = 2 ** -23;

/**
 * Matmul tolerance per output: the reference accumulates in f64, the kernels in
 * f32 in a different order (blocked, FMA). Any f32 summation of K products is off
 * by at most ≈ K·ε·Σ_k |x_k·w_k| (the classic γ_K bound for recursive summation),
 * so that is the bound each element is held to (plus ε·|bias| for the bias add).
 */
const MATMUL_TOL_PER_TERM = F32_EPS;

/**
 * Attention tolerance: a score is a d-term dot product scaled by 1/√d, so its
 * error is at most d·ε·Σ|q_i k_i|/√d; the softmax passes that on as a relative error
 * of the weights, i.e. an absolute error of the output times max|v| (= 1 here).
 * The vectorised exp (≈ 2 ulp), the sum over keys and the final division add a few ε.
 */
function attentionTol(d: number, qMax: number, kMax: number, nKeys: number): number {
  return d * F32_EPS * ((d * qMax * kMax) / Math.sqrt(d)) + (8 + nKeys) * F32_EPS;
}

/** Deterministic uniform [-1, 1) generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function rand(n: number, r: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * scale;
  return a;
}

/** Per-element bound K·ε·Σ|x||w| (+ ε|b|) for y = x·Wᵀ + b. */
function matmulBound(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias?: Float32Array): Float32Array {
  const absX = x.map(Math.abs), absW = w.map(Math.abs);
  const s = refMatmul(absX, absW, M, K, N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      const i = m * N + n;
      s[i] = K * MATMUL_TOL_PER_TERM * s[i]! + F32_EPS * Math.abs(bias?.[n] ?? 0) + Number.MIN_VALUE;
    }
  }
  return s;
}

/** Index of the first element outside its bound, or -1. */
function firstOutside(got: Float32Array, want: Float32Array, bound: (i: number) => number): number {
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i]! - want[i]!) <= bound(i))) return i;
  }
  return -1;
}

function expectClose(got: Float32Array, want: Float32Array, bound: (i: number) => number, what: string): void {
  const i = firstOutside(got, want, bound);
  expect(i, i < 0 ? what : `${what}: element ${i} is ${got[i]}, reference ${want[i]}, bound ${bound(i)}`).toBe(-1);
}

// [M, K, N]: decode (M=1), the dot-product form (M ≤ 16), the packed form with
// tails in every dimension, K > the K block (256) so C is accumulated, M > 16.
const MATMUL_SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 33, 65], [1, 256, 96], [3, 17, 9], [7, 33, 65], [16, 40, 31],
  [17, 33, 65], [37, 300, 70], [64, 256, 96], [29, 520, 33],
];

// Causal GQA: decode (T=1, pos0 > 0), short chunks (rows form, T < 8), chunked
// prefill (tiled form, pos0 > 0), groups 1/2/4, headDim 32/64/128 and an odd one.
const ATTENTION_SHAPES: AttentionShape[] = [
  { T: 1, pos0: 0, nHead: 2, nKvHead: 2, headDim: 32 },
  { T: 1, pos0: 45, nHead: 4, nKvHead: 1, headDim: 64 },
  { T: 1, pos0: 70, nHead: 8, nKvHead: 4, headDim: 128 },
  { T: 3, pos0: 11, nHead: 4, nKvHead: 2, headDim: 20 },
  { T: 6, pos0: 0, nHead: 4, nKvHead: 4, headDim: 32 },
  { T: 9, pos0: 0, nHead: 2, nKvHead: 1, headDim: 64 },
  { T: 20, pos0: 13, nHead: 4, nKvHead: 2, headDim: 32 },
  { T: 40, pos0: 0, nHead: 4, nKvHead: 1, headDim: 128 },
  { T: 35, pos0: 30, nHead: 2, nKvHead: 2, headDim: 64 },
  { T: 17, pos0: 5, nHead: 8, nKvHead: 2, headDim: 24 },
  // Decode over chunks of keys (native attnChunk + attnCombine): one chunk below 64 keys,
  // up to 8 past it, key counts off the 16-key blocks, head dims off the SIMD width, past
  // one 8-vector P·V pass (136), groups 1, 3 and 8 (the 4-head and single-head P·V paths).
  { T: 1, pos0: 600, nHead: 32, nKvHead: 4, headDim: 64 },
  { T: 1, pos0: 130, nHead: 8, nKvHead: 1, headDim: 40 },
  { T: 2, pos0: 200, nHead: 6, nKvHead: 2, headDim: 72 },
  { T: 1, pos0: 99, nHead: 3, nKvHead: 3, headDim: 136 },
  { T: 3, pos0: 1100, nHead: 16, nKvHead: 2, headDim: 128 },
  { T: 5, pos0: 63, nHead: 4, nKvHead: 4, headDim: 17 },
];

interface AttentionCase { shape: AttentionShape; q: Float32Array; k: Float32Array; v: Float32Array; tol: number }

function attentionCase(shape: AttentionShape, seed: number): AttentionCase {
  const { T, pos0, nHead, nKvHead, headDim: d } = shape;
  const r = rng(seed);
  // q scaled so scores spread over several units: the softmax is far from uniform.
  const qMax = 3, kMax = 1;
  const q = rand(T * nHead * d, r, qMax);
  const k = rand((pos0 + T) * nKvHead * d, r, kMax);
  const v = rand((pos0 + T) * nKvHead * d, r);
  return { shape, q, k, v, tol: attentionTol(d, qMax, kMax, pos0 + T) };
}

function shapeName(s: AttentionShape): string {
  return `T=${s.T} pos0=${s.pos0} heads=${s.nHead}/${s.nKvHead} d=${s.headDim}`;
}

describe("native backend", () => {
  let nb: NativeBackend;
  let levels: KernelLevel[];
  let bestLevel: KernelLevel;

  beforeAll(() => {
    nb = createNativeBackend({ threads: 1 });
    levels = nb.kernelLevels();
    bestLevel = nb.kernelLevel;
  });
  afterAll(() => {
    nb.setKernelLevel(bestLevel);
    nb.setThreads(1);
  });

  it("identifies itself and offers the portable level", () => {
    expect(nb.name).toBe("native");
    expect(nb.threads).toBe(1);
    expect(levels).toContain("scalar");
    expect(levels[0]).toBe(bestLevel);
  });

  it("matmul matches the reference at every SIMD level, with and without bias", () => {
    for (const level of levels) {
      nb.setKernelLevel(level);
      for (const [i, [M, K, N]] of MATMUL_SHAPES.entries()) {
        const r = rng(100 + i);
        const x = rand(M * K, r), w = rand(N * K, r), bias = rand(N, r);
        for (const b of [undefined, bias]) {
          const want = refMatmul(x, w, M, K, N, b);
          const bound = matmulBound(x, w, M, K, N, b);
          const got = nb.matmul(x, w, M, K, N, b);
          expect(got.length).toBe(M * N);
          expectClose(got, want, (j) => bound[j]!, `${level} ${M}×${K}×${N}${b ? " +bias" : ""}`);
        }
      }
    }
  });

  it("matmul writes into `out` and leaves the rest of it alone", () => {
    const [M, K, N] = [20, 70, 50];
    const r = rng(7);
    const x = rand(M * K, r), w = rand(N * K, r);
    const out = new Float32Array(M * N + 5).fill(42);
    expect(nb.matmul(x, w, M, K, N, undefined, out)).toBe(out);
    const bound = matmulBound(x, w, M, K, N);
    expectClose(out.subarray(0, M * N), refMatmul(x, w, M, K, N), (j) => bound[j]!, "out");
    expect(Array.from(out.subarray(M * N))).toEqual([42, 42, 42, 42, 42]);
  });

  it("attention matches the reference at every SIMD level", () => {
    for (const level of levels) {
      nb.setKernelLevel(level);
      for (const [i, shape] of ATTENTION_SHAPES.entries()) {
        const c = attentionCase(shape, 200 + i);
        const want = new Float32Array(shape.T * shape.nHead * shape.headDim);
        refAttention(c.q, c.k, c.v, shape, want);
        const got = new Float32Array(want.length);
        nb.attention(c.q, c.k, c.v, shape, got);
        expectClose(got, want, () => c.tol, `${level} ${shapeName(shape)}`);
      }
    }
  });

  it("attention over an f16 cache matches the reference on the same f16 values at every SIMD level", () => {
    const f16 = (a: Float32Array): Uint16Array => Uint16Array.from(a, (x) => f32ToF16(x));
    for (const level of levels) {
      nb.setKernelLevel(level);
      for (const [i, shape] of ATTENTION_SHAPES.entries()) {
        const c = attentionCase(shape, 200 + i);
        const k16 = f16(c.k), v16 = f16(c.v);
        const want = new Float32Array(shape.T * shape.nHead * shape.headDim);
        refAttention(c.q, k16, v16, shape, want); // decodes the same bits exactly
        const got = new Float32Array(want.length);
        nb.attention(c.q, k16, v16, shape, got);
        expectClose(got, want, () => c.tol, `f16 cache ${level} ${shapeName(shape)}`);
        if (level !== levels[0]) continue;
        // The cache's rounding itself: |k − k16| ≤ 2⁻¹¹|k| moves each score by ≤ 2⁻¹¹·Σ|q k|/√d,
        // the softmax weights by ≤ 2× that relatively (max|v| = 1), and v's own rounding 2⁻¹¹.
        const exact = new Float32Array(want.length);
        refAttention(c.q, c.k, c.v, shape, exact);
        const d = shape.headDim, kvTol = 2 ** -11 * (2 * (d * 3 * 1) / Math.sqrt(d) + 1) + c.tol;
        expectClose(want, exact, () => kvTol, `f16 cache vs f32 ${shapeName(shape)}`);
      }
    }
    // Spare capacity full of f16 NaN (0x7e00): a kernel reading past pos0+T poisons the result.
    const shape = { T: 1, pos0: 600, nHead: 32, nKvHead: 4, headDim: 64 };
    const c = attentionCase(shape, 10);
    const kvLen = (shape.pos0 + shape.T) * shape.nKvHead * shape.headDim;
    const k16 = new Uint16Array(kvLen + 4096).fill(0x7e00), v16 = new Uint16Array(kvLen + 4096).fill(0x7e00);
    k16.set(f16(c.k));
    v16.set(f16(c.v));
    const want = new Float32Array(shape.nHead * shape.headDim);
    refAttention(c.q, k16, v16, shape, want);
    for (const level of levels) {
      nb.setKernelLevel(level);
      const got = new Float32Array(want.length);
      nb.attention(c.q, k16, v16, shape, got);
      expectClose(got, want, () => c.tol, `f16 cache ${level} with spare rows`);
    }
    expect(() => nb.attention(c.q, k16, c.v, shape, want)).toThrow(/must be a Uint16Array/);
  });

  // An f16 cache with its keys in blocks of 32 positions (AttentionShape.keyBlocks, native/LAYOUTS.md
  // "KV cache"): the decode kernels read the blocks without transposes, the prefill one widens them.
  // Odd head dims (24–256), nKv 1/3/5, T 1 (decode), 3 (rows form) and 17 (tiled), key counts on and
  // off the blocks, capacities off a multiple of 32 whose spare lanes hold f16 NaN (0x7e00): the
  // last block's lanes past the keys are read and must be masked.
  it("attention over blocked f16 keys equals the reference at every level, and the scalar level", () => {
    const f16 = (a: Float32Array): Uint16Array => Uint16Array.from(a, (x) => f32ToF16(x));
    const shapes: AttentionShape[] = [
      { T: 1, pos0: 0, nHead: 8, nKvHead: 1, headDim: 64 },
      { T: 1, pos0: 31, nHead: 3, nKvHead: 3, headDim: 24 },
      { T: 1, pos0: 32, nHead: 15, nKvHead: 5, headDim: 40 },
      { T: 1, pos0: 130, nHead: 32, nKvHead: 4, headDim: 64 },
      { T: 1, pos0: 95, nHead: 5, nKvHead: 5, headDim: 256 },
      { T: 1, pos0: 77, nHead: 3, nKvHead: 1, headDim: 200 },
      { T: 1, pos0: 600, nHead: 32, nKvHead: 4, headDim: 64 },
      { T: 3, pos0: 62, nHead: 6, nKvHead: 3, headDim: 72 },
      { T: 17, pos0: 0, nHead: 8, nKvHead: 1, headDim: 136 },
      { T: 17, pos0: 20, nHead: 24, nKvHead: 3, headDim: 64 },
      { T: 17, pos0: 130, nHead: 10, nKvHead: 5, headDim: 24 },
    ];
    const scalar = levels.includes("scalar") ? "scalar" : null;
    for (const [i, shape] of shapes.entries()) {
      const c = attentionCase(shape, 700 + i);
      const { T, pos0, nKvHead, headDim: d } = shape, row = nKvHead * d, S = pos0 + T;
      const capacity = S + (i % 3) * 5 + 1; // 1, 6 or 11 spare positions
      const k16 = f16(c.k), v16 = new Uint16Array(capacity * row).fill(0x7e00);
      v16.set(f16(c.v));
      const kb = new Uint16Array(Math.ceil(capacity / 32) * 32 * row).fill(0x7e00);
      for (let p = 0; p < S; p++) for (let e = 0; e < row; e++) kb[Math.floor(p / 32) * row * 32 + e * 32 + (p % 32)] = k16[p * row + e]!;
      const bs = { ...shape, keyBlocks: true };
      const want = new Float32Array(T * shape.nHead * d);
      refAttention(c.q, k16, v16, shape, want); // row-major keys, the same bits
      const refBlocks = new Float32Array(want.length);
      refAttention(c.q, kb, v16, bs, refBlocks);
      expect(Array.from(refBlocks)).toEqual(Array.from(want)); // the reference reads the layout exactly
      const byLevel = new Map<KernelLevel, Float32Array>();
      for (const level of levels) {
        nb.setKernelLevel(level);
        const got = new Float32Array(want.length).fill(NaN);
        nb.attention(c.q, kb, v16, bs, got);
        expectClose(got, want, () => c.tol, `blocked keys ${level} ${shapeName(shape)}`);
        byLevel.set(level, got);
      }
      if (scalar === null) continue;
      for (const [level, got] of byLevel) expectClose(got, byLevel.get(scalar)!, () => 2 * c.tol, `blocked keys ${level} vs scalar ${shapeName(shape)}`);
    }
    nb.setKernelLevel(bestLevel);
    const shape = { T: 1, pos0: 40, nHead: 4, nKvHead: 2, headDim: 32, keyBlocks: true };
    const q = new Float32Array(128), out = new Float32Array(128), v = new Uint16Array(41 * 64);
    expect(() => nb.attention(q, new Uint16Array(63 * 64), v, shape, out)).toThrow(/at least 4096 elements/); // two whole blocks
    expect(() => nb.attention(q, new Uint16Array(64 * 64), v, shape, out)).not.toThrow();
    expect(() => nb.attention(q, new Float32Array(64 * 64), new Float32Array(41 * 64), shape, out)).toThrow(/keyBlocks needs an f16 cache/);
  });

  it("attention reads only the first pos0+T cache rows and writes only out", () => {
    const shape = { T: 10, pos0: 6, nHead: 4, nKvHead: 2, headDim: 32 };
    const c = attentionCase(shape, 9);
    const rows = shape.pos0 + shape.T, kvDim = shape.nKvHead * shape.headDim;
    // A cache with spare capacity full of NaN: a kernel reading past pos0+T poisons the result.
    const k = new Float32Array((rows + 8) * kvDim).fill(NaN), v = new Float32Array((rows + 8) * kvDim).fill(NaN);
    k.set(c.k);
    v.set(c.v);
    const want = new Float32Array(shape.T * shape.nHead * shape.headDim);
    refAttention(c.q, c.k, c.v, shape, want);
    for (const level of levels) {
      nb.setKernelLevel(level);
      const got = new Float32Array(want.length);
      nb.attention(c.q, k, v, shape, got);
      expectClose(got, want, () => c.tol, `${level} cache with spare rows`);
    }
  });

  it("every SIMD level agrees with the others", () => {
    // Each level is within the tolerance of the reference, hence within twice it of each other.
    const [M, K, N] = [37, 300, 70];
    const r = rng(11);
    const x = rand(M * K, r), w = rand(N * K, r), bias = rand(N, r);
    const bound = matmulBound(x, w, M, K, N, bias);
    const shape = { T: 20, pos0: 13, nHead: 4, nKvHead: 2, headDim: 64 };
    const c = attentionCase(shape, 12);
    const results = levels.map((level) => {
      nb.setKernelLevel(level);
      const att = new Float32Array(shape.T * shape.nHead * shape.headDim);
      nb.attention(c.q, c.k, c.v, shape, att);
      return { level, mm: nb.matmul(x, w, M, K, N, bias), att };
    });
    const first = results[0]!;
    for (const other of results.slice(1)) {
      expectClose(other.mm, first.mm, (j) => 2 * bound[j]!, `matmul ${other.level} vs ${first.level}`);
      expectClose(other.att, first.att, () => 2 * c.tol, `attention ${other.level} vs ${first.level}`);
    }
  });

  it("two threads give exactly the results of one", () => {
    nb.setKernelLevel(bestLevel);
    // Sizes above the kernels' serial threshold (2 MFLOP), so the pool really splits them.
    const mmShapes: [number, number, number][] = [[8, 512, 520], [70, 256, 300]];
    const attShapes = [
      { T: 1, pos0: 2000, nHead: 8, nKvHead: 2, headDim: 64 },
      { T: 64, pos0: 20, nHead: 8, nKvHead: 4, headDim: 64 },
    ];
    const run = () => ({
      mm: mmShapes.map(([M, K, N], i) => {
        const r = rng(300 + i);
        return nb.matmul(rand(M * K, r), rand(N * K, r), M, K, N, rand(N, r));
      }),
      att: attShapes.map((shape, i) => {
        const c = attentionCase(shape, 400 + i);
        const out = new Float32Array(shape.T * shape.nHead * shape.headDim);
        nb.attention(c.q, c.k, c.v, shape, out);
        return out;
      }),
    });
    nb.setThreads(1);
    const one = run();
    nb.setThreads(2);
    expect(nb.threads).toBe(2);
    const two = run();
    nb.setThreads(1);
    // Threads split rows and columns, never the sum over K: the same bits must come out.
    for (let i = 0; i < mmShapes.length; i++) expect(two.mm[i]!.every((y, j) => Object.is(y, one.mm[i]![j]))).toBe(true);
    for (let i = 0; i < attShapes.length; i++) expect(two.att[i]!.every((y, j) => Object.is(y, one.att[i]![j]))).toBe(true);
  });

  it("rejects bad shapes, lengths and aliasing with UsageError", () => {
    const x = new Float32Array(6), w = new Float32Array(12);
    expect(() => nb.matmul(x, w, 2, 3, 4)).not.toThrow();
    expect(() => nb.matmul(x, w, 2, 3, 5)).toThrow(UsageError); // w too short
    expect(() => nb.matmul(x, w, 3, 3, 4)).toThrow(UsageError); // x too short
    expect(() => nb.matmul(x, w, 2, 3, 4, new Float32Array(3))).toThrow(UsageError); // bias length
    expect(() => nb.matmul(x, w, 2, 3, 4, undefined, new Float32Array(7))).toThrow(UsageError); // out too short
    expect(() => nb.matmul(x, w, 1.5, 3, 4)).toThrow(UsageError);
    expect(() => nb.matmul(x, w, 2, 0, 4)).toThrow(UsageError);
    expect(() => nb.matmul(new Float64Array(6) as unknown as Float32Array, w, 2, 3, 4)).toThrow(/Float32Array/);
    const buf = new Float32Array(20);
    expect(() => nb.matmul(buf.subarray(0, 6), w, 2, 3, 4, undefined, buf.subarray(4, 12))).toThrow(/overlaps input x/);
    expect(() => nb.matmul(buf.subarray(0, 6), w, 2, 3, 4, undefined, buf.subarray(6, 14))).not.toThrow();
    expect(nb.matmul(new Float32Array(0), w, 0, 3, 4).length).toBe(0);

    const s = { T: 2, pos0: 1, nHead: 4, nKvHead: 2, headDim: 8 };
    const q = new Float32Array(64), k = new Float32Array(48), v = new Float32Array(48), out = new Float32Array(64);
    expect(() => nb.attention(q, k, v, s, out)).not.toThrow();
    expect(() => nb.attention(q, k, v, { ...s, nKvHead: 3 }, out)).toThrow(/multiple of nKvHead/);
    expect(() => nb.attention(q, k.subarray(1), v, s, out)).toThrow(UsageError);
    expect(() => nb.attention(q, k, v, s, new Float32Array(63))).toThrow(UsageError);
    expect(() => nb.attention(q, k, v, s, q)).toThrow(/overlaps input q/);
    expect(() => nb.setThreads(0)).toThrow(UsageError);
    expect(() => nb.setKernelLevel("sse9" as KernelLevel)).toThrow(UsageError);
  });
});

describe("backend selection", () => {
  it("a missing addon is a DependencyError that names the fix", () => {
    let err: unknown;
    try {
      loadAddon("/nonexistent/quantize_llm.node");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DependencyError);
    expect((err as Error).message).toContain("npm run build:native");
    expect((err as Error).message).toContain("Cannot find module");
  });

  /** The error checkAddon throws for `mod`, or undefined. */
  const checkError = (mod: unknown, file = "/x/quantize_llm.node"): DependencyError | undefined => {
    try { checkAddon(mod, file); } catch (e) { if (e instanceof DependencyError) return e; throw e; }
    return undefined;
  };

  it("a stale addon (exports missing) is a DependencyError naming the file, the missing exports and the fix", () => {
    const real = loadAddon() as unknown as Record<string, unknown>;
    expect(checkError(real)).toBeUndefined();
    // As an addon built before mapFile and view16 would look: everything else present.
    const { mapFile: _m, view16: _v, ...stale } = real;
    const err = checkError(stale, "/old/build/quantize_llm.node")!;
    expect(err).toBeInstanceOf(DependencyError);
    expect(err.details.file).toBe("/old/build/quantize_llm.node");
    expect(err.details.expected).toBe("functions mapFile, view16");
    expect(err.message).toContain("npm run build:native");
    // A non-function under the name counts as missing; the per-weight conversions are optional.
    expect(checkError({ ...real, readBandwidth: 3 })!.details.expected).toBe("functions readBandwidth");
    const { convertRows: _c, ggmlQuantizeRows: _g, rtnQuantize: _r, gptqPackCodes: _p, ...noConvert } = real;
    expect(checkError(noConvert)).toBeUndefined();
    expect(checkError(null)!.details.expected).toMatch(/^functions matmul, attention, swiglu, /);
  });

  it("loadAddon checks the exports of the module it loads", () => {
    const dir = mkdtempSync(join(tmpdir(), "qllm-addon-"));
    try {
      const file = join(dir, "stale.cjs");
      writeFileSync(file, "module.exports = { matmul() {}, getThreads() { return 1; } };\n");
      let err: unknown;
      try { loadAddon(file); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(DependencyError);
      expect((err as DependencyError).details.file).toBe(file);
      expect((err as DependencyError).details.expected).toContain("attention, swiglu, setThreads");
      expect((err as DependencyError).details.expected).not.toContain("getThreads");
      expect((err as DependencyError).details.expected).not.toContain("convertRows");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(() => loadAddon(ADDON_FILE)).not.toThrow();
  });

  it("selects ref, native, or native under auto", () => {
    expect(selectBackend({ backend: "ref" })).toBe(refBackend);
    const native = selectBackend({ backend: "native", threads: 1 });
    expect(native.name).toBe("native");
    expect(native.threads).toBe(1);
    expect(selectBackend({ threads: 1 }).name).toBe("native");
    expect(() => selectBackend({ backend: "gpu" as "ref" })).toThrow(UsageError);
  });

  it("defaultThreads follows QLLM_THREADS", () => {
    const saved = process.env["QLLM_THREADS"];
    try {
      process.env["QLLM_THREADS"] = "3";
      expect(defaultThreads()).toBe(3);
      process.env["QLLM_THREADS"] = "zero";
      expect(() => defaultThreads()).toThrow(UsageError);
      delete process.env["QLLM_THREADS"];
      expect(defaultThreads()).toBeGreaterThanOrEqual(1);
    } finally {
      if (saved === undefined) delete process.env["QLLM_THREADS"];
      else process.env["QLLM_THREADS"] = saved;
    }
  });
});

/**
 * The native elementwise ops of the forward pass (native/src/elementwise.cc, kernel_impl.h
 * rmsNormRow / ropeRows / addRows / toF16Rows) against their TS specifications: nn/block.ts
 * rmsNorm, nn/rope.ts RopeTable.apply, f32 `+` and tensor/dtype.ts f32ToF16. For every kernel
 * level this CPU runs: the scalar level must equal the TS code bit for bit (it computes the
 * same f64 formulas), the SIMD levels within the named tolerances; the residual add and the
 * f16 rounding are bit-exact at every level, and the greedy pick (argmax) equals
 * generate/sampler.ts argmax at every level (ties, NaNs, infinities, all −∞, block edges). Odd widths exercise the vector tails, T = 40 rows
 * of 2048 pass the pool threshold (two threads split the rows).
 */
import { afterAll, describe, expect, it } from "vitest";
import { createNativeBackend, type KernelLevel } from "../../src/backend/native.ts";
import { refBackend } from "../../src/backend/ref.ts";
import { argmax } from "../../src/generate/sampler.ts";
import { rmsNorm, storeKeyBlocks } from "../../src/nn/block.ts";
import { RopeTable } from "../../src/nn/rope.ts";
import { f32ToF16 } from "../../src/tensor/dtype.ts";
import { UsageError } from "../../src/util/errors.ts";
import { rng } from "./packed-ref.ts";

const nb = createNativeBackend({ threads: 2 });
const levels: KernelLevel[] = nb.kernelLevels();
afterAll(() => { nb.setKernelLevel(levels[0]!); });
const ew = { rmsNorm: nb.rmsNorm!, rope: nb.rope!, add: nb.add!, toF16: nb.toF16!, toF16Keys: nb.toF16Keys!, argmax: nb.argmax! };

/** SIMD RMSNorm: Σx² in f32 lanes (H ≤ 5632 terms of one sign: ≤ ~H/W·2⁻²⁴ relative), r in f32, two f32 products. */
const RMS_REL_TOL = 4 * 2 ** -23;
/** SIMD RoPE: x1·c − x2·s with x2·s rounded first: an error of ½ ulp of the product terms. */
const ROPE_ABS_TOL_PER_TERM = 2 ** -23;

function randoms(n: number, seed: number, scale = 4): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

function differing(a: Float32Array | Uint16Array, b: Float32Array | Uint16Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) n++;
  return n;
}

describe.each(levels)("elementwise ops on %s", (level) => {
  it.each([[1, 7], [3, 2048], [2, 2049], [40, 2048], [1, 5633]])("rmsNorm T=%i H=%i", (T, H) => {
    const x = randoms(T * H, T * 31 + H), w = randoms(H, H, 2);
    const want = rmsNorm(x, w, T, H, 1e-5);
    nb.setKernelLevel(level);
    const got = new Float32Array(T * H);
    ew.rmsNorm(x, w, T, H, 1e-5, got);
    const inPlace = x.slice();
    ew.rmsNorm(inPlace, w, T, H, 1e-5, inPlace);
    expect(differing(inPlace, got)).toBe(0);
    if (level === "scalar") expect(differing(got, want)).toBe(0);
    let worst = 0;
    for (let i = 0; i < T * H; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) - RMS_REL_TOL * Math.abs(want[i]!));
    expect(worst).toBeLessThanOrEqual(0);
  });

  it.each([[1, 32, 64, 0], [1, 4, 64, 575], [3, 5, 18, 7], [40, 32, 64, 100], [2, 3, 6, 1]])("rope T=%i nHeads=%i headDim=%i pos0=%i", (T, nHeads, d, pos0) => {
    const table = new RopeTable({ headDim: d, ropeTheta: 10000, ropeScaling: null } as never);
    const x = randoms(T * nHeads * d, T + nHeads + d + pos0);
    const want = x.slice();
    table.apply(want, T, nHeads, pos0);
    nb.setKernelLevel(level);
    const got = x.slice();
    ew.rope(got, T, nHeads, d, pos0, table.cos, table.sin);
    if (level === "scalar") expect(differing(got, want)).toBe(0);
    // |x1·c| + |x2·s| bounds the terms whose rounding the SIMD form differs in
    const h = d / 2;
    let worst = 0;
    for (let t = 0; t < T; t++) for (let hd = 0; hd < nHeads; hd++) for (let i = 0; i < d; i++) {
      const o = (t * nHeads + hd) * d, j = i < h ? i : i - h;
      const scale = Math.abs(x[o + j]!) + Math.abs(x[o + h + j]!);
      const e = o + i;
      worst = Math.max(worst, Math.abs(got[e]! - want[e]!) - ROPE_ABS_TOL_PER_TERM * scale);
    }
    expect(worst).toBeLessThanOrEqual(0);
  });

  it.each([7, 2048, 70001])("add n=%i is exact, in place too", (n) => {
    const a = randoms(n, n), b = randoms(n, n + 1);
    const want = Float32Array.from(a, (v, i) => v + b[i]!);
    nb.setKernelLevel(level);
    const got = new Float32Array(n);
    ew.add(a, b, got, n);
    expect(differing(got, want)).toBe(0);
    ew.add(a, b, a, n);
    expect(differing(a, want)).toBe(0);
  });

  it.each([7, 256, 70001])("toF16 n=%i equals f32ToF16 bit for bit", (n) => {
    const src = randoms(n, n, 8);
    // ties, subnormals, overflow, infinities, zeros and the rounding boundaries of the f16 range
    const special = [0, -0, 65504, 65519.99, 65520, -65520, 1e6, Infinity, -Infinity, 6e-8, 2.98e-8, 2.9802322387695312e-8,
      5.960464477539063e-8, 6.097555160522461e-5, 6.1035156e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11, -(1 + 2 ** -11), 1e-10, 0.1, -3.14159];
    for (let i = 0; i < special.length && i < n; i++) src[i] = special[i]!;
    for (let i = special.length; i + 1 < n; i += 37) src[i] = src[i]! * 1e-4; // subnormal halves
    const want = Uint16Array.from(src, (v) => f32ToF16(v));
    nb.setKernelLevel(level);
    const got = new Uint16Array(n + 1).fill(0xabcd);
    ew.toF16(src, got, n);
    expect(differing(got.subarray(0, n), want)).toBe(0);
    expect(got[n]).toBe(0xabcd);
    const nan = new Uint16Array(1);
    ew.toF16(new Float32Array([NaN]), nan, 1);
    expect((nan[0]! & 0x7c00) === 0x7c00 && (nan[0]! & 0x3ff) !== 0).toBe(true);
  });

  // The blocked key store (AttentionShape.keyBlocks): element e of position p at
  // ⌊p/32⌋·row·32 + e·32 + p mod 32, written by hand here; rows past 256 elements, positions
  // crossing blocks, T = 17. Every other element keeps its bits.
  it.each([[1, 0, 1, 24], [1, 31, 3, 40], [17, 20, 5, 64], [2, 63, 1, 256], [17, 130, 4, 72]])(
    "toF16Keys T=%i pos0=%i nKv=%i d=%i equals the blocked layout of f32ToF16 and storeKeyBlocks bit for bit", (T, pos0, nKv, d) => {
      const row = nKv * d, blocks = Math.ceil((pos0 + T) / 32) + 1;
      const src = randoms(T * row, T * 7 + pos0 + d, 8);
      const want = new Uint16Array(blocks * 32 * row).fill(0xabcd);
      for (let t = 0; t < T; t++) {
        const p = pos0 + t;
        for (let e = 0; e < row; e++) want[Math.floor(p / 32) * row * 32 + e * 32 + (p % 32)] = f32ToF16(src[t * row + e]!);
      }
      nb.setKernelLevel(level);
      const got = new Uint16Array(want.length).fill(0xabcd);
      ew.toF16Keys(src, got, T, pos0, nKv, d);
      expect(differing(got, want)).toBe(0);
      const spec = new Uint16Array(want.length).fill(0xabcd);
      storeKeyBlocks({ cfg: undefined!, backend: refBackend, rope: undefined! }, src, spec, T, pos0, nKv, d);
      expect(differing(spec, want)).toBe(0);
    });

  // Lengths across the kernel's blocks (16 lanes × 16) and tails; ties at the maximum (the
  // lowest index wins), NaNs (never chosen), ±∞, ±0, and rows where nothing exceeds −∞ (0).
  it.each([1, 3, 16, 17, 255, 256, 257, 1000, 32000, 32003])("argmax n=%i equals the sampler's argmax", (n) => {
    nb.setKernelLevel(level);
    const r = rng(n);
    const pick = (x: Float32Array): number => { const id = Int32Array.of(-7); ew.argmax(x, x.length, id); return id[0]!; };
    const cases: Float32Array[] = [];
    const plain = randoms(n, n);
    cases.push(plain);
    // a tie of the maximum at two places, the later one first in a later block
    const tie = randoms(n, n + 1, 1);
    const a = Math.floor(r() * n), b = Math.floor(r() * n);
    tie[a] = 5; tie[b] = 5;
    cases.push(tie);
    // few distinct values: many ties everywhere
    cases.push(Float32Array.from({ length: n }, () => Math.floor(r() * 3)));
    // NaNs all over, one larger than everything before a NaN-only tail
    const nan = randoms(n, n + 2).map((v, i) => (i % 3 === 1 || i > n - 5 ? NaN : v));
    cases.push(nan);
    cases.push(new Float32Array(n).fill(NaN));
    cases.push(new Float32Array(n).fill(-Infinity));
    cases.push(Float32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? NaN : -Infinity)));
    const inf = randoms(n, n + 3);
    inf[n - 1] = Infinity;
    if (n > 2) inf[Math.floor(n / 2)] = Infinity;
    cases.push(inf);
    cases.push(Float32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? -0 : 0)));
    const last = new Float32Array(n).fill(-1);
    last[n - 1] = 1;
    cases.push(last);
    for (const x of cases) expect(pick(x)).toBe(argmax(x));
    // and the cases are not all the same answer: the comparison can fail
    if (n > 16) expect(new Set(cases.map((x) => argmax(x))).size).toBeGreaterThan(2);
  });
});

it("the elementwise ops refuse bad arguments", () => {
  const x = new Float32Array(16), w = new Float32Array(4);
  expect(() => ew.rmsNorm(x, w, 2, 4, 1e-5, new Float32Array(7))).toThrow(UsageError);
  expect(() => ew.rmsNorm(x, w, 2, 4, 1e-5, x.subarray(1))).toThrow(/overlaps/);
  expect(() => ew.rmsNorm(x, w, 2, 4, -1, x)).toThrow(UsageError);
  expect(() => ew.rope(x, 1, 2, 4, 3, new Float32Array(7), new Float32Array(8))).toThrow(/cos/);
  expect(() => ew.rope(x, 1, 1, 3, 0, w, w)).toThrow(UsageError);
  expect(() => ew.add(x, x, x.subarray(2), 4)).toThrow(/overlaps/);
  expect(() => ew.toF16(x, new Uint16Array(3), 4)).toThrow(UsageError);
  expect(() => ew.toF16(x, new Uint16Array(x.buffer), 4)).toThrow(/overlaps/);
  expect(() => ew.argmax(x, 17, new Int32Array(1))).toThrow(UsageError);
  expect(() => ew.argmax(x, 0, new Int32Array(1))).toThrow(UsageError);
  expect(() => ew.argmax(x, 4, new Int32Array(0))).toThrow(/id/);
  // positions 0..32 need two whole blocks of 32 × 4 elements
  expect(() => ew.toF16Keys(x.subarray(0, 4), new Uint16Array(255), 1, 32, 1, 4)).toThrow(/whole blocks/);
  expect(() => ew.toF16Keys(x.subarray(0, 4), new Uint16Array(256), 1, 32, 1, 4)).not.toThrow();
  const big = new Float32Array(80);
  expect(() => ew.toF16Keys(big.subarray(0, 4), new Uint16Array(big.buffer, 16, 128), 1, 0, 1, 4)).toThrow(/shares src/);
  expect(() => ew.toF16Keys(x.subarray(0, 3), new Uint16Array(256), 1, 0, 1, 4)).toThrow(UsageError);
});

/**
 * The per-weight conversion kernels (native/src/convert*.cc via src/backend/native-convert.ts)
 * against their references, at every SIMD level: the TS references of weight-kernels.ts
 * (which call dtype.ts, the ggml reference quantizers of pack/gguf-blocks.ts and packStream),
 * rtnQuantizeLinear for RTN. Everything must be bit-identical, special values included.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNativeBackend, type KernelLevel, type NativeBackend } from "../../src/backend/native.ts";
import { refWeightKernels, type WeightDType } from "../../src/backend/weight-kernels.ts";
import { rtnQuantizeLinear, rtnQuantizeRows, rtnQuantizeRowsRef } from "../../src/methods/rtn.ts";
import { relWeightError } from "../../src/quantize/report.ts";
import { dequantize } from "../../src/tensor/quantized.ts";
import { fromF32, toF32 } from "../../src/tensor/dtype.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { UsageError } from "../../src/util/errors.ts";

let nb: NativeBackend;
beforeAll(() => { nb = createNativeBackend({ threads: 2 }); });
afterAll(() => { nb.setKernelLevel(nb.kernelLevels()[0]!); });
const levels = (): KernelLevel[] => createNativeBackend({ threads: 2 }).kernelLevels();

/** [N, K] weights of a given spread stored as `dtype`, with a few exact ties and zero rows mixed in. */
function weights(N: number, K: number, dtype: WeightDType, seed: number, scale = 0.05): Uint16Array | Float32Array {
  const r = mulberry32(seed);
  const x = Float32Array.from({ length: N * K }, (_, i) => {
    const row = Math.floor(i / K);
    if (row === 1) return 0; // an all-zero row: the ±1 fallback grid
    if (row === 2) return (i % 7) * 2 ** -30; // below f16 resolution: the subnormal-scale fallback
    return (r() - 0.5) * scale * (1 + (row % 5)) + (i % 97 === 0 ? 0.5 : 0);
  });
  if (dtype === "F32") return x;
  const b = fromF32(dtype, x);
  return new Uint16Array(b.buffer, 0, N * K);
}

/** Every 16-bit pattern once (NaNs, infinities, subnormals, both zeros) as one [2048, 32] matrix. */
const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);

describe.each(levels())("convert kernels, level %s", (level) => {
  beforeAll(() => nb.setKernelLevel(level));

  it.each(["F16", "BF16"] as const)("decode %s of all 65536 patterns = toF32", (t) => {
    const got = new Float32Array(65536);
    expect(nb.weights!.convertRows(ALL16, t, null, 2048, 32, got, "F32")).toBe(-1);
    const want = toF32(t, new Uint8Array(ALL16.buffer));
    expect(new Uint32Array(got.buffer)).toEqual(new Uint32Array(want.buffer));
  });

  it("F16 encode of every BF16 value that fits = fromF32, NaN canonical; the first |x| > 65504 is reported", () => {
    const fits = ALL16.filter((h) => !(Math.abs(toF32("BF16", new Uint8Array(Uint16Array.of(h).buffer))[0]!) > 65504));
    const n = Math.floor(fits.length / 32) * 32, src = fits.subarray(0, n);
    const got = new Uint16Array(n), want = new Uint16Array(n);
    expect(nb.weights!.convertRows(src, "BF16", null, n / 32, 32, got, "F16")).toBe(-1);
    expect(refWeightKernels.convertRows(src, "BF16", null, n / 32, 32, want, "F16")).toBe(-1);
    expect(got).toEqual(want);
    const x = Float32Array.from({ length: 4 * 40 }, (_, i) => (i === 101 || i === 150 ? 70000 : i)); // rows of 40: a tail
    expect(nb.weights!.convertRows(x, "F32", null, 4, 40, new Uint16Array(160), "F16")).toBe(101);
    expect(refWeightKernels.convertRows(x, "F32", null, 4, 40, new Uint16Array(160), "F16")).toBe(101);
  });

  it("row order (the Q/K permutation) in the same pass", () => {
    const src = weights(64, 96, "BF16", 3) as Uint16Array, rows = Int32Array.from({ length: 64 }, (_, r) => (r * 37) % 64);
    for (const dt of ["F16", "F32"] as const) {
      const got = dt === "F16" ? new Uint16Array(64 * 96) : new Float32Array(64 * 96), want = got.slice();
      nb.weights!.convertRows(src, "BF16", rows, 64, 96, got, dt);
      refWeightKernels.convertRows(src, "BF16", rows, 64, 96, want, dt);
      expect(got).toEqual(want);
    }
  });

  it.each([["Q4_0", 18], ["Q8_0", 34]] as const)("%s of F32 / F16 / BF16 rows = the ggml reference quantizer", (type, bpb) => {
    for (const dt of ["F32", "F16", "BF16"] as const) {
      const N = 67, K = 256, src = weights(N, K, dt, 7);
      const rows = Int32Array.from({ length: N }, (_, r) => N - 1 - r);
      for (const order of [null, rows]) {
        const got = new Uint8Array(N * K / 32 * bpb), want = got.slice();
        nb.weights!.ggmlQuantizeRows(src, dt, order, N, K, type, got);
        refWeightKernels.ggmlQuantizeRows(src, dt, order, N, K, type, want);
        expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
      }
    }
  });

  it("RTN: codes, scales, zeros = rtnQuantizeLinear for 2/3/4/8 bits, sym/asym, groups 32/128/-1, odd K; sums = the reference's", () => {
    for (const [bits, g, sym, K] of [[4, 128, true, 512], [4, 128, false, 384], [3, 32, false, 96], [2, 64, true, 256], [8, 32, false, 160], [4, -1, false, 203], [4, 32, true, 70]] as const) {
      for (const dt of ["F32", "BF16", "F16"] as const) {
        const N = 37, src = weights(N, K, dt, bits * 1000 + K);
        const W = dt === "F32" ? (src as Float32Array) : toF32(dt, new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
        const want = rtnQuantizeLinear({ weight: W, rows: N, cols: K, bits, groupSize: g, sym });
        const got = rtnQuantizeRows(nb.weights!, src, dt, N, K, bits, g, sym);
        expect(got.nonFinite).toBe(-1);
        expect(got.q.codes).toEqual(want.codes);
        expect(got.q.scales).toEqual(want.scales);
        expect(got.q.zeros).toEqual(want.zeros);
        expect(got.q.gIdx).toEqual(want.gIdx);
        const gg = g === -1 ? K : g;
        const ref = rtnQuantizeRowsRef(src, dt, N, K, bits, gg, sym, { codes: new Uint8Array(N * K), scales: new Float32Array(N * Math.ceil(K / gg)), zeros: new Uint8Array(N * Math.ceil(K / gg)) });
        expect([got.num, got.den]).toEqual([ref.num, ref.den]); // same summation order, same bits
        const e = relWeightError(W, dequantize(want)); // the sequential sum of the report before
        expect(Math.abs(got.num / got.den - e)).toBeLessThanOrEqual(1e-12 * e);
      }
    }
  });

  it("RTN reports the first non-finite weight", () => {
    const src = weights(16, 64, "F32", 5) as Float32Array;
    src[5 * 64 + 9] = Infinity;
    src[9 * 64 + 1] = NaN;
    expect(rtnQuantizeRows(nb.weights!, src, "F32", 16, 64, 4, 32, true).nonFinite).toBe(5 * 64 + 9);
    expect(rtnQuantizeRows(refWeightKernels, src, "F32", 16, 64, 4, 32, true).nonFinite).toBe(5 * 64 + 9);
  });

  it.each([2, 4, 8] as const)("GPTQ qweight packing of %i-bit codes = packStream", (bits) => {
    const N = 48, K = 256, r = mulberry32(bits);
    const codes = Uint8Array.from({ length: N * K }, () => Math.floor(r() * 2 ** bits));
    const got = new Int32Array(K * bits / 32 * N), want = got.slice();
    nb.weights!.gptqPackCodes(codes, N, K, bits, got);
    refWeightKernels.gptqPackCodes(codes, N, K, bits, want);
    expect(got).toEqual(want);
  });
});

describe("convert kernels: threads and arguments", () => {
  it("1 and 2 threads give the same bits", () => {
    const src = weights(300, 512, "BF16", 11);
    const one = createNativeBackend({ threads: 1 });
    const a = rtnQuantizeRows(one.weights!, src, "BF16", 300, 512, 4, 128, true);
    const qa = new Uint8Array(300 * 512 / 32 * 18);
    one.weights!.ggmlQuantizeRows(src, "BF16", null, 300, 512, "Q4_0", qa);
    const two = createNativeBackend({ threads: 2 });
    const b = rtnQuantizeRows(two.weights!, src, "BF16", 300, 512, 4, 128, true);
    const qb = new Uint8Array(qa.length);
    two.weights!.ggmlQuantizeRows(src, "BF16", null, 300, 512, "Q4_0", qb);
    expect(b.q.codes).toEqual(a.q.codes);
    expect([b.num, b.den]).toEqual([a.num, a.den]);
    expect(qb).toEqual(qa);
  });

  it("short arrays and bad rows are UsageErrors, not crashes", () => {
    const src = new Uint16Array(64);
    expect(() => nb.weights!.convertRows(src, "BF16", null, 2, 64, new Float32Array(128), "F32")).toThrow(UsageError);
    expect(() => nb.weights!.convertRows(src, "BF16", Int32Array.of(0, 5), 2, 32, new Float32Array(64), "F32")).toThrow(/row index/);
    expect(() => nb.weights!.ggmlQuantizeRows(src, "BF16", null, 1, 48, "Q4_0", new Uint8Array(100))).toThrow(/multiple of 32/);
    expect(() => nb.weights!.convertRows(new Float32Array(64), "BF16", null, 2, 32, new Float32Array(64), "F32")).toThrow(/dtype/);
  });
});

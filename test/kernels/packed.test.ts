/**
 * Packed-weight matmul (native/src/packed_*.cc) against the meaning of its canonical
 * inputs: y = x[:, perm] · dequantize(W)ᵀ computed here in f64 (packed-ref.ts), for
 * every kernel level this CPU runs, and every fast level against the scalar
 * reference tiles. Shapes are odd on purpose: K not a multiple of 32 (the code
 * block) nor of the SIMD width, N not a multiple of the 16-row interleave, M = 1,
 * 2, 3, 5, 8 (the span kernels) and 17 (several activation tiles).
 */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { createNativeBackend, PackedWeight, type KernelLevel, type NativeBackend } from "../../src/backend/native.ts";
import { UsageError } from "../../src/util/errors.ts";
import {
  bf16BitsToNumber, dequantQ4, dequantQ8, f16BitsToNumber, F32_EPS, gather, int8ActBound, randF32, randPerm, randScales, refMatmulF64, rng, toF16,
} from "./packed-ref.ts";

/**
 * f32 rounding: every output is a sum of K products (and, on the int8 path, of
 * per-block terms of at most that magnitude), so it is off by at most the classic
 * γ_K ≈ K·ε bound on Σ|terms|; `mag` is that Σ (|s·q| + |m| per weight with mins).
 */
const F32_SUM_TOL_PER_TERM = F32_EPS;
/** The int8 tiles follow the scalar reference's order of f32 operations exactly. */
const INT8_TILES_EQUAL_BITS = 0;

/** 1: the M = 1 spans; 2, 3, 5, 8: the small-M spans (2–4 streams, MR rows each); 17: GEMM tiles. */
const MS = [1, 2, 3, 5, 8, 17];

interface Q4Case { N: number; K: number; g: number; mins: boolean; perm: boolean; f16: boolean }
const Q4_CASES: Q4Case[] = [
  { N: 37, K: 200, g: 32, mins: false, perm: false, f16: true },   // Q4_0-like, K % 32 ≠ 0
  { N: 37, K: 300, g: 128, mins: true, perm: true, f16: false },   // act-order GPTQ with zeros, f32 scales
  { N: 16, K: 100, g: 100, mins: false, perm: true, f16: true },   // one group per row
  { N: 50, K: 256, g: 64, mins: true, perm: false, f16: true },
  // 7 row groups (the M = 1 span kernel's two streams + a leftover), Ba = 96 (3 sub-blocks)
  { N: 100, K: 70, g: 70, mins: false, perm: false, f16: true },
  { N: 100, K: 96, g: 96, mins: true, perm: false, f16: true },
  // f32 scales without mins, Ba = 64 (2 sub-blocks), K % 64 ≠ 0, 3 row groups (a stream pair + a leftover)
  { N: 45, K: 200, g: 64, mins: false, perm: false, f16: false },
  // long K (385 activation blocks), mins, M = 17 = 4 GEMM tiles of 4 rows + 1
  { N: 20, K: 12300, g: 32, mins: true, perm: false, f16: true },
  // 13 row groups: every stream count of the small-M spans (2, 3, 4) gets whole rounds and a leftover
  { N: 203, K: 200, g: 32, mins: false, perm: false, f16: true },
  { N: 203, K: 264, g: 128, mins: true, perm: true, f16: true },
];

interface Q8Case { N: number; K: number; g: number; perm: boolean; f16: boolean }
const Q8_CASES: Q8Case[] = [
  { N: 37, K: 200, g: 32, perm: false, f16: true },   // Q8_0-like
  { N: 20, K: 300, g: 300, perm: true, f16: false },  // per-row int8 (8-bit GPTQ act-order)
  { N: 100, K: 96, g: 96, perm: false, f16: true },   // 7 row groups, Ba = 96
  { N: 90, K: 256, g: 64, perm: false, f16: false },  // Ba = 64, f32 scales
  { N: 20, K: 12300, g: 128, perm: true, f16: true }, // long K, act-order
  { N: 40, K: 150, g: 32, perm: false, f16: false },  // Ba = 32 with f32 scales, K % 32 ≠ 0
  { N: 203, K: 200, g: 32, perm: false, f16: true },  // 13 row groups (the small-M spans' streams + leftovers)
];

/** The CPU's feature flags from /proc/cpuinfo ([] off Linux). */
function cpuFlags(): string[] {
  try { return (/^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "").split(" "); } catch { return []; }
}

function check(name: string, got: Float32Array, want: Float64Array, tol: Float64Array): void {
  let worst = -Infinity, at = -1;
  for (let i = 0; i < want.length; i++) {
    const excess = Math.abs(got[i]! - want[i]!) - tol[i]!;
    if (!(excess <= worst)) [worst, at] = [excess, i];
  }
  if (!(worst <= 0)) {
    expect.fail(`${name}: element ${at}: got ${got[at]}, want ${want[at]} ± ${tol[at]}`);
  }
}

function bound(abs: Float64Array, K: number, extra?: Float64Array): Float64Array {
  return abs.map((a, i) => K * F32_SUM_TOL_PER_TERM * a * (1 + 1 / 127) + (extra?.[i] ?? 0) + 1e-30);
}

describe("packed matmul", () => {
  let nb: NativeBackend;
  let levels: KernelLevel[];
  beforeAll(() => {
    nb = createNativeBackend({ threads: 1 });
    levels = nb.kernelLevels();
  });

  it("runs the AVX-512 VNNI packed kernels at level avx512 exactly when the CPU reports AVX-512 F/BW/VL/VNNI", () => {
    const flags = cpuFlags();
    const vnni = ["avx512f", "avx512bw", "avx512vl", "avx512_vnni"].every((f) => flags.includes(f));
    const saved = nb.kernelLevel;
    try {
      for (const level of levels) {
        nb.setKernelLevel(level);
        expect(nb.packedKernelLevel).toBe(level === "avx512" && !vnni && flags.length > 0 ? "avx2" : level);
      }
    } finally {
      nb.setKernelLevel(saved);
    }
  });

  it("offers level amx (AMX-INT8 packed GEMM) exactly when Linux reports amx_tile and amx_int8", () => {
    const flags = cpuFlags();
    if (flags.length === 0) { console.log("amx level check skipped: no /proc/cpuinfo"); return; }
    const amx = ["amx_tile", "amx_int8", "avx512_vnni"].every((f) => flags.includes(f));
    expect(levels.includes("amx")).toBe(amx);
    if (!amx) console.log("no AMX-INT8 on this CPU: the amx level and its tests are skipped");
  });

  function runLevels(w: PackedWeight, x: Float32Array, M: number, bias: Float32Array | undefined, acts: "int8" | "f32"): Map<KernelLevel, Float32Array> {
    const out = new Map<KernelLevel, Float32Array>();
    const saved = nb.kernelLevel;
    try {
      for (const level of levels) {
        nb.setKernelLevel(level);
        out.set(level, nb.matmulPacked(x, w, M, bias, undefined, { activations: acts }));
      }
    } finally {
      nb.setKernelLevel(saved);
    }
    return out;
  }

  it.each(Q4_CASES)("int4 N=$N K=$K g=$g mins=$mins perm=$perm f16=$f16 equals x'·dequant(W)ᵀ", (c) => {
    const r = rng(c.N * 1000 + c.K + c.g);
    const G = Math.ceil(c.K / Math.min(c.g, c.K));
    const codes = Uint8Array.from({ length: c.N * c.K }, () => Math.floor(r() * 16));
    const scales = randScales(c.N * G, r, c.f16);
    const mins = c.mins ? randScales(c.N * G, r, c.f16).map((v) => (c.f16 ? toF16 : Number)(-8 * v * (0.5 + r()))) : null;
    const perm = c.perm ? randPerm(c.K, r) : null;
    const w = nb.packQ4({ codes, scales, mins, N: c.N, K: c.K, groupSize: c.g, perm });
    expect(w.layout).toBe("q4x16");
    expect(w.scaleBytes).toBe(c.f16 ? 2 : 4);
    const { w: W, mag } = dequantQ4(codes, scales, mins, c.N, c.K, c.g);
    for (const M of MS) {
      const x = randF32(M * c.K, r);
      const bias = M === 3 ? randF32(c.N, r) : undefined;
      const xg = gather(x, M, c.K, perm);
      const ref = refMatmulF64(xg, W, M, c.K, c.N, bias);
      const refMag = refMatmulF64(xg.map(Math.abs), mag, M, c.K, c.N, bias?.map(Math.abs));
      const f32 = runLevels(w, x, M, bias, "f32");
      const int8 = runLevels(w, x, M, bias, "int8");
      const actTol = int8ActBound(xg, W, M, c.K, c.N, w.activationBlock);
      for (const level of levels) {
        check(`f32 path ${level} M=${M}`, f32.get(level)!, ref.y, bound(refMag.abs, c.K));
        check(`int8 path ${level} M=${M}`, int8.get(level)!, ref.y, bound(refMag.abs, c.K, actTol));
        const diff = int8.get(level)!.map((v, i) => Math.abs(v - int8.get("scalar")![i]!));
        expect(Math.max(...diff), `int8 ${level} vs scalar M=${M}`).toBeLessThanOrEqual(INT8_TILES_EQUAL_BITS);
      }
    }
    w.dispose();
  });

  it.each(Q8_CASES)("int8 N=$N K=$K g=$g perm=$perm f16=$f16 equals x'·dequant(W)ᵀ", (c) => {
    const r = rng(7 + c.N * 1000 + c.K);
    const G = Math.ceil(c.K / Math.min(c.g, c.K));
    const codes = Int8Array.from({ length: c.N * c.K }, () => Math.floor(r() * 256) - 128);
    const scales = randScales(c.N * G, r, c.f16);
    const perm = c.perm ? randPerm(c.K, r) : null;
    const w = nb.packQ8({ codes, scales, N: c.N, K: c.K, groupSize: c.g, perm });
    expect(w.layout).toBe("q8x16");
    const W = dequantQ8(codes, scales, c.N, c.K, c.g);
    for (const M of MS) {
      const x = randF32(M * c.K, r);
      const xg = gather(x, M, c.K, perm);
      const ref = refMatmulF64(xg, W, M, c.K, c.N);
      const refAbs = refMatmulF64(xg.map(Math.abs), W.map(Math.abs), M, c.K, c.N);
      const f32 = runLevels(w, x, M, undefined, "f32");
      const int8 = runLevels(w, x, M, undefined, "int8");
      const actTol = int8ActBound(xg, W, M, c.K, c.N, w.activationBlock);
      for (const level of levels) {
        check(`f32 path ${level} M=${M}`, f32.get(level)!, ref.y, bound(refAbs.abs, c.K));
        check(`int8 path ${level} M=${M}`, int8.get(level)!, ref.y, bound(refAbs.abs, c.K, actTol));
        const diff = int8.get(level)!.map((v, i) => Math.abs(v - int8.get("scalar")![i]!));
        expect(Math.max(...diff), `int8 ${level} vs scalar M=${M}`).toBeLessThanOrEqual(INT8_TILES_EQUAL_BITS);
      }
    }
    w.dispose();
  });

  it.each([
    { dtype: "f16" as const, N: 37, K: 100 },
    { dtype: "bf16" as const, N: 21, K: 19 },
  ])("$dtype N=$N K=$K equals x·Wᵀ", ({ dtype, N, K }) => {
    const r = rng(N + K);
    // Finite values of moderate size: random exponent bits near 1, random mantissa and sign.
    const data = Uint16Array.from({ length: N * K }, () =>
      dtype === "f16" ? ((r() < 0.5 ? 0x8000 : 0) | ((12 + Math.floor(r() * 5)) << 10) | Math.floor(r() * 1024))
        : ((r() < 0.5 ? 0x8000 : 0) | ((124 + Math.floor(r() * 5)) << 7) | Math.floor(r() * 128)));
    const W = Float64Array.from(data, dtype === "f16" ? f16BitsToNumber : bf16BitsToNumber);
    const w = nb.pack16({ data, dtype, N, K });
    expect(w.layout).toBe(`${dtype}x16`);
    for (const M of MS) {
      const x = randF32(M * K, r);
      const xg = gather(x, M, K, null);
      const ref = refMatmulF64(xg, W, M, K, N);
      const refAbs = refMatmulF64(xg.map(Math.abs), W.map(Math.abs), M, K, N);
      const got = runLevels(w, x, M, undefined, "f32");
      for (const level of levels) check(`${dtype} ${level} M=${M}`, got.get(level)!, ref.y, bound(refAbs.abs, K));
    }
  });

  /**
   * The AMX GEMM (M ≥ 16, packed_amx.cc): M = 16 (one A tile), 17 (two tiles, the second
   * of 1 row), 33 (a 32-row pair + a 1-row tail), 512 (prefill); N not a multiple
   * of 16 and odd row-group counts (a single row group after the pairs); one group and
   * several; Ba = 32, 64, 96 (32-k steps), 128; mins; f32 scales; act-order; 1 and 2 threads.
   */
  describe.skipIf(!createNativeBackend().kernelLevels().includes("amx"))("amx level (AMX-INT8 tiles)", () => {
    const AMX_MS = [16, 17, 33, 512];
    const cases = [
      { bits: 4, N: 37, K: 200, g: 32, mins: false, perm: false, f16: true },    // Q4_0-like, 3 row groups
      { bits: 4, N: 45, K: 1000, g: 128, mins: true, perm: true, f16: true },    // GPTQ g128 with zeros, act-order
      { bits: 4, N: 20, K: 96, g: 96, mins: false, perm: false, f16: false },    // one group, Ba = 96: 32-k steps
      { bits: 4, N: 50, K: 256, g: 64, mins: true, perm: false, f16: false },    // Ba = 64, f32 scales and mins
      { bits: 4, N: 16, K: 300, g: 300, mins: true, perm: false, f16: true },    // one group per row, Ba = 128
      { bits: 8, N: 37, K: 200, g: 32, mins: false, perm: false, f16: true },    // Q8_0-like
      { bits: 8, N: 90, K: 640, g: 128, mins: false, perm: true, f16: false },   // int8 g128, act-order, f32 scales
      { bits: 8, N: 21, K: 300, g: 300, mins: false, perm: false, f16: true },   // per-row int8
    ];
    it.each(cases)("int$bits N=$N K=$K g=$g mins=$mins perm=$perm f16=$f16: amx equals scalar bit for bit", (c) => {
      const r = rng(3 + c.N * 1000 + c.K + c.g);
      const G = Math.ceil(c.K / Math.min(c.g, c.K));
      const scales = randScales(c.N * G, r, c.f16);
      const perm = c.perm ? randPerm(c.K, r) : null;
      const w = c.bits === 4
        ? nb.packQ4({
          codes: Uint8Array.from({ length: c.N * c.K }, () => Math.floor(r() * 16)), scales, N: c.N, K: c.K, groupSize: c.g, perm,
          mins: c.mins ? randScales(c.N * G, r, c.f16).map((v) => (c.f16 ? toF16 : Number)(-8 * v * (0.5 + r()))) : null,
        })
        : nb.packQ8({ codes: Int8Array.from({ length: c.N * c.K }, () => Math.floor(r() * 256) - 128), scales, N: c.N, K: c.K, groupSize: c.g, perm });
      const saved = nb.kernelLevel;
      try {
        for (const M of AMX_MS) {
          const x = randF32(M * c.K, r);
          const bias = M === 17 ? randF32(c.N, r) : undefined;
          nb.setKernelLevel("scalar");
          const want = nb.matmulPacked(x, w, M, bias);
          nb.setKernelLevel("amx");
          expect(nb.packedKernelLevel).toBe("amx");
          for (const threads of [1, 2]) {
            nb.setThreads(threads);
            const got = nb.matmulPacked(x, w, M, bias);
            const diff = got.map((v, i) => Math.abs(v - want[i]!));
            expect(Math.max(...diff), `amx vs scalar M=${M} threads=${threads}`).toBe(INT8_TILES_EQUAL_BITS);
            expect(got.every(Number.isFinite)).toBe(true);
          }
        }
      } finally {
        nb.setThreads(1);
        nb.setKernelLevel(saved);
      }
      w.dispose();
    });
  });

  it("gives the same bits on two threads as on one", () => {
    const r = rng(99);
    const N = 2056, K = 512;  // 2·N·K ≥ the driver's serial threshold even at M = 1; 129 row groups
    const codes = Uint8Array.from({ length: N * K }, () => Math.floor(r() * 16));
    const w = nb.packQ4({ codes, scales: randScales(N * 4, r, true), mins: null, N, K, groupSize: 128, perm: null });
    const w8 = nb.packQ8({ codes: Int8Array.from(codes, (c) => 16 * c - 128), scales: randScales(N * 16, r, true), N, K, groupSize: 32, perm: null });
    for (const M of [1, 5]) {  // M = 1: each thread's span kernel over its own row groups
      const x = randF32(M * K, r);
      const one = [nb.matmulPacked(x, w, M), nb.matmulPacked(x, w8, M)];
      nb.setThreads(2);
      try {
        expect(nb.matmulPacked(x, w, M)).toEqual(one[0]);
        expect(nb.matmulPacked(x, w8, M)).toEqual(one[1]);
      } finally {
        nb.setThreads(1);
      }
    }
    w8.dispose();
  });

  it("matmulPackedAsync gives the bits of matmulPacked, and dispose() waits for it", async () => {
    const r = rng(5);
    const N = 64, K = 256, M = 17;
    const w = nb.packQ8({ codes: Int8Array.from({ length: N * K }, () => Math.floor(r() * 256) - 128), scales: randScales(N * 8, r, true), N, K, groupSize: 32, perm: null });
    const x = randF32(M * K, r);
    const sync = nb.matmulPacked(x, w, M);
    const pending = nb.matmulPackedAsync(x, w, M);
    w.dispose();
    expect(await pending).toEqual(sync);
    expect(() => nb.matmulPacked(x, w, M)).toThrow(/disposed/);
  });

  it("rejects bad arguments with a UsageError naming the field", () => {
    const codes = new Uint8Array(16 * 64), scales = new Float32Array(16 * 4).fill(0.1);
    expect(() => nb.packQ4({ codes, scales, mins: null, N: 16, K: 64, groupSize: 16, perm: null })).toThrow(/groupSize/);
    expect(() => nb.packQ4({ codes, scales: new Float32Array(3), mins: null, N: 16, K: 64, groupSize: 32, perm: null })).toThrow(UsageError);
    expect(() => nb.packQ8({ codes: new Int8Array(16 * 64), scales: new Float32Array(32).fill(1), N: 16, K: 64, groupSize: 32, perm: new Int32Array(64) })).toThrow(/perm/);
    const w = nb.packQ4({ codes, scales: new Float32Array(32).fill(0.1), mins: null, N: 16, K: 64, groupSize: 32, perm: null });
    expect(() => nb.matmulPacked(new Float32Array(63), w, 1)).toThrow(/x/);
    w.dispose();
    expect(w.disposed).toBe(true);
    expect(() => nb.matmulPacked(new Float32Array(64), w, 1)).toThrow(/disposed/);
  });
});

/**
 * Row-major 16-bit views (NativeBackend.mapFile + view16; native/src/packed_map.cc, the
 * h16Rows / h16Pack kernels): the stored bytes of a file, at any alignment, against
 * x·Wᵀ in f64 at every kernel level this CPU runs; the small-M row streams (M ≤ 8) of the
 * scalar level bit-equal to the interleaved layout's scalar tile (same k order), the SIMD
 * ones within the f32 bound (k split into lanes); M > 8 (row groups packed into f16x16 on
 * the fly, then the h16 tile) bit-equal to the interleaved layout at the same level. Odd
 * N, K not a multiple of 8/16/32, a tensor that ends at the end of a page-aligned file,
 * fused q|k|v views of one file with no copy, two threads, and the mapping's lifetime.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNativeBackend, type KernelLevel, type NativeBackend, type PackedWeight } from "../../src/backend/native.ts";
import type { MappedFile } from "../../src/backend/backend.ts";
import { UsageError } from "../../src/util/errors.ts";
import { bf16BitsToNumber, F32_EPS, f16BitsToNumber, randF32, refMatmulF64, rng } from "./packed-ref.ts";

/** 1…8: the row streams (MR = 2 or 4 activation rows per pass and a partial one; AVX-512 M = 7, 8: 2 rows × M in one pass); 17, 64: packed row groups. */
const MS = [1, 2, 3, 5, 7, 8, 17, 64];
const ROWS_MAX_M = 8;

type Dtype = "f16" | "bf16";
interface Case { dtype: Dtype; N: number; K: number; lead: number }
const CASES: Case[] = [
  { dtype: "bf16", N: 37, K: 100, lead: 3 },    // odd offset: rows not 2-aligned; K % 16 ≠ 0
  { dtype: "f16", N: 21, K: 19, lead: 8 },      // K < 32, N < 2 row groups
  { dtype: "bf16", N: 50, K: 531, lead: 7 },    // 4-row streams + a 2-row tail, 33 zmm of k + 3
  { dtype: "f16", N: 33, K: 2055, lead: 1 },    // long K: 2055 = 128·16 + 7
  { dtype: "bf16", N: 17, K: 64, lead: -1 },    // ends exactly at the file's (page-aligned) end
];

/** Finite values of moderate size: random exponent bits near 1, random mantissa and sign. */
function rand16(dtype: Dtype, n: number, r: () => number): Uint16Array {
  return Uint16Array.from({ length: n }, () =>
    dtype === "f16" ? ((r() < 0.5 ? 0x8000 : 0) | ((12 + Math.floor(r() * 5)) << 10) | Math.floor(r() * 1024))
      : ((r() < 0.5 ? 0x8000 : 0) | ((124 + Math.floor(r() * 5)) << 7) | Math.floor(r() * 128)));
}

/** γ_K on Σ|w·x|: any order of K f32 additions is off by at most K·ε of it. */
function bound(abs: Float64Array, K: number): Float64Array {
  return abs.map((a) => K * F32_EPS * a + 1e-30);
}

function check(name: string, got: Float32Array, want: Float64Array, tol: Float64Array): void {
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i]! - want[i]!) <= tol[i]!)) expect.fail(`${name}: element ${i}: got ${got[i]}, want ${want[i]} ± ${tol[i]}`);
  }
}

let dir: string;
let nb: NativeBackend;
let levels: KernelLevel[];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "qllm-rows16-"));
  nb = createNativeBackend({ threads: 1 });
  levels = nb.kernelLevels();
});
afterAll(() => {
  nb.setKernelLevel(levels[0]!);
  nb.setThreads(1);
  rmSync(dir, { recursive: true, force: true });
});

/** Writes `lead` junk bytes (or pads to a page-aligned end when lead < 0), then the tensors back to back; returns their offsets. */
function writeTensors(name: string, tensors: Uint16Array[], lead: number): { path: string; offsets: number[] } {
  const total = tensors.reduce((a, t) => a + t.byteLength, 0);
  const start = lead >= 0 ? lead : Math.ceil(total / 4096) * 4096 - total;
  const bytes = new Uint8Array(start + total).fill(0xa5, 0, start);
  const offsets: number[] = [];
  let at = start;
  for (const t of tensors) {
    bytes.set(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), at);
    offsets.push(at);
    at += t.byteLength;
  }
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { path, offsets };
}

function atLevels<T>(f: (level: KernelLevel) => T): Map<KernelLevel, T> {
  const out = new Map<KernelLevel, T>();
  const saved = nb.kernelLevel;
  try {
    for (const level of levels) {
      nb.setKernelLevel(level);
      out.set(level, f(level));
    }
  } finally {
    nb.setKernelLevel(saved);
  }
  return out;
}

describe("row-major 16-bit views", () => {
  it.each(CASES)("$dtype N=$N K=$K at byte $lead equals x·Wᵀ, and the interleaved layout", ({ dtype, N, K, lead }) => {
    const r = rng(N * 7 + K);
    const data = rand16(dtype, N * K, r);
    const { path, offsets } = writeTensors(`w-${N}-${K}.bin`, [data], lead);
    const file = nb.mapFile(path)!;
    expect(file).not.toBeNull();
    const view = nb.view16({ file, offset: offsets[0]!, dtype, N, K });
    file.release();  // the view keeps the mapping
    expect(view.layout).toBe(`${dtype}-rows`);
    expect(view.bytes).toBe(2 * N * K);
    const packed = nb.pack16({ data, dtype, N, K });
    const W = Float64Array.from(data, dtype === "f16" ? f16BitsToNumber : bf16BitsToNumber);
    for (const M of MS) {
      const x = randF32(M * K, r);
      const xd = Float64Array.from(x);
      const ref = refMatmulF64(xd, W, M, K, N);
      const tol = bound(refMatmulF64(xd.map(Math.abs), W.map(Math.abs), M, K, N).abs, K);
      const got = atLevels(() => [nb.matmulPacked(x, view, M), nb.matmulPacked(x, packed, M)] as const);
      for (const level of levels) {
        const [v, p] = got.get(level)!;
        check(`${level} M=${M}`, v, ref.y, tol);
        if (M > ROWS_MAX_M || level === "scalar") expect(v, `${level} M=${M}: bits of the interleaved layout`).toEqual(p);
      }
    }
    view.dispose();
    packed.dispose();
  });

  it("fuses q|k|v views of one file without a copy: matmulMany gives the bits of one matmul per view, on 1 and 2 threads", () => {
    const r = rng(11);
    const K = 72, Ns = [40, 17, 17];
    const datas = Ns.map((N) => rand16("bf16", N * K, r));
    const { path, offsets } = writeTensors("qkv.bin", datas, 5);
    const file = nb.mapFile(path)!;
    const make = () => Ns.map((N, i) => nb.view16({ file, offset: offsets[i]!, dtype: "bf16", N, K }));
    const ref = make(), views = nb.fuse(make()) as PackedWeight[];
    file.release();
    expect(views).not.toBeNull();
    expect(views.map((v) => v.layout)).toEqual(["bf16-rows", "bf16-rows", "bf16-rows"]);
    expect(nb.packedBytes(views[1]!)).toEqual(new Uint8Array(datas[1]!.buffer));
    const mixed = nb.pack16({ data: datas[0]!, dtype: "bf16", N: Ns[0]!, K });
    expect(nb.fuse([mixed, ref[1]!])).toBeNull();  // an interleaved matrix and a view cannot share one call
    mixed.dispose();
    for (const threads of [1, 2]) {
      nb.setThreads(threads);
      for (const M of [1, 3, 17]) {
        const x = randF32(M * K, r);
        atLevels((level) => {
          const outs = Ns.map((N) => new Float32Array(M * N));
          nb.matmulMany(x, M, K, views.map((w, i) => ({ w, N: Ns[i]!, out: outs[i]! })));
          ref.forEach((w, i) => expect(outs[i], `${level} M=${M} threads=${threads} part ${i}`).toEqual(nb.matmulPacked(x, w, M)));
        });
      }
    }
    nb.setThreads(1);
    for (const w of [...ref, ...views]) w.dispose();
  });

  it("refuses a tensor past the file's end, a released mapping, and a missing file", () => {
    const { path } = writeTensors("small.bin", [new Uint16Array(64)], 0);
    const file: MappedFile = nb.mapFile(path)!;
    expect(() => nb.view16({ file, offset: 2, dtype: "f16", N: 8, K: 8 })).toThrow(UsageError);
    expect(() => nb.view16({ file, offset: 0, dtype: "f16", N: 0, K: 8 })).toThrow(/N/);
    const w = nb.view16({ file, offset: 0, dtype: "f16", N: 8, K: 8 });
    file.release();
    expect(() => nb.view16({ file, offset: 0, dtype: "f16", N: 8, K: 8 })).toThrow(/released/);
    expect(nb.matmulPacked(new Float32Array(8).fill(1), w, 1)).toEqual(new Float32Array(8));  // still mapped: the view's reference
    w.dispose();
    expect(nb.mapFile(join(dir, "no-such-file"))).toBeNull();
  });
});

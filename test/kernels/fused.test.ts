/**
 * Concatenated packed weights (NativeBackend.fuse → native packedConcat / packedView,
 * matmulMany → matmulPackedParts): one call on q|k|v or gate|up gives, bit for bit, what
 * one matmul per weight gives on the unfused packs (same tiles, same activation
 * quantization), at every kernel level this CPU runs, 1 and 2 threads, M = 1, 3, 4, 8, 17 (the spans run 4, 3 and 2 streams), N not
 * a multiple of 16 (pad rows inside the concatenation), biases, act-order perms, shapes big
 * enough for the threads to split the row groups inside a part; the views
 * still work as matrices of their own; weights that cannot share a call are refused.
 */
import { afterAll, describe, expect, it } from "vitest";
import { createNativeBackend, PackedWeight, type KernelLevel } from "../../src/backend/native.ts";
import type { ManyPart } from "../../src/backend/backend.ts";
import { randF32, randPerm, randScales, rng } from "./packed-ref.ts";

const nb = createNativeBackend({ threads: 2 });
const levels: KernelLevel[] = nb.kernelLevels();
afterAll(() => { nb.setKernelLevel(levels[0]!); nb.setThreads(2); });

type Kind = "q4" | "q4-mins" | "q8" | "bf16";
interface Case { kind: Kind; Ns: number[]; K: number; g: number; perm: boolean }
const CASES: Case[] = [
  { kind: "q4", Ns: [64, 16, 16], K: 256, g: 32, perm: false },       // q|k|v shaped, Q4_0-like
  { kind: "q4", Ns: [37, 20, 50], K: 200, g: 32, perm: false },       // pad rows inside, K % 32 ≠ 0
  { kind: "q4-mins", Ns: [100, 100], K: 384, g: 128, perm: true },    // gate|up shaped, act-order GPTQ with zeros
  { kind: "q8", Ns: [33, 48], K: 96, g: 96, perm: false },
  { kind: "bf16", Ns: [17, 30, 5], K: 40, g: 40, perm: false },
  // ≥ 2 MFLOP at M = 1, so 2 threads split the row groups: the second task's range starts inside
  // part 0 and crosses into parts 1 and 2, and the M = 1 span's streams cross the part boundaries
  { kind: "q4", Ns: [500, 37, 70], K: 2048, g: 32, perm: false },
  { kind: "q8", Ns: [300, 45, 200], K: 2048, g: 64, perm: false },
  // 85 row groups: M ≤ 8 on 2 threads runs the decode split's shares [0, 42) and [42, 85) (the
  // second across parts 1 | 2, with the padded last row group); steps stolen from a share's back
  // walk its streams downwards
  { kind: "q4", Ns: [900, 180, 250], K: 1024, g: 32, perm: false },
];

/** The same pack twice: one to fuse, one kept separate as the reference. */
function packs(c: Case, seed: number, perm: Int32Array | null): [PackedWeight[], PackedWeight[]] {
  const a: PackedWeight[] = [], b: PackedWeight[] = [];
  c.Ns.forEach((N, i) => {
    const G = Math.ceil(c.K / Math.min(c.g, c.K));
    const make = (): PackedWeight => {
      const rr = rng(seed + 31 * i + 1);
      if (c.kind === "q8") {
        const codes = Int8Array.from({ length: N * c.K }, () => Math.floor(rr() * 256) - 128);
        return nb.packQ8({ codes, scales: randScales(N * G, rr, true), N, K: c.K, groupSize: c.g, perm });
      }
      if (c.kind === "bf16") {
        const data = Uint16Array.from({ length: N * c.K }, () => 0x3c00 + Math.floor(rr() * 0x800) - 0x400 + (rr() < 0.5 ? 0x8000 : 0));
        return nb.pack16({ data, dtype: "bf16", N, K: c.K });
      }
      const codes = Uint8Array.from({ length: N * c.K }, () => Math.floor(rr() * 16));
      const scales = randScales(N * G, rr, true);
      const mins = c.kind === "q4-mins" ? randScales(N * G, rr, true).map((v) => -8 * v) : null;
      return nb.packQ4({ codes, scales, mins, N, K: c.K, groupSize: c.g, perm });
    };
    a.push(make());
    b.push(make());
  });
  return [a, b];
}

describe.each(CASES)("fuse $kind Ns=$Ns K=$K perm=$perm", (c) => {
  const perm = c.perm ? randPerm(c.K, rng(99)) : null;
  const [toFuse, ref] = packs(c, c.K + c.Ns[0]!, perm);
  const views = nb.fuse(toFuse)!;

  it("returns one view per part with the parts' shapes and bytes, and disposes the inputs", () => {
    expect(views).not.toBeNull();
    expect(views.map((v) => [v.N, v.K, v.layout, v.bytes])).toEqual(ref.map((w) => [w.N, w.K, w.layout, w.bytes]));
    expect(toFuse.every((w) => w.disposed)).toBe(true);
    expect(nb.fuse(views)).toBeNull(); // views are not fused again
  });

  it.each(levels.flatMap((l) => [1, 2].flatMap((t) => [1, 3, 4, 8, 17].map((M) => ({ level: l, threads: t, M })))))(
    "matmulMany equals a matmul per unfused weight, bit for bit ($level, $threads threads, M = $M)",
    ({ level, threads, M }) => {
      nb.setKernelLevel(level);
      nb.setThreads(threads);
      const r = rng(M * 7 + threads);
      const x = randF32(M * c.K, r);
      const biases = c.Ns.map((N, i) => (i === 1 ? randF32(N, r) : undefined));
      const parts: ManyPart[] = views.map((v, i) => ({ w: v, N: v.N, bias: biases[i], out: new Float32Array(M * v.N).fill(NaN) }));
      nb.matmulMany(x, M, c.K, parts);
      ref.forEach((w, i) => {
        const want = nb.matmul(x, w, M, c.K, w.N, biases[i]);
        expect(parts[i]!.out, `part ${i}`).toEqual(want);
        // a view is a matrix of its own too
        expect(nb.matmul(x, views[i]!, M, c.K, views[i]!.N, biases[i]), `view ${i} alone`).toEqual(want);
      });
    },
  );
});

it("refuses weights that cannot share one call", () => {
  const r = rng(5);
  const q4 = (N: number, K: number, g: number, perm: Int32Array | null = null): PackedWeight =>
    nb.packQ4({ codes: new Uint8Array(N * K).fill(3), scales: randScales(N * Math.ceil(K / g), r, true), mins: null, N, K, groupSize: g, perm });
  expect(nb.fuse([q4(16, 64, 32), q4(16, 96, 32)])).toBeNull();                          // different K
  expect(nb.fuse([q4(16, 64, 32), q4(16, 64, 64)])).toBeNull();                          // different group plan
  expect(nb.fuse([q4(16, 64, 32, randPerm(64, r)), q4(16, 64, 32, randPerm(64, r))])).toBeNull(); // different perms
  expect(nb.fuse([q4(16, 64, 32)])).toBeNull();                                          // one part
  const w = q4(16, 64, 32);
  expect(nb.fuse([w, nb.pack16({ data: new Uint16Array(16 * 64), dtype: "f16", N: 16, K: 64 })])).toBeNull();
  expect(w.disposed).toBe(false); // refused: inputs untouched
});

it("matmulMany on weights that are not one fused group runs a matmul per part", () => {
  const r = rng(6);
  const a = nb.packQ4({ codes: new Uint8Array(20 * 64).fill(9), scales: randScales(40, r, true), mins: null, N: 20, K: 64, groupSize: 32, perm: null });
  const f = randF32(7 * 64, r);
  const x = randF32(2 * 64, r);
  const parts: ManyPart[] = [{ w: a, N: 20, out: new Float32Array(40) }, { w: f, N: 7, out: new Float32Array(14) }];
  nb.matmulMany(x, 2, 64, parts);
  expect(parts[0]!.out).toEqual(nb.matmul(x, a, 2, 64, 20));
  expect(parts[1]!.out).toEqual(nb.matmul(x, f, 2, 64, 7));
});

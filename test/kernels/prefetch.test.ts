/**
 * Prefetch hints (issue 9; native/src/prefetch.h): attention's `next` argument prefetches the
 * weights the following calls read. The plan (NativeBackend.prefetchPlan, the ranges the
 * native side prefetches) stays inside each weight's memory, covers it exactly once with a large
 * budget, and lists the head of every stream of the decode matmul's split first; a hint of
 * f32, disposed or LLM.int8() weights is empty. Prefetches change no number: attention (f32
 * and f16 caches, rows and tiled forms, every kernel level, 1 and 2 threads) and a whole
 * decode with packed, fused weights give the same bits with and without hints.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { AttentionShape, LinearWeight } from "../../src/backend/backend.ts";
import { createNativeBackend, type KernelLevel, type PackedWeight } from "../../src/backend/native.ts";
import { Model } from "../../src/nn/model.ts";
import type { ModelWeights } from "../../src/nn/weights.ts";
import { f32ToF16 } from "../../src/tensor/dtype.ts";
import { randomWeights, tinyConfig } from "../helpers/random-weights.ts";
import { randF32, randScales, rng } from "./packed-ref.ts";

const nb = createNativeBackend({ threads: 2 });
const levels: KernelLevel[] = nb.kernelLevels();
const dir = mkdtempSync(join(tmpdir(), "qllm-prefetch-"));
afterAll(() => {
  nb.setKernelLevel(levels[0]!);
  nb.setThreads(2);
  nb.prefetchHints = false;
  rmSync(dir, { recursive: true, force: true });
});

const ROW_GROUP = 16, STREAMS = 4, PIECE = 4096;

function q4(N: number, K: number, seed: number): PackedWeight {
  const r = rng(seed), G = Math.ceil(K / 32);
  return nb.packQ4({ codes: Uint8Array.from({ length: N * K }, () => Math.floor(r() * 16)), scales: randScales(N * G, r, true), mins: null, N, K, groupSize: 32, perm: null });
}

/** The plan as { weight, offset, bytes } ranges. */
function plan(ws: LinearWeight[], threads: number, maxBytes: number): { w: number; off: number; bytes: number }[] {
  const p = nb.prefetchPlan(ws, threads, maxBytes), out = [];
  for (let i = 0; i < p.length; i += 3) out.push({ w: p[i]!, off: p[i + 1]!, bytes: p[i + 2]! });
  return out;
}

/** The ranges sorted, merged where they touch; fails on an overlap. */
function union(rs: { off: number; bytes: number }[]): [number, number][] {
  const s = [...rs].sort((a, b) => a.off - b.off), out: [number, number][] = [];
  for (const r of s) {
    const last = out[out.length - 1];
    if (last !== undefined) expect(r.off, "ranges overlap").toBeGreaterThanOrEqual(last[1]);
    if (last !== undefined && last[1] === r.off) last[1] = r.off + r.bytes;
    else out.push([r.off, r.off + r.bytes]);
  }
  return out;
}

/** Byte offsets where the decode matmul's streams start (packed_matmul.cc's split by task, spanStreams' by stream). */
function streamStarts(rowGroups: number, rgBytes: number, threads: number): number[] {
  const starts: number[] = [];
  for (let t = 0; t < threads; t++) {
    const rg0 = Math.floor((t * rowGroups) / threads), n = Math.floor(((t + 1) * rowGroups) / threads) - rg0, part = Math.floor(n / STREAMS);
    for (let s = 0; s < STREAMS && part > 0; s++) starts.push((rg0 + s * part) * rgBytes);
    if (n > STREAMS * part) starts.push((rg0 + STREAMS * part) * rgBytes);
  }
  return starts;
}

describe("prefetchPlan", () => {
  const N = 1000, K = 256;
  const w = q4(N, K, 1);
  const rgBytes = w.bytes / Math.ceil(N / ROW_GROUP);

  it.each([1, 2, 3])("with a budget past its size covers a q4 weight exactly once, inside its bytes (%i threads)", (threads) => {
    const rs = plan([w], threads, 1e9);
    expect(rs.every((r) => r.w === 0 && r.bytes > 0 && r.bytes <= PIECE)).toBe(true);
    expect(union(rs)).toEqual([[0, w.bytes]]);
  });

  it.each([1, 2])("with a small budget lists the head of every stream first, exactly the budget's whole lines (%i threads)", (threads) => {
    const starts = streamStarts(Math.ceil(N / ROW_GROUP), rgBytes, threads);
    const budget = starts.length * PIECE + 100;  // a piece of each stream (every stream here is longer), and a part of a line
    const rs = plan([w], threads, budget);
    expect(rs.reduce((a, r) => a + r.bytes, 0)).toBe(Math.floor(budget / 64) * 64);
    const u = union(rs);
    for (const s of starts) expect(u.some(([a, b]) => a <= s && s + PIECE <= b), `stream at byte ${s}: its first piece`).toBe(true);
    expect(u.every(([a, b]) => a >= 0 && b <= w.bytes)).toBe(true);
  });

  it("follows the budget across weights in order: the first whole, then the head of the second", () => {
    const w2 = q4(300, K, 2);
    const rs = plan([w, w2], 2, w.bytes + 8192);
    expect(union(rs.filter((r) => r.w === 0))).toEqual([[0, w.bytes]]);
    expect(rs.filter((r) => r.w === 1).reduce((a, r) => a + r.bytes, 0)).toBe(8192);
    expect(plan([w, w2], 2, 1e9).filter((r) => r.w === 1).reduce((a, r) => a + r.bytes, 0)).toBe(w2.bytes);
    w2.dispose();
  });

  it("plans a fused weight's views as the whole concatenation, once", () => {
    const views = nb.fuse([q4(64, K, 3), q4(37, K, 4), q4(50, K, 5)]) as PackedWeight[];
    const total = views.reduce((a, v) => a + v.bytes, 0);
    const rs = plan(views, 2, 1e9);
    expect(rs.every((r) => r.w === 0)).toBe(true);
    expect(union(rs)).toEqual([[0, total]]);
    for (const v of views) v.dispose();
  });

  it("stays inside the rows of a row-major 16-bit view (a plain view and fused views of one file)", () => {
    const Ns = [37, 20], Kv = 100, lead = 3;
    const path = join(dir, "w.bin"), bytes = Ns.reduce((a, n) => a + 2 * n * Kv, lead);
    writeFileSync(path, new Uint8Array(bytes).fill(0x3f));
    const file = nb.mapFile(path)!;
    const offsets = [lead, lead + 2 * Ns[0]! * Kv];
    const plain = nb.view16({ file, offset: offsets[0]!, dtype: "bf16", N: Ns[0]!, K: Kv });
    expect(union(plan([plain], 2, 1e9))).toEqual([[0, 2 * Ns[0]! * Kv]]);
    const views = nb.fuse(Ns.map((N, i) => nb.view16({ file, offset: offsets[i]!, dtype: "bf16", N, K: Kv }))) as PackedWeight[];
    file.release();
    const rs = plan(views, 2, 1e9), part = (r: { off: number }) => Math.floor(r.off / 2 ** 40);
    Ns.forEach((N, p) => {
      expect(union(rs.filter((r) => part(r) === p).map((r) => ({ off: r.off - p * 2 ** 40, bytes: r.bytes })))).toEqual([[0, 2 * N * Kv]]);
    });
    plain.dispose();
    for (const v of views) v.dispose();
  });

  it("is empty for f32 weights, disposed weights and an empty hint", () => {
    const d = q4(40, K, 6);
    d.dispose();
    expect(plan([new Float32Array(64 * 64), d], 2, 1e9)).toEqual([]);
    expect(plan([], 2, 1e9)).toEqual([]);
    expect(plan([w], 2, 63)).toEqual([]);
  });
});

describe("attention with a prefetch hint", () => {
  const hint = [q4(2048, 2048, 7), q4(700, 512, 8)];
  // T = 1 at 1500 keys: 3 MFLOP, the parallel rows form (8 chunks); T = 3: one task per row
  // chunk; T = 9: the tiled form (the hint is ignored); T = 1 at 40 keys: serial.
  const shapes: AttentionShape[] = [
    { T: 1, pos0: 1499, nHead: 8, nKvHead: 2, headDim: 64 },
    { T: 3, pos0: 300, nHead: 8, nKvHead: 2, headDim: 64 },
    { T: 9, pos0: 100, nHead: 4, nKvHead: 4, headDim: 32 },
    { T: 1, pos0: 39, nHead: 4, nKvHead: 1, headDim: 48 },
  ];
  it.each(levels.flatMap((level) => [1, 2].flatMap((threads) => shapes.map((s) => ({ level, threads, ...s })))))(
    "gives the same bits as without ($level, $threads threads, T=$T pos0=$pos0 nHead=$nHead nKvHead=$nKvHead d=$headDim), f32 and f16 caches",
    ({ level, threads, ...s }) => {
      nb.setKernelLevel(level);
      nb.setThreads(threads);
      const r = rng(s.pos0 + s.T);
      const kvLen = (s.pos0 + s.T) * s.nKvHead * s.headDim, qLen = s.T * s.nHead * s.headDim;
      const q = randF32(qLen, r), k = randF32(kvLen, r), v = randF32(kvLen, r);
      const k16 = Uint16Array.from(k, f32ToF16), v16 = Uint16Array.from(v, f32ToF16);
      for (const [kc, vc] of [[k, v], [k16, v16]] as const) {
        const plainOut = new Float32Array(qLen), hinted = new Float32Array(qLen);
        nb.prefetchHints = true;
        nb.attention(q, kc, vc, s, plainOut);
        nb.attention(q, kc, vc, s, hinted, hint);
        expect(hinted).toEqual(plainOut);
        expect(plainOut.every(Number.isFinite)).toBe(true);
      }
    });
});

describe("a decode with packed, fused weights", () => {
  it("gives the same logits with hints on and off, bit for bit", () => {
    nb.setKernelLevel(levels[0]!);
    nb.setThreads(2);
    const cfg = tinyConfig({ hidden_size: 128, intermediate_size: 352, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 64, max_position_embeddings: 128 });
    const f32 = randomWeights(cfg, 5);
    let seed = 10;
    const blocks = f32.blocks.map((b) => {
      const l = Object.fromEntries(Object.entries(b.linears).map(([n, x]) => [n, { ...x, weight: q4(x.N, x.K, seed++) as LinearWeight }])) as Record<keyof typeof b.linears, { weight: LinearWeight; N: number; K: number }>;
      const qkv = nb.fuse([l.q.weight, l.k.weight, l.v.weight])!, gu = nb.fuse([l.gate.weight, l.up.weight])!;
      [l.q.weight, l.k.weight, l.v.weight, l.gate.weight, l.up.weight] = [qkv[0]!, qkv[1]!, qkv[2]!, gu[0]!, gu[1]!];
      return { ...b, linears: l };
    });
    const model = new Model(cfg, { ...f32, blocks } as ModelWeights<LinearWeight>, nb);
    const run = (hints: boolean): Float32Array[] => {
      nb.prefetchHints = hints;
      const c = model.newCache(100), out: Float32Array[] = [];
      out.push(model.forward(Array.from({ length: 90 }, (_, i) => (i * 7) % 64), c, { logits: "last" }).slice());
      for (let i = 0; i < 5; i++) out.push(model.forward([(i * 13) % 64], c, { logits: "last" }).slice());
      return out;
    };
    const off = run(false), on = run(true);
    expect(on).toEqual(off);
    nb.prefetchHints = false;
  });
});

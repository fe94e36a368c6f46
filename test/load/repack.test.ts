/**
 * The direct repackers (native/src/packed_repack.cc: stored bytes → layout in one pass)
 * build exactly the bytes of the reference path: the TS converters to canonical inputs
 * (gptq-source.ts, awq-source.ts, gguf-canonical.ts) packed by packQ4 / packQ8. Every
 * source kind, both code paths of each (whole sub-blocks from source words; per-code for
 * partial sub-blocks, pad columns and act-order), odd N (pad rows), v1/v2 zeros,
 * symmetric and asymmetric grids, GGUF Q/K row maps, 1 and 2 threads (several tasks).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { LinearWeight, SourceBlocks } from "../../src/backend/backend.ts";
import { createNativeBackend, PackedWeight, type NativeBackend } from "../../src/backend/native.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { awqSource } from "../../src/load/awq-source.ts";
import { packWeight, permuteCanonicalRows, Scratch } from "../../src/load/canonical.ts";
import { ggufToCanonical } from "../../src/load/gguf-canonical.ts";
import { qkUnpermuteRows } from "../../src/load/gguf-model.ts";
import { gptqSource, type GptqConfig } from "../../src/load/gptq-source.ts";
import type { TensorSource } from "../../src/nn/weights.ts";
import { packAwqGemm } from "../../src/pack/awq-gemm.ts";
import { GGML_BLOCK_TYPES, quantizeMatrix } from "../../src/pack/gguf-blocks.ts";
import { packGptq } from "../../src/pack/hf-gptq.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { bytes, randomQuantized, writeFolder } from "../helpers/quant-sources.ts";
import { randomArray } from "../helpers/random-weights.ts";

const tmp = mkdtempSync(join(tmpdir(), "qllm-repack-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let nb: NativeBackend | null = null;
try { nb = createNativeBackend({ threads: 2 }); } catch { nb = null; }
const d = nb === null ? describe.skip : describe;

/** Layout fields and bytes of a packed weight. */
function fingerprint(b: NativeBackend, w: LinearWeight): { fields: string; bytes: Uint8Array } {
  if (!(w instanceof PackedWeight)) throw new Error(`not a single packed weight: ${w.constructor.name}`);
  return { fields: `${w.layout} [${w.N}, ${w.K}] g${w.groupSize} Ba${w.activationBlock} sb${w.scaleBytes} mins ${w.hasMins} ${w.bytes} B`, bytes: b.packedBytes(w) };
}

/** repack(readSource) equals packWeight(readCanonical), on 1 and 2 threads. */
function expectSame(b: NativeBackend, label: string, source: () => SourceBlocks, canonical: () => ReturnType<typeof ggufToCanonical>): void {
  const want = fingerprint(b, packWeight(b, canonical()));
  for (const threads of [1, 2]) {
    b.setThreads(threads);
    const w = b.repack(source());
    expect(w, label).not.toBeNull();
    const got = fingerprint(b, w!);
    expect(got.fields, `${label}, ${threads} threads`).toBe(want.fields);
    let firstDiff = -1;
    for (let i = 0; i < want.bytes.length && firstDiff < 0; i++) if (got.bytes[i] !== want.bytes[i]) firstDiff = i;
    expect(firstDiff, `${label}, ${threads} threads: first differing byte`).toBe(-1);
  }
}

function viaSource(src: TensorSource, name: string): SourceBlocks {
  const s = src.readSource!(name, new Scratch());
  if (s === null) throw new Error(`${name}: no source blocks`);
  return s;
}

d("HF-GPTQ stored bytes → layout = canonical → packQ4/packQ8", () => {
  const cases: [bits: 4 | 8, g: number, sym: boolean, actOrder: boolean, format: "gptq" | "gptq_v2", N: number, K: number][] = [
    [4, 128, true, false, "gptq", 2056, 1024],   // whole sub-blocks from words; several tasks per thread
    [4, 32, false, false, "gptq_v2", 40, 200],   // asymmetric (f32 mins), K = 200: partial last group and sub-block, pad columns
    [4, 64, true, false, "gptq_v2", 24, 160],
    [4, 32, true, true, "gptq", 40, 160],        // act-order: per-code through perm
    [4, 32, false, true, "gptq_v2", 40, 96],
    [4, -1, true, false, "gptq", 24, 104],       // one group per row (group_size −1)
    [8, 32, true, false, "gptq", 40, 160],
    [8, 32, true, true, "gptq_v2", 24, 96],
    [8, 128, true, false, "gptq_v2", 24, 200],
  ];
  for (const [bits, g, sym, actOrder, format, N, K] of cases) {
    it(`${bits}-bit g${g} ${sym ? "sym" : "asym"}${actOrder ? " act-order" : ""} ${format} [${N}, ${K}]`, async () => {
      const gs = g === -1 ? K : g;
      const q = randomQuantized(N, K, bits, gs, sym, actOrder, bits * 1000 + gs + N);
      const t = packGptq(q, format);
      const base = "model.layers.0.mlp.up_proj";
      const G = Math.ceil(K / gs);
      const dir = await writeFolder(tmp, `gptq-${bits}-${g}-${sym}-${actOrder}-${format}-${N}-${K}`, {
        [`${base}.qweight`]: { dtype: "I32", shape: [(K * bits) / 32, N], data: bytes(t.qweight) },
        [`${base}.qzeros`]: { dtype: "I32", shape: [G, (N * bits) / 32], data: bytes(t.qzeros) },
        [`${base}.scales`]: { dtype: "F16", shape: [G, N], data: bytes(t.scales) },
        [`${base}.g_idx`]: { dtype: "I32", shape: [K], data: bytes(t.gIdx) },
      });
      const ckpt = await openCheckpoint(dir);
      try {
        const cfg: GptqConfig = { bits, groupSize: g, sym, descAct: actOrder, format };
        const src = gptqSource(ckpt, dir, cfg);
        expectSame(nb!, `gptq ${bits}-bit`, () => viaSource(src, `${base}.weight`), () => src.readCanonical!(`${base}.weight`, new Scratch()));
      } finally {
        await ckpt.close();
      }
    });
  }

  it("8-bit with zeros other than 128 is left to the canonical path (two planes); 2/3-bit have no source blocks", async () => {
    const N = 32, K = 64, base = "model.layers.0.mlp.up_proj";
    for (const bits of [8, 3] as const) {
      const q = randomQuantized(N, K, bits, 32, false, false, 3);
      const t = packGptq(q, "gptq_v2");
      const dir = await writeFolder(tmp, `gptq-fallback-${bits}`, {
        [`${base}.qweight`]: { dtype: "I32", shape: [(K * bits) / 32, N], data: bytes(t.qweight) },
        [`${base}.qzeros`]: { dtype: "I32", shape: [K / 32, (N * bits) / 32], data: bytes(t.qzeros) },
        [`${base}.scales`]: { dtype: "F16", shape: [K / 32, N], data: bytes(t.scales) },
        [`${base}.g_idx`]: { dtype: "I32", shape: [K], data: bytes(t.gIdx) },
      });
      const ckpt = await openCheckpoint(dir);
      try {
        const src = gptqSource(ckpt, dir, { bits, groupSize: 32, sym: false, descAct: false, format: "gptq_v2" });
        const s = src.readSource!(`${base}.weight`, new Scratch());
        if (bits === 3) expect(s).toBeNull();
        else expect(nb!.repack(s!)).toBeNull();
      } finally {
        await ckpt.close();
      }
    }
  });
});

d("AutoAWQ GEMM stored bytes → layout = canonical → packQ4", () => {
  for (const [N, K, g, sym] of [[48, 96, 32, false], [40, 256, 128, false], [24, 64, 32, true]] as const) {
    it(`[${N}, ${K}] g${g} ${sym ? "zeros all 8" : "zero points"}`, async () => {
      const q = randomQuantized(N, K, 4, g, sym, false, N + K);
      const t = packAwqGemm(q);
      const base = "model.layers.0.self_attn.o_proj";
      const dir = await writeFolder(tmp, `awq-${N}-${K}-${g}-${sym}`, {
        [`${base}.qweight`]: { dtype: "I32", shape: [K, N / 8], data: bytes(t.qweight) },
        [`${base}.qzeros`]: { dtype: "I32", shape: [K / g, N / 8], data: bytes(t.qzeros) },
        [`${base}.scales`]: { dtype: "F16", shape: [K / g, N], data: bytes(t.scales) },
      });
      const ckpt = await openCheckpoint(dir);
      try {
        const src = awqSource(ckpt, dir, { bits: 4, groupSize: g, version: "gemm" });
        expectSame(nb!, "awq", () => viaSource(src, `${base}.weight`), () => src.readCanonical!(`${base}.weight`, new Scratch()));
      } finally {
        await ckpt.close();
      }
    });
  }
});

d("GGUF blocks → layout = gguf-canonical → packQ4/packQ8", () => {
  for (const type of ["Q4_0", "Q4_1", "Q4_K", "Q8_0"] as const) {
    // the last shape: 2-3 tasks of ~1 MiB of layout (Q4_K: its JS quantizer is slow, fewer rows)
    for (const [N, K, heads] of [[40, 512, 0], [64, 256, 4], [type === "Q4_K" ? 1400 : 2056, 1024, 0]] as const) {
      it(`${type} [${N}, ${K}]${heads > 0 ? ` q/k rows of ${heads} heads` : ""}`, () => {
        const x = randomArray(N * K, 0.05, mulberry32(N + K), 0.01);
        const b = quantizeMatrix(GGML_BLOCK_TYPES[type], x, K);
        const rows = heads > 0 ? qkUnpermuteRows(N, heads) : null;
        const where = { file: "test", field: type };
        expectSame(nb!, type, () => ({ kind: "gguf", type, bytes: b, rows, N, K }), () => {
          const c = ggufToCanonical(type, b, N, K, where, new Scratch());
          return rows === null ? c : permuteCanonicalRows(c, rows);
        });
      });
    }
  }

  it("a non-finite block scale is a UsageError naming the [N, G] index, as packQ4 reports it", () => {
    const N = 16, K = 64;
    const b = quantizeMatrix(GGML_BLOCK_TYPES.Q4_0, randomArray(N * K, 0.05, mulberry32(1)), K);
    b[5 * 18] = 0x00; b[5 * 18 + 1] = 0x7c; // block 5 (row 2, group 1): d = +inf
    expect(() => nb!.repack({ kind: "gguf", type: "Q4_0", bytes: b, rows: null, N, K })).toThrow(/scales holds a non-finite value/);
    try { nb!.repack({ kind: "gguf", type: "Q4_0", bytes: b, rows: null, N, K }); } catch (e) { expect((e as { details: { field: string } }).details.field).toBe("scales[5]"); }
  });

  it("wrong byte sizes are refused before the addon sees them", () => {
    expect(() => nb!.repack({ kind: "gguf", type: "Q8_0", bytes: new Uint8Array(10), rows: null, N: 16, K: 64 })).toThrow(/bytes has the wrong size/);
  });
});

/**
 * ggml block codecs (src/pack/gguf-blocks.ts, gguf-kquants.ts): byte-identical to llama.cpp's
 * reference quantizers on fixed vectors (fixtures/ggml-ref-blocks.json, produced by the C code
 * itself), hand-computed small cases, and pack∘unpack identity of the exact grid packers.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import {
  dequantizeBlocks, exactBlockType, GGML_BLOCK_TYPES, packGridBlocks, quantizeMatrix, unpackGridBlocks, type GgmlBlockTypeName,
} from "../../src/pack/gguf-blocks.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { contiguousGIdx, dequantize, type QuantizedLinear } from "../../src/tensor/quantized.ts";
import { toF16 } from "../../src/methods/grid.ts";
import { blockVectors } from "./block-vectors.ts";

const FIXTURES = JSON.parse(readFileSync(join(import.meta.dirname, "fixtures", "ggml-ref-blocks.json"), "utf8")) as Record<string, Record<string, string>>;

describe("reference quantizers reproduce llama.cpp byte for byte", () => {
  for (const name of Object.keys(GGML_BLOCK_TYPES) as GgmlBlockTypeName[]) {
    for (const v of blockVectors()) {
      test(`${name} ${v.name}`, () => {
        const want = Buffer.from(FIXTURES[name]![v.name]!, "base64");
        const got = Buffer.from(quantizeMatrix(GGML_BLOCK_TYPES[name], v.x, v.x.length));
        expect(got.length).toBe(want.length);
        expect(got.equals(want)).toBe(true);
      });
    }
  }
});

describe("hand-computed cases", () => {
  test("Q4_0: d = max/−8 with the signed max, nibble j | j+16", () => {
    const x = new Float32Array(32);
    x[0] = -4; x[16] = 2; x[1] = 1; // max = −4 → d = 0.5, id = 2
    const b = quantizeMatrix(GGML_BLOCK_TYPES.Q4_0, x, 32);
    expect(new DataView(b.buffer).getUint16(0, true)).toBe(0x3800); // f16 0.5
    // x0 = −4·2 + 8.5 = 0.5 → 0; x16 = 2·2 + 8.5 = 12.5 → 12; x1 = 10.5 → 10; zeros → 8
    expect(b[2]).toBe(0 | (12 << 4));
    expect(b[3]).toBe(10 | (8 << 4));
    const y = dequantizeBlocks(GGML_BLOCK_TYPES.Q4_0, b, 32);
    expect([y[0], y[16], y[1], y[2]]).toEqual([-4, 2, 1, 0]);
  });

  test("Q4_0: the positive extreme clamps to 15 (d = max/−8 is negative)", () => {
    const x = new Float32Array(32).fill(0);
    x[0] = 8; // d = −1, id = −1: x0 = −8 + 8.5 = 0.5 → 0 ; dequant (0 − 8)·(−1) = 8
    x[1] = -8; // −8·−1 + 8.5 = 16.5 → min(15, 16) = 15 → (15 − 8)·−1 = −7
    const y = dequantizeBlocks(GGML_BLOCK_TYPES.Q4_0, quantizeMatrix(GGML_BLOCK_TYPES.Q4_0, x, 32), 32);
    expect([y[0], y[1]]).toEqual([8, -7]);
  });

  test("Q8_0: roundf rounds half away from zero", () => {
    const x = new Float32Array(32);
    x[0] = 127; x[1] = 2.5; x[2] = -2.5; x[3] = -0.5; // d = 1
    const b = quantizeMatrix(GGML_BLOCK_TYPES.Q8_0, x, 32);
    const dv = new DataView(b.buffer);
    expect([dv.getInt8(2), dv.getInt8(3), dv.getInt8(4), dv.getInt8(5)]).toEqual([127, 3, -3, -1]);
  });

  test("Q4_1: d = (max − min)/15, m = min", () => {
    const x = new Float32Array(32).map((_, i) => (i % 16) - 1); // min −1, max 14 → d = 1
    const b = quantizeMatrix(GGML_BLOCK_TYPES.Q4_1, x, 32);
    const dv = new DataView(b.buffer);
    expect([dv.getUint16(0, true), dv.getUint16(2, true)]).toEqual([0x3c00, 0xbc00]); // 1, −1
    expect(Array.from(dequantizeBlocks(GGML_BLOCK_TYPES.Q4_1, b, 32))).toEqual(Array.from(x));
  });
});

function randomLinear(bits: number, sym: boolean, N: number, K: number, seed: number): QuantizedLinear {
  const r = mulberry32(seed);
  const G = K / 32, maxq = 2 ** bits - 1;
  const codes = new Uint8Array(N * K).map(() => Math.floor(r() * (maxq + 1)));
  const scales = new Float32Array(N * G).map(() => toF16(0.001 + 0.05 * r()));
  const zeros = new Uint8Array(N * G).map(() => (sym ? (maxq + 1) / 2 : Math.floor(r() * (maxq + 1))));
  return { N, K, bits, groupSize: 32, sym, codes, scales, zeros, gIdx: contiguousGIdx(K, 32) };
}

describe("exact packers from our grid", () => {
  const cases: [string, number, boolean, GgmlBlockTypeName][] = [["4-bit sym", 4, true, "Q4_0"], ["4-bit asym", 4, false, "Q4_1"], ["8-bit sym", 8, true, "Q8_0"]];
  for (const [label, bits, sym, type] of cases) {
    test(`${label} → ${type}: unpack(pack(q)) == q; dequantization agrees`, () => {
      const q = randomLinear(bits, sym, 8, 128, bits * 10 + (sym ? 1 : 0));
      const r = packGridBlocks(q);
      expect(r.type).toBe(type);
      const back = unpackGridBlocks(r.type, r.bytes, q.N, q.K);
      expect(back.codes).toEqual(q.codes);
      expect(back.scales).toEqual(q.scales);
      expect(back.zeros).toEqual(q.zeros);
      const ours = dequantize(q), theirs = dequantizeBlocks(GGML_BLOCK_TYPES[type], r.bytes, q.N * q.K);
      let maxErr = 0;
      for (let i = 0; i < ours.length; i++) maxErr = Math.max(maxErr, Math.abs(ours[i]! - theirs[i]!));
      if (type === "Q4_1") {
        expect(maxErr).toBeLessThanOrEqual(r.maxAbsError);
        expect(r.maxAbsError).toBeGreaterThan(0); // random zeros: m = −s·z is rarely f16-exact
      } else {
        expect(maxErr).toBe(0);
        expect(r.maxAbsError).toBe(0);
      }
    });
  }

  test("non-mappable grids say why", () => {
    expect(exactBlockType({ bits: 4, groupSize: 128, sym: true, K: 256, gIdx: contiguousGIdx(256, 128) })).toMatchObject({ problem: expect.stringContaining("group size 128") });
    const g = contiguousGIdx(64, 32); g[0] = 1;
    expect(exactBlockType({ bits: 4, groupSize: 32, sym: true, K: 64, gIdx: g })).toMatchObject({ problem: expect.stringContaining("non-contiguous") });
    expect(exactBlockType({ bits: 3, groupSize: 32, sym: true, K: 64, gIdx: contiguousGIdx(64, 32) })).toMatchObject({ problem: expect.stringContaining("3-bit") });
    expect(() => packGridBlocks(randomLinear(4, true, 4, 64, 1) && { ...randomLinear(4, true, 4, 64, 1), groupSize: 64 })).toThrow(/does not map exactly/);
  });
});

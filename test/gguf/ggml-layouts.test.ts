/**
 * The one ggml type table (src/pack/ggml-types.ts) against the block structs of
 * ggml/src/ggml-common.h, transcribed here field by field (QK_K = 256, K_SCALE_SIZE = 12,
 * ggml_half = 2 bytes), and the codecs against the table: a codec writes exactly
 * bytesPerBlock bytes per block and decodes the same bytes.
 */
import { describe, expect, test } from "vitest";
import { GGML_BLOCK_TYPES } from "../../src/pack/gguf-blocks.ts";
import { GGML_TYPES } from "../../src/pack/ggml-types.ts";
import { mulberry32 } from "../../src/util/random.ts";

const QK_K = 256, K_SCALE_SIZE = 12, HALF = 2;
/** [elements per block, fields (bytes each) in struct order] */
const STRUCTS: Record<string, [number, Record<string, number>]> = {
  F32: [1, { v: 4 }], F16: [1, { v: 2 }], BF16: [1, { v: 2 }], F64: [1, { v: 8 }],
  I8: [1, { v: 1 }], I16: [1, { v: 2 }], I32: [1, { v: 4 }], I64: [1, { v: 8 }],
  Q4_0: [32, { d: HALF, qs: 32 / 2 }],
  Q4_1: [32, { d: HALF, m: HALF, qs: 32 / 2 }],
  Q5_0: [32, { d: HALF, qh: 4, qs: 32 / 2 }],
  Q5_1: [32, { d: HALF, m: HALF, qh: 4, qs: 32 / 2 }],
  Q8_0: [32, { d: HALF, qs: 32 }],
  Q8_1: [32, { d: HALF, s: HALF, qs: 32 }],
  Q2_K: [QK_K, { scales: QK_K / 16, qs: QK_K / 4, d: HALF, dmin: HALF }],
  Q3_K: [QK_K, { hmask: QK_K / 8, qs: QK_K / 4, scales: 12, d: HALF }],
  Q4_K: [QK_K, { d: HALF, dmin: HALF, scales: K_SCALE_SIZE, qs: QK_K / 2 }],
  Q5_K: [QK_K, { d: HALF, dmin: HALF, scales: K_SCALE_SIZE, qh: QK_K / 8, qs: QK_K / 2 }],
  Q6_K: [QK_K, { ql: QK_K / 2, qh: QK_K / 4, scales: QK_K / 16, d: HALF }],
  Q8_K: [QK_K, { d: 4, qs: QK_K, bsums: (QK_K / 16) * 2 }],
  IQ2_XXS: [QK_K, { d: HALF, qs: (QK_K / 8) * 2 }],
  IQ2_XS: [QK_K, { d: HALF, qs: (QK_K / 8) * 2, scales: QK_K / 32 }],
  IQ3_XXS: [QK_K, { d: HALF, qs: (3 * QK_K) / 8 }],
  IQ1_S: [QK_K, { d: HALF, qs: QK_K / 8, qh: (QK_K / 32) * 2 }],
  IQ4_NL: [32, { d: HALF, qs: 32 / 2 }],
  IQ3_S: [QK_K, { d: HALF, qs: QK_K / 4, qh: QK_K / 32, signs: QK_K / 8, scales: QK_K / 64 }],
  IQ2_S: [QK_K, { d: HALF, qs: QK_K / 4, qh: QK_K / 32, scales: QK_K / 32 }],
  IQ4_XS: [QK_K, { d: HALF, scales_h: 2, scales_l: QK_K / 64, qs: QK_K / 2 }],
  IQ1_M: [QK_K, { qs: QK_K / 8, qh: QK_K / 16, scales: QK_K / 32 }],
  TQ1_0: [QK_K, { qs: (QK_K - (4 * QK_K) / 64) / 5, qh: QK_K / 64, d: HALF }],
  TQ2_0: [QK_K, { qs: QK_K / 4, d: HALF }],
  MXFP4: [32, { e: 1, qs: 32 / 2 }],
  NVFP4: [64, { d: 64 / 16, qs: 64 / 2 }],
  Q1_0: [128, { d: HALF, qs: 128 / 8 }],
  Q2_0: [64, { d: HALF, qs: 64 / 4 }],
};

describe("ggml type table", () => {
  test.each(GGML_TYPES.map((t) => [t.name, t] as const))("%s: block size and bytes match its ggml-common.h struct", (name, t) => {
    const s = STRUCTS[name];
    expect(s, `no struct transcribed for ${name}`).toBeDefined();
    const [block, fields] = s!;
    expect(t.blockSize).toBe(block);
    expect(t.bytesPerBlock).toBe(Object.values(fields).reduce((a, b) => a + b, 0));
  });

  test.each(Object.values(GGML_BLOCK_TYPES).map((c) => [c.name, c] as const))("%s codec writes exactly bytesPerBlock per block, at the table's sizes", (name, c) => {
    const t = GGML_TYPES.find((x) => x.name === name)!;
    expect([c.id, c.blockSize, c.bytesPerBlock]).toEqual([t.id, t.blockSize, t.bytesPerBlock]);
    const r = mulberry32(5);
    const x = Float32Array.from({ length: 3 * c.blockSize }, () => r() * 2 - 1);
    const SENTINEL = 0xa5;
    const out = new Uint8Array(3 * c.bytesPerBlock + 8).fill(SENTINEL);
    c.quantizeRow(x, out, 4); // three blocks at byte offset 4
    expect([...out.subarray(0, 4), ...out.subarray(4 + 3 * c.bytesPerBlock)].every((b) => b === SENTINEL)).toBe(true);
    // each block alone encodes to the same bytes as its slot in the row: the layout has no cross-block state
    for (let i = 0; i < 3; i++) {
      const one = new Uint8Array(c.bytesPerBlock);
      c.quantizeRow(x.subarray(i * c.blockSize, (i + 1) * c.blockSize), one);
      expect(one).toEqual(out.subarray(4 + i * c.bytesPerBlock, 4 + (i + 1) * c.bytesPerBlock));
    }
    const y = new Float32Array(3 * c.blockSize);
    c.dequantizeRow(out.subarray(4, 4 + 3 * c.bytesPerBlock), y);
    let err = 0;
    for (let i = 0; i < y.length; i++) err = Math.max(err, Math.abs(y[i]! - x[i]!));
    expect(err).toBeLessThan(0.15); // a real decode of these bytes, not zeros: 4-bit steps of inputs in [-1, 1)
  });
});

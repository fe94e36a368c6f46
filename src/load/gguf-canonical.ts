/**
 * GGUF tensors → canonical packing inputs (canonical.ts), straight from the block bytes
 * (FORMATS.md §4 "Block layouts"; ggml-common.h structs, ggml-quants.c `dequantize_row_*`).
 * Every conversion reproduces `dequantize_row_<t>` exactly as w = s·q + m in f32:
 *   Q4_0  g32  codes = nibble, scales = d, symmetric (w = d·(q − 8))
 *   Q4_1  g32  codes = nibble, scales = d, mins = m
 *   Q4_K  g32  codes = nibble, scales = d·sc_j, mins = −dmin·m_j (6-bit sub-scales)
 *   Q8_0  g32  int8 codes, scales = d
 *   Q6_K  g16  int8 expansion, codes = q − 32, scales = d·sc_j
 * Loops are plain typed-array passes with no per-element allocation (load time).
 */
import { getScaleMinK4 } from "../pack/gguf-kquants.ts";
import { FormatError, invariant } from "../util/errors.ts";
import { embeddingTable16, F16_TO_F32, NO_SCRATCH, type Buffers, type CanonicalWeight } from "./canonical.ts";
import type { EmbeddingTable } from "../nn/weights.ts";
import { findBlockType } from "../pack/gguf-blocks.ts";

const F = Math.fround;

/** f16 bits at byte offset o (little-endian). */
const h16 = (b: Uint8Array, o: number): number => F16_TO_F32[b[o]! | (b[o + 1]! << 8)]!;

/**
 * The 16 nibble bytes of a 32-block (Q4_0/Q4_1 `qs`, at a 2-aligned byte offset `o`)
 * into codes[c..c+32): byte j's low nibble is element j, its high nibble element j+16.
 * Eight u16 reads and eight u32 writes per block (c is a multiple of 32): load time.
 */
function nibbles32(b16: Uint16Array, o: number, c32: Uint32Array, c: number): void {
  const h = o >> 1, w = c >> 2;
  for (let i = 0; i < 4; i++) {
    const v = b16[h + 2 * i]! | (b16[h + 2 * i + 1]! << 16); // qs[4i .. 4i+3]
    c32[w + i] = v & 0x0f0f0f0f;
    c32[w + 4 + i] = (v >>> 4) & 0x0f0f0f0f;
  }
}

function q4_0(b: Uint8Array, N: number, K: number, m: Buffers): CanonicalWeight {
  const nb = K / 32, G = nb;
  const codes = m.u8("codes", N * K), scales = m.f32("scales", N * G);
  const b16 = u16(b), c32 = new Uint32Array(codes.buffer, 0, codes.length >> 2);
  for (let blk = 0, o = 0, c = 0; blk < N * nb; blk++, o += 18, c += 32) {
    scales[blk] = F16_TO_F32[b16[o >> 1]!]!;
    nibbles32(b16, o + 2, c32, c);
  }
  return { kind: "q4", args: { codes, scales, mins: null, N, K, groupSize: 32, perm: null } };
}

function q4_1(b: Uint8Array, N: number, K: number, m: Buffers): CanonicalWeight {
  const nb = K / 32;
  const codes = m.u8("codes", N * K), scales = m.f32("scales", N * nb), mins = m.f32("mins", N * nb);
  const b16 = u16(b), c32 = new Uint32Array(codes.buffer, 0, codes.length >> 2);
  for (let blk = 0, o = 0, c = 0; blk < N * nb; blk++, o += 20, c += 32) {
    scales[blk] = F16_TO_F32[b16[o >> 1]!]!;
    mins[blk] = F16_TO_F32[b16[(o >> 1) + 1]!]!;
    nibbles32(b16, o + 4, c32, c);
  }
  return { kind: "q4", args: { codes, scales, mins, N, K, groupSize: 32, perm: null } };
}

/** `dequantize_row_q4_K`: y = F(F(d·sc)·q) − F(dmin·m) per sub-block of 32. */
function q4_K(b: Uint8Array, N: number, K: number, m: Buffers): CanonicalWeight {
  const nb = K / 256, G = K / 32;
  const codes = m.u8("codes", N * K), scales = m.f32("scales", N * G), mins = m.f32("mins", N * G);
  for (let blk = 0, o = 0, c = 0, g = 0; blk < N * nb; blk++, o += 144) {
    const d = h16(b, o), dmin = h16(b, o + 2);
    let q = o + 16;
    for (let j = 0; j < 8; j += 2, q += 32) {
      const [sc1, m1] = getScaleMinK4(j, b, o + 4);
      const [sc2, m2] = getScaleMinK4(j + 1, b, o + 4);
      scales[g] = F(d * sc1); mins[g++] = -F(dmin * m1);
      scales[g] = F(d * sc2); mins[g++] = -F(dmin * m2);
      for (let l = 0; l < 32; l++) {
        const v = b[q + l]!;
        codes[c + l] = v & 15;
        codes[c + 32 + l] = v >> 4;
      }
      c += 64;
    }
  }
  return { kind: "q4", args: { codes, scales, mins, N, K, groupSize: 32, perm: null } };
}

function q8_0(b: Uint8Array, N: number, K: number, m: Buffers): CanonicalWeight {
  const nb = K / 32;
  const codes = m.i8("codes", N * K), scales = m.f32("scales", N * nb);
  const b16 = u16(b), c16 = new Uint16Array(codes.buffer, 0, (N * K) >> 1); // the int8 bytes, two at a time
  for (let blk = 0, h = 0, c = 0; blk < N * nb; blk++, h += 17, c += 16) {
    scales[blk] = F16_TO_F32[b16[h]!]!;
    for (let j = 0; j < 16; j++) c16[c + j] = b16[h + 1 + j]!;
  }
  return { kind: "q8", args: { codes, scales, N, K, groupSize: 32, perm: null } };
}

/** `dequantize_row_q6_K`: y = F(F(d·sc)·(q − 32)) per sub-block of 16. */
function q6_K(b: Uint8Array, N: number, K: number, m: Buffers): CanonicalWeight {
  const nb = K / 256, G = K / 16;
  const codes = m.i8("codes", N * K), scales = m.f32("scales", N * G);
  for (let blk = 0, o = 0; blk < N * nb; blk++, o += 210) {
    const d = h16(b, o + 208);
    const y0 = blk * 256, g0 = blk * 16;
    for (let s = 0; s < 16; s++) scales[g0 + s] = F(d * ((b[o + 192 + s]! << 24) >> 24));
    let ql = o, qh = o + 128;
    for (let n = 0; n < 256; n += 128, ql += 64, qh += 32) {
      for (let l = 0; l < 32; l++) {
        const hb = b[qh + l]!, lo = b[ql + l]!, lo2 = b[ql + l + 32]!;
        codes[y0 + n + l] = ((lo & 0xf) | ((hb & 3) << 4)) - 32;
        codes[y0 + n + l + 32] = ((lo2 & 0xf) | (((hb >> 2) & 3) << 4)) - 32;
        codes[y0 + n + l + 64] = ((lo >> 4) | (((hb >> 4) & 3) << 4)) - 32;
        codes[y0 + n + l + 96] = ((lo2 >> 4) | (((hb >> 6) & 3) << 4)) - 32;
      }
    }
  }
  return { kind: "q8", args: { codes, scales, N, K, groupSize: 16, perm: null } };
}

export function u16(b: Uint8Array): Uint16Array {
  return b.byteOffset % 2 === 0 ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2) : new Uint16Array(b.slice().buffer);
}

const CONVERTERS: Readonly<Record<string, (b: Uint8Array, N: number, K: number, m: Buffers) => CanonicalWeight>> = {
  Q4_0: q4_0, Q4_1: q4_1, Q4_K: q4_K, Q8_0: q8_0, Q6_K: q6_K,
  F16: (b, N, K) => ({ kind: "16", args: { data: u16(b), dtype: "f16", N, K } }),
  BF16: (b, N, K) => ({ kind: "16", args: { data: u16(b), dtype: "bf16", N, K } }),
  F32: (b, N, K) => ({ kind: "f32", N, K, data: new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice() }), // kept: never a view of a scratch buffer
};

/** GGML type names this module converts. */
export const GGUF_CANONICAL_TYPES = Object.keys(CONVERTERS);

/** One GGUF matrix [N, K] (bytes as stored, rows of K along dims[0]) → canonical. */
export function ggufToCanonical(type: string, bytes: Uint8Array, N: number, K: number, where: { file: string; field: string }, m: Buffers = NO_SCRATCH): CanonicalWeight {
  const conv = CONVERTERS[type];
  if (conv === undefined) {
    throw new FormatError(`GGUF tensor type ${type} cannot be run packed`, {
      ...where, expected: GGUF_CANONICAL_TYPES.join(", "), found: type,
      hint: "re-quantize with llama-quantize to one of these types, or evaluate with --backend ref (dequantized f32)",
    });
  }
  if (type === "F32" && bytes.byteOffset % 4 !== 0) bytes = bytes.slice();
  return conv(bytes, N, K, m);
}

/** Embedding rows decoded on demand from the GGUF bytes (F16/BF16/block types; F32 callers keep a Float32Array). */
export function ggufEmbeddingTable(type: string, bytes: Uint8Array, V: number, H: number, where: { file: string; field: string }): EmbeddingTable {
  if (type === "F16" || type === "BF16") return embeddingTable16(u16(bytes), type === "F16" ? "f16" : "bf16", V, H);
  const block = findBlockType(type);
  if (block === undefined) {
    throw new FormatError(`GGUF embedding type ${type} cannot be decoded`, { ...where, expected: "F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K or Q6_K", found: type });
  }
  invariant(H % block.blockSize === 0, `embedding rows of ${H} are not whole ${type} blocks`);
  const rowBytes = (H / block.blockSize) * block.bytesPerBlock;
  invariant(bytes.length === V * rowBytes, `embedding bytes ${bytes.length} ≠ ${V}·${rowBytes}`);
  return {
    V, H, bytes: bytes.byteLength, dtype: type,
    row(id, out, offset) { block.dequantizeRow(bytes.subarray(id * rowBytes, (id + 1) * rowBytes), out.subarray(offset, offset + H)); },
  };
}

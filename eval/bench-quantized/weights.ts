/**
 * The benchmark's weights: random canonical int4 / int8 inputs (what a loader hands
 * to packQ4 / packQ8) and the SAME weights as ggml blocks for llama.cpp:
 * Q4_0 = w = d·(q − 8) per 32 (ggml-common.h block_q4_0: f16 d, then 16 bytes with
 * q[i] in the low and q[i+16] in the high nibble of byte i), Q8_0 = w = d·q per 32
 * (block_q8_0: f16 d, 32 int8). Scales are f16 values, so both sides hold identical
 * numbers and identical bytes per weight (4.5 / 8.5 bits).
 */
import { writeFileSync } from "node:fs";

export interface CanonicalQ {
  N: number;
  K: number;
  groupSize: number;
  /** [N, K] codes: 0..15 (int4) or −128..127 (int8) */
  codes: Uint8Array | Int8Array;
  /** [N, K/groupSize] f16-exact scales */
  scales: Float32Array;
  /** [N, K/groupSize] the scales' f16 bits */
  scaleBits: Uint16Array;
}

/** Deterministic fast PRNG (xorshift32) for tens of millions of codes. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s;
  };
}

function f16ToNumber(h: number): number {
  const exp = (h >>> 10) & 0x1f, man = h & 0x3ff, sign = h & 0x8000 ? -1 : 1;
  return exp === 0 ? sign * man * 2 ** -24 : sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** Random int4 (bits 4) or int8 (bits 8) weights with f16 scales in [2^-7, 2^-6) per group of 32. */
export function randomWeights(bits: 4 | 8, N: number, K: number, seed: number, groupSize = 32): CanonicalQ {
  const r = xorshift(seed);
  const codes = bits === 4 ? new Uint8Array(N * K) : new Int8Array(N * K);
  for (let i = 0; i < codes.length; i++) codes[i] = bits === 4 ? r() & 15 : (r() & 255) - 128;
  const G = K / groupSize;
  const scaleBits = new Uint16Array(N * G), scales = new Float32Array(N * G);
  for (let i = 0; i < scales.length; i++) {
    scaleBits[i] = (8 << 10) | (r() & 0x3ff);
    scales[i] = f16ToNumber(scaleBits[i]!);
  }
  return { N, K, groupSize, codes, scales, scaleBits };
}

/** Writes the weights as N rows of Q4_0 (bits 4) or Q8_0 (bits 8) blocks; returns the byte count. */
export function writeGgmlBlocks(w: CanonicalQ, bits: 4 | 8, file: string): number {
  if (w.groupSize !== 32) throw new Error("ggml Q4_0 / Q8_0 blocks hold 32 weights");
  const G = w.K / 32, blockBytes = bits === 4 ? 18 : 34;
  const out = Buffer.alloc(w.N * G * blockBytes);
  let o = 0;
  for (let n = 0; n < w.N; n++) {
    for (let g = 0; g < G; g++) {
      out.writeUInt16LE(w.scaleBits[n * G + g]!, o);
      const base = n * w.K + g * 32;
      if (bits === 4) {
        for (let i = 0; i < 16; i++) out[o + 2 + i] = (w.codes[base + i]! & 15) | ((w.codes[base + i + 16]! & 15) << 4);
      } else {
        for (let i = 0; i < 32; i++) out.writeInt8(w.codes[base + i]!, o + 2 + i);
      }
      o += blockBytes;
    }
  }
  writeFileSync(file, out);
  return out.length;
}

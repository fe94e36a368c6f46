/**
 * Canonical packing inputs (backend.ts PackQ4Args / PackQ8Args / Pack16Args): what every
 * source format is converted into, one tensor at a time, before a backend packs it.
 *
 *   source                              canonical
 *   HF-GPTQ 4-bit, AWQ GEMM, Q4_0/1/K   q4  codes 0..15, scales [N, G] (+ mins = −s·z or GGUF m)
 *   Q8_0, GPTQ 8-bit sym                q8  codes = q − z
 *   Q6_K, GPTQ 2/3-bit                  q8  int8 expansion, codes = q − z (Q6_K: groups of 16)
 *   GPTQ 8-bit asymmetric               planes  q8 s·(q − 128) + q8 of ones scaled by s·(128 − z)
 *   bitsandbytes 8-bit (LLM.int8())     int8 CB, SCB and the run-time outlier rule
 *   F16 / BF16                          16  the stored bits
 *   F32                                 f32 (kept as it is)
 *
 * A backend whose int8 layout packs groups of 32 only (native q8x16) runs a q8 with
 * groups of 16 as two planes of groups of 32 (even sub-blocks, odd sub-blocks, the
 * other half's codes zero): exact, at twice the int8 bytes (splitGroups16).
 *
 * Act-order (non-contiguous g_idx): columns are permuted at load so that groups are
 * contiguous, and `perm` makes the kernel gather the activations (x'[k] = x[perm[k]]).
 */
import { isPackedWeight, PackedSum, type Backend, type CanonicalWeight, type LinearWeight, type Pack16Args, type PackInt8Args, type PackQ4Args, type PackQ8Args } from "../backend/backend.ts";
import type { EmbeddingTable } from "../nn/weights.ts";
import { groupCount, type QuantizedLinear } from "../tensor/quantized.ts";
import { bf16ToF32, f16ToF32 } from "../tensor/dtype.ts";
import { FormatError, invariant, UsageError } from "../util/errors.ts";
import { dequantizeInt8 } from "../tensor/int8.ts";

/** f16 bits → f32 value, all 65536 of them (a 256 KiB table: scale conversion at load time). */
export const F16_TO_F32: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16ToF32(h);
  return t;
})();

export type { CanonicalWeight } from "../backend/backend.ts";

/** [N, K] of a canonical weight. */
export function canonicalShape(c: CanonicalWeight): { N: number; K: number } {
  return c.kind === "f32" ? { N: c.N, K: c.K } : c.kind === "planes" ? canonicalShape(c.parts[0]!) : { N: c.args.N, K: c.args.K };
}

/**
 * int8 groups of 16 → two planes of groups of 32: plane 0 holds the even sub-blocks of
 * 16 (the odd ones' codes 0) with their scales, plane 1 the odd ones. Σ planes = W exactly.
 */
export function splitGroups16(a: PackQ8Args): [PackQ8Args, PackQ8Args] {
  const { N, K } = a;
  invariant(a.groupSize === 16 && K % 32 === 0, `splitGroups16: groups of ${a.groupSize}, K ${K}`);
  const G = K / 16, G2 = K / 32;
  const planes = [0, 1].map((half) => {
    const codes = new Int8Array(N * K), scales = new Float32Array(N * G2); // [N, K], [N, K/32]
    for (let n = 0; n < N; n++) {
      for (let j = 0; j < G2; j++) {
        const sub = 2 * j + half, o = n * K + 16 * sub;
        codes.set(a.codes.subarray(o, o + 16), o);
        scales[n * G2 + j] = a.scales[n * G + sub]!;
      }
    }
    return { codes, scales, N, K, groupSize: 32, perm: a.perm };
  });
  return [planes[0]!, planes[1]!];
}

/**
 * Pack through the backend; f32 stays f32, planes become a PackedSum. A q8 layout whose
 * group size the backend rejects (Q6_K's sub-blocks of 16 on a native build that packs
 * groups of 32 only) is packed as two exact planes (splitGroups16), with a note.
 */
export function packWeight(b: Backend, c: CanonicalWeight, warn?: (msg: string) => void): LinearWeight {
  switch (c.kind) {
    case "q4": if (b.packQ4) return b.packQ4(c.args); break;
    case "q8":
      if (b.packQ8) {
        try {
          return b.packQ8(c.args);
        } catch (e) {
          if (!(e instanceof UsageError) || e.details.field !== "groupSize" || c.args.groupSize !== 16 || c.args.K % 32 !== 0) throw e;
          return packWeight(b, { kind: "planes", parts: splitGroups16(c.args).map((args) => ({ kind: "q8", args })), reason: "int8 groups of 16 as two planes of 32" }, warn);
        }
      }
      break;
    case "16": if (b.pack16) return b.pack16(c.args); break;
    case "int8":
      if (b.packInt8) return b.packInt8(c.args);
      warn?.(`the ${b.name} backend has no LLM.int8() kernel; a [${c.args.N}, ${c.args.K}] weight runs dequantized in f32`);
      return dequantizeInt8(c.args); // [N, K]
    case "f32": return c.data;
    case "planes": {
      const parts = c.parts.map((p) => packWeight(b, p, warn));
      const packed = parts.filter(isPackedWeight);
      invariant(packed.length === parts.length, `backend "${b.name}" packed only ${packed.length} of ${parts.length} planes`);
      return new PackedSum(packed, c.reason);
    }
  }
  invariant(false, `backend "${b.name}" cannot pack a ${c.kind} weight (check canPack before loading packed)`);
}

/** Whether a backend implements the whole packing contract. */
export function canPack(b: Backend): boolean {
  return b.packQ4 !== undefined && b.packQ8 !== undefined && b.pack16 !== undefined;
}

/**
 * The act-order permutation of a g_idx: null when groups are already contiguous
 * (g_idx[k] = floor(k / g)); otherwise perm (stable sort of columns by group) such
 * that position p holds a column of group floor(p / g). Every group must have g
 * columns (the last one K − (G−1)·g), as GPTQ's act-order produces.
 */
export function actOrderPerm(gIdx: Int32Array, groupSize: number, G: number, where: { file: string; field: string }): Int32Array | null {
  const K = gIdx.length;
  let contiguous = true;
  for (let k = 0; k < K; k++) if (gIdx[k] !== Math.floor(k / groupSize)) { contiguous = false; break; }
  if (contiguous) return null;
  const start = new Int32Array(G + 1); // counting sort by group
  for (let k = 0; k < K; k++) {
    const g = gIdx[k]!;
    if (!(g >= 0 && g < G)) throw new FormatError("g_idx points outside the groups", { ...where, field: `${where.field}[${k}]`, expected: `0 ≤ g < ${G}`, found: String(g) });
    start[g + 1]!++;
  }
  for (let g = 0; g < G; g++) {
    const want = Math.min(groupSize, K - g * groupSize);
    if (start[g + 1] !== want) {
      throw new FormatError("act-order g_idx has groups of unequal size", {
        ...where, expected: `${want} columns in group ${g} (group size ${groupSize})`, found: `${start[g + 1]} columns`,
        hint: "only GPTQ act-order checkpoints (g_idx = position in the quantization order / group size) can be run packed",
      });
    }
    start[g + 1] = start[g]! + start[g + 1]!;
  }
  const perm = new Int32Array(K);
  for (let k = 0; k < K; k++) perm[start[gIdx[k]!]!++] = k;
  return perm;
}

/** dst[n, p] = src[n, perm[p]] for every row (columns into the permuted order). */
export function permuteColumns<T extends Uint8Array | Int8Array>(src: T, N: number, K: number, perm: Int32Array, dst: T): T {
  for (let n = 0; n < N; n++) {
    const o = n * K;
    for (let p = 0; p < K; p++) dst[o + p] = src[o + perm[p]!]!;
  }
  return dst;
}

/** [N, G] scales (and mins = −s·z, or null when every zero is `symZero`) from a grid with integer zeros. */
function gridOf(q: QuantizedLinear, symZero: number | null): { scales: Float32Array; mins: Float32Array | null } {
  const { scales, zeros } = q;
  let sym = symZero !== null;
  if (sym) for (let i = 0; i < zeros.length; i++) if (zeros[i] !== symZero) { sym = false; break; }
  if (sym) return { scales, mins: null };
  const mins = new Float32Array(scales.length);
  for (let i = 0; i < scales.length; i++) mins[i] = -scales[i]! * zeros[i]!;
  return { scales, mins };
}

/**
 * Any unpacked QuantizedLinear (pack/hf-gptq.ts, pack/awq-gemm.ts) → canonical:
 * 4-bit → q4 (symmetric when every zero is 8), 2/3/8-bit → q8 with codes q − z; when
 * q − z does not fit int8 (asymmetric 8-bit), two planes: s·(q − 128) and a plane of
 * ones with scales s·(128 − z), so that their sum is s·(q − z).
 */
export function fromQuantizedLinear(q: QuantizedLinear, where: { file: string; field: string }): CanonicalWeight {
  const { N, K, groupSize } = q;
  const G = groupCount(q);
  const perm = actOrderPerm(q.gIdx, groupSize, G, { file: where.file, field: `${where.field}.g_idx` });
  if (q.bits === 4) {
    const codes = perm === null ? q.codes : permuteColumns(q.codes, N, K, perm, new Uint8Array(N * K));
    return { kind: "q4", args: { codes, ...gridOf(q, 8), N, K, groupSize, perm } };
  }
  let fits = true;
  for (let i = 0; i < q.zeros.length && fits; i++) fits = 2 ** q.bits - 1 - q.zeros[i]! <= 127 && q.zeros[i]! <= 128;
  const offset = fits ? null : 2 ** (q.bits - 1); // codes q − offset, the zero moves into the ones plane
  const codes = new Int8Array(N * K); // [N, K] q − z (or q − offset), permuted order
  for (let n = 0; n < N; n++) {
    for (let p = 0; p < K; p++) {
      const k = perm === null ? p : perm[p]!;
      codes[n * K + p] = q.codes[n * K + k]! - (offset ?? q.zeros[n * G + q.gIdx[k]!]!);
    }
  }
  const main: CanonicalWeight = { kind: "q8", args: { codes, scales: q.scales, N, K, groupSize, perm } };
  if (offset === null) return main;
  const mins = new Float32Array(N * G); // [N, G] s·(offset − z)
  for (let i = 0; i < mins.length; i++) mins[i] = q.scales[i]! * (offset - q.zeros[i]!);
  const ones: CanonicalWeight = { kind: "q8", args: { codes: new Int8Array(N * K).fill(1), scales: mins, N, K, groupSize, perm } };
  return { kind: "planes", parts: [main, ones], reason: `asymmetric ${q.bits}-bit: s·(q − ${offset}) + s·(${offset} − z)` };
}

/** Rows in a new order: row r of the result is row `from[r]` of the input (codes, scales and mins alike). */
export function permuteCanonicalRows(c: CanonicalWeight, from: Int32Array): CanonicalWeight {
  const rows = <T extends Uint8Array | Int8Array | Uint16Array | Float32Array>(a: T, len: number, make: (n: number) => T): T => {
    const out = make(a.length);
    for (let r = 0; r < from.length; r++) out.set(a.subarray(from[r]! * len, (from[r]! + 1) * len), r * len);
    return out;
  };
  switch (c.kind) {
    case "f32": return { ...c, data: rows(c.data, c.K, (n) => new Float32Array(n)) };
    case "16": return { kind: "16", args: { ...c.args, data: rows(c.args.data, c.args.K, (n) => new Uint16Array(n)) } };
    case "q4": {
      const a = c.args, G = groupCount(a); // [N, G] scales
      return {
        kind: "q4", args: {
          ...a, codes: rows(a.codes, a.K, (n) => new Uint8Array(n)), scales: rows(a.scales, G, (n) => new Float32Array(n)),
          mins: a.mins === null ? null : rows(a.mins, G, (n) => new Float32Array(n)),
        },
      };
    }
    case "q8": {
      const a = c.args, G = groupCount(a); // [N, G] scales
      return { kind: "q8", args: { ...a, codes: rows(a.codes, a.K, (n) => new Int8Array(n)), scales: rows(a.scales, G, (n) => new Float32Array(n)) } };
    }
    case "int8": {
      const a = c.args;
      return { kind: "int8", args: { ...a, CB: rows(a.CB, a.K, (n) => new Int8Array(n)), SCB: rows(a.SCB, 1, (n) => new Float32Array(n)) } };
    }
    case "planes": return { ...c, parts: c.parts.map((p) => permuteCanonicalRows(p, from)) };
  }
}

/** Embedding rows kept as f16/bf16 bits [V, H], decoded per lookup (no f32 copy of the table). */
export function embeddingTable16(data: Uint16Array, dtype: "f16" | "bf16", V: number, H: number): EmbeddingTable {
  invariant(data.length === V * H, `embedding has ${data.length} elements, expected ${V}·${H}`);
  const decode = dtype === "f16" ? f16ToF32 : bf16ToF32;
  return {
    V, H, bytes: data.byteLength, dtype,
    row(id, out, offset) { const o = id * H; for (let i = 0; i < H; i++) out[offset + i] = decode(data[o + i]!); },
  };
}

/** An ES2024 resizable ArrayBuffer (Node ≥ 20; typed here, the lib is ES2022): resize(0) frees its pages. */
interface Shrinkable extends ArrayBuffer { resize(bytes: number): void }
const ShrinkableBuffer = ArrayBuffer as unknown as new (bytes: number, o: { maxByteLength: number }) => Shrinkable;

/**
 * Reusable load buffers, one per named slot ("raw", "codes", "scales", ...): canonical
 * inputs are transient (a backend copies what it keeps), so converting tensor after
 * tensor into the same memory avoids first-touch page faults and garbage (load time,
 * RSS). A slot's view is valid until the next request for that slot.
 *
 * The buffers are resizable ArrayBuffers, shrunk to 0 bytes when outgrown and by release(): that
 * returns their pages at once, where a plain ArrayBuffer's stay resident until a major GC (after
 * loading q4_0.gguf, the 66 MiB slot that held the Q8_0 lm_head's bytes, eval/reports/step-gap.md).
 */
export class Scratch {
  readonly #slots = new Map<string, Shrinkable>();

  #buffer(slot: string, bytes: number): ArrayBuffer {
    let b = this.#slots.get(slot);
    if (b === undefined || b.byteLength < bytes) {
      const n = Math.max(bytes, Math.ceil((b?.byteLength ?? 0) * 1.25));
      b?.resize(0);
      b = new ShrinkableBuffer(n, { maxByteLength: n });
      this.#slots.set(slot, b);
    }
    return b;
  }

  /** Frees every slot's memory now; views handed out before are empty afterwards. */
  release(): void {
    for (const b of this.#slots.values()) b.resize(0);
    this.#slots.clear();
  }

  u8(slot: string, n: number): Uint8Array { return new Uint8Array(this.#buffer(slot, n), 0, n); }
  i8(slot: string, n: number): Int8Array { return new Int8Array(this.#buffer(slot, n), 0, n); }
  f32(slot: string, n: number): Float32Array { return new Float32Array(this.#buffer(slot, 4 * n), 0, n); }
  i32(slot: string, n: number): Int32Array { return new Int32Array(this.#buffer(slot, 4 * n), 0, n); }
}

/** Fresh arrays each time (callers that keep the canonical inputs). */
export const NO_SCRATCH = {
  u8: (_slot: string, n: number): Uint8Array => new Uint8Array(n),
  i8: (_slot: string, n: number): Int8Array => new Int8Array(n),
  f32: (_slot: string, n: number): Float32Array => new Float32Array(n),
};

export type { PackBuffers as Buffers } from "../backend/backend.ts";

/**
 * AutoAWQ "GEMM" tensors (FORMATS.md §3; AutoAWQ `awq/modules/linear/gemm.py`
 * `WQLinear_GEMM.from_linear`, unpacking in `awq/utils/packing_utils.py`
 * `unpack_awq` + `reverse_awq_order`). Per linear layer, W [N, K], group g:
 *   qweight I32 [K, N/8]    codes packed along the OUTPUT dimension
 *   qzeros  I32 [K/g, N/8]  zero points, same packing, stored as-is (no −1)
 *   scales  F16 [K/g, N]
 * Within a word, nibble i (bits 4i..4i+3) holds output column 8c + AWQ_ORDER[i];
 * column 8c + m sits in nibble AWQ_REVERSE_ORDER[m].
 * W[n, k] = (q[k, n] − z[k/g, n]) · s[k/g, n]. 4-bit only, K % g == 0, N % 8 == 0.
 */
import type { QuantizedLinear } from "../tensor/quantized.ts";
import { f16ToF32, f32ToF16 } from "../tensor/dtype.ts";
import { FormatError, invariant, UsageError } from "../util/errors.ts";
import { i32Out, u16Out, type PackAlloc } from "./bits.ts";

/** Nibble i holds column ORDER[i] of its group of 8 (`order_map` in from_linear). */
export const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;
/** Column m is in nibble REVERSE[m] (`AWQ_REVERSE_ORDER`). */
export const AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7] as const;
export const AWQ_GEMM_BITS = 4;
const PACK = 32 / AWQ_GEMM_BITS; // 8 codes per int32

export interface AwqGemmTensors {
  /** [K, N/8] */
  qweight: Int32Array;
  /** [K/g, N/8] */
  qzeros: Int32Array;
  /** [K/g, N] f16 bits */
  scales: Uint16Array;
}

/** Shape constraints of the format, checked before any compute. Returns a reason, or null when OK. */
export function awqGemmShapeProblem(N: number, K: number, bits: number, groupSize: number): string | null {
  if (bits !== AWQ_GEMM_BITS) return `AWQ GEMM stores 4-bit codes only (got ${bits} bits)`;
  if (!(Number.isInteger(groupSize) && groupSize > 0)) return `AWQ GEMM needs a positive group size (got ${groupSize}; -1 is not representable: the group size is written once for all layers)`;
  if (K % groupSize !== 0) return `in_features ${K} must be a multiple of the group size ${groupSize}`;
  if (N % PACK !== 0) return `out_features ${N} must be a multiple of ${PACK}`;
  return null;
}

/** Pack row `src[off + c·8 + m]` (m < 8) of 8·W codes into W words, nibble i ← column ORDER[i]. */
function packRow(src: ArrayLike<number>, off: number, stride: number, words: number, dst: Int32Array, dOff: number): void {
  for (let c = 0; c < words; c++) {
    let w = 0;
    for (let i = 0; i < PACK; i++) w |= (src[off + (c * PACK + AWQ_ORDER[i]!) * stride]! & 0xf) << (4 * i);
    dst[dOff + c] = w;
  }
}

function unpackRow(src: Int32Array, sOff: number, words: number, dst: Uint8Array, off: number, stride: number): void {
  for (let c = 0; c < words; c++) {
    const w = src[sOff + c]!;
    for (let m = 0; m < PACK; m++) dst[off + (c * PACK + m) * stride] = (w >>> (4 * AWQ_REVERSE_ORDER[m]!)) & 0xf;
  }
}

/** `alloc`: reused output memory (bits.ts PackAlloc), else fresh arrays. */
export function packAwqGemm(q: QuantizedLinear, alloc?: PackAlloc): AwqGemmTensors {
  const { N, K, bits, groupSize: g } = q;
  const problem = awqGemmShapeProblem(N, K, bits, g);
  if (problem) throw new UsageError("layer cannot be packed as AWQ GEMM", { expected: "a packable shape", found: problem, hint: "use --bits 4 and a group size dividing every layer's in_features (128, 64 or 32)" });
  const G = K / g;
  invariant(q.scales.length === N * G && q.zeros.length === N * G && q.codes.length === N * K, "QuantizedLinear arrays do not match N, K, groupSize");
  for (let k = 0; k < K; k++) {
    if (q.gIdx[k] !== Math.floor(k / g)) {
      throw new UsageError("AWQ GEMM has no g_idx: groups must be contiguous", {
        field: `g_idx[${k}]`, expected: String(Math.floor(k / g)), found: String(q.gIdx[k]), hint: "act-order results (desc_act) can only be written as HF-GPTQ",
      });
    }
  }
  const words = N / PACK;
  const qweight = i32Out(alloc, "qweight", K * words); // [K, N/8]
  for (let k = 0; k < K; k++) packRow(q.codes, k, K, words, qweight, k * words); // column n of row k is codes[n·K + k]
  const qzeros = i32Out(alloc, "qzeros", G * words); // [G, N/8]
  for (let gi = 0; gi < G; gi++) packRow(q.zeros, gi, G, words, qzeros, gi * words);
  const scales = u16Out(alloc, "scales", G * N); // [G, N]
  for (let gi = 0; gi < G; gi++) for (let n = 0; n < N; n++) scales[gi * N + n] = f32ToF16(q.scales[n * G + gi]!);
  return { qweight, qzeros, scales };
}

export interface UnpackAwqGemmOptions {
  N: number;
  K: number;
  groupSize: number;
  /** For error messages: the layer's tensor prefix and file. */
  name?: string;
  file?: string;
}

/** Inverse of packAwqGemm → QuantizedLinear (sym = false: GEMM stores explicit zero points). */
export function unpackAwqGemm(t: AwqGemmTensors, o: UnpackAwqGemmOptions): QuantizedLinear {
  const { N, K, groupSize: g } = o;
  const where = { ...(o.file !== undefined ? { file: o.file } : {}) };
  const problem = awqGemmShapeProblem(N, K, AWQ_GEMM_BITS, g);
  if (problem) throw new FormatError("AWQ GEMM layer has an impossible shape", { ...where, field: o.name ?? "layer", expected: "a packable shape", found: problem });
  const G = K / g, words = N / PACK;
  const check = (what: string, got: number, want: number, shape: string): void => {
    if (got !== want) {
      throw new FormatError(`AWQ tensor ${what} has the wrong size`, {
        ...where, field: `${o.name ?? "layer"}.${what}`, expected: `${want} elements (${shape})`, found: `${got}`,
        hint: "w_bit/q_group_size in quantization_config may not match the tensors",
      });
    }
  };
  check("qweight", t.qweight.length, K * words, `[${K}, ${words}]`);
  check("qzeros", t.qzeros.length, G * words, `[${G}, ${words}]`);
  check("scales", t.scales.length, G * N, `[${G}, ${N}]`);
  const codes = new Uint8Array(N * K); // [N, K]
  for (let k = 0; k < K; k++) unpackRow(t.qweight, k * words, words, codes, k, K);
  const zeros = new Uint8Array(N * G); // [N, G]
  for (let gi = 0; gi < G; gi++) unpackRow(t.qzeros, gi * words, words, zeros, gi, G);
  const scales = new Float32Array(N * G); // [N, G]
  for (let gi = 0; gi < G; gi++) for (let n = 0; n < N; n++) scales[n * G + gi] = f16ToF32(t.scales[gi * N + n]!);
  const gIdx = new Int32Array(K);
  for (let k = 0; k < K; k++) gIdx[k] = Math.floor(k / g);
  return { N, K, bits: AWQ_GEMM_BITS, groupSize: g, sym: false, codes, scales, zeros, gIdx };
}

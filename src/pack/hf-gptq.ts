/**
 * HF GPTQ tensors (FORMATS.md §2; AutoGPTQ/GPTQModel `pack`): per linear layer
 *   qweight I32 [K·b/32, N]  codes packed along the input dimension
 *   qzeros  I32 [G, N·b/32]  zero points packed along the output dimension
 *   scales  F16 [G, N]
 *   g_idx   I32 [K]
 * checkpoint_format "gptq" (v1) stores zero − 1; "gptq_v2" stores the true zero.
 */
import { f16ToF32, f32ToF16 } from "../tensor/dtype.ts";
import { groupCount, groupLength, type QuantizedLinear } from "../tensor/quantized.ts";
import { FormatError, UsageError } from "../util/errors.ts";
import { i32Out, packStream, u16Out, unpackStream, type PackAlloc } from "./bits.ts";

export type GptqCheckpointFormat = "gptq" | "gptq_v2";
export const GPTQ_BITS = [2, 3, 4, 8] as const;

export interface GptqTensors {
  /** [K·b/32, N] */
  qweight: Int32Array;
  /** [G, N·b/32] */
  qzeros: Int32Array;
  /** [G, N] f16 bits */
  scales: Uint16Array;
  /** [K] */
  gIdx: Int32Array;
}

/** Values per packed run: 32 for 3-bit (three words), 32/b otherwise. */
function packUnit(bits: number): number {
  return bits === 3 ? 32 : 32 / bits;
}

/** Shape constraints of the format, checked before any compute. Returns a reason, or null when OK. */
export function gptqShapeProblem(N: number, K: number, bits: number): string | null {
  if (!(GPTQ_BITS as readonly number[]).includes(bits)) return `bits must be one of ${GPTQ_BITS.join(", ")} (got ${bits})`;
  const u = packUnit(bits);
  if (K % u !== 0) return `in_features ${K} must be a multiple of ${u} for ${bits}-bit GPTQ packing`;
  if (N % u !== 0) return `out_features ${N} must be a multiple of ${u} for ${bits}-bit GPTQ zero packing`;
  return null;
}

/**
 * `packCodes` packs qweight for 2/4/8 bits (the native kernel, WeightKernels.gptqPackCodes);
 * without it, and for 3 bits, packStream does. `alloc`: reused output memory (bits.ts
 * PackAlloc), else fresh arrays.
 */
export function packGptq(
  q: QuantizedLinear, format: GptqCheckpointFormat, packCodes?: (codes: Uint8Array, N: number, K: number, bits: 2 | 4 | 8, out: Int32Array) => void, alloc?: PackAlloc,
): GptqTensors {
  const { N, K, bits } = q;
  const problem = gptqShapeProblem(N, K, bits);
  if (problem) throw new UsageError("layer cannot be packed as HF-GPTQ", { expected: "a packable shape", found: problem });
  const G = groupCount(q);
  const maxq = 2 ** bits - 1;
  const rowsPacked = (K * bits) / 32;
  const qweight = i32Out(alloc, "qweight", rowsPacked * N); // [K·b/32, N]
  if (packCodes !== undefined && (bits === 2 || bits === 4 || bits === 8)) packCodes(q.codes, N, K, bits, qweight);
  else for (let n = 0; n < N; n++) packStream(q.codes, n * K, 1, K, bits, qweight, n, N);

  const colsPacked = (N * bits) / 32;
  const z = new Uint8Array(G * N); // [G, N] stored zeros
  for (let g = 0; g < G; g++) {
    for (let n = 0; n < N; n++) {
      const zero = q.zeros[n * G + g]!;
      if (format === "gptq" && zero === 0) {
        throw new UsageError("a zero point of 0 cannot be stored in GPTQ v1 (it would wrap)", {
          field: "checkpoint_format", expected: "gptq_v2 for asymmetric quantization", found: "gptq (v1)",
          hint: "write asymmetric results with --format gptq_v2 (the default for --asym), or quantize with --sym",
        });
      }
      z[g * N + n] = format === "gptq" ? (zero - 1) & maxq : zero;
    }
  }
  const qzeros = i32Out(alloc, "qzeros", G * colsPacked); // [G, N·b/32]
  for (let g = 0; g < G; g++) packStream(z, g * N, 1, N, bits, qzeros, g * colsPacked, 1);

  const scales = u16Out(alloc, "scales", G * N); // [G, N]
  for (let g = 0; g < G; g++) for (let n = 0; n < N; n++) scales[g * N + n] = f32ToF16(q.scales[n * G + g]!);
  const gIdx = i32Out(alloc, "g_idx", K); // [K]
  gIdx.set(q.gIdx);
  return { qweight, qzeros, scales, gIdx };
}

export interface UnpackGptqOptions {
  N: number;
  K: number;
  bits: number;
  groupSize: number;
  sym: boolean;
  format: GptqCheckpointFormat;
  /** For error messages: the layer's tensor prefix and file. */
  name?: string;
  file?: string;
}

export function unpackGptq(t: GptqTensors, o: UnpackGptqOptions): QuantizedLinear {
  const { N, K, bits } = o;
  const rowsPacked = (K * bits) / 32;
  const colsPacked = (N * bits) / 32;
  const G = t.scales.length / N;
  const where = { ...(o.file !== undefined ? { file: o.file } : {}) };
  const check = (what: string, got: number, want: number): void => {
    if (got !== want) {
      throw new FormatError(`GPTQ tensor ${what} has the wrong size`, {
        ...where, field: `${o.name ?? "layer"}.${what}`, expected: `${want} elements`, found: `${got}`,
        hint: "bits/group_size in quantize_config.json may not match the tensors",
      });
    }
  };
  check("qweight", t.qweight.length, rowsPacked * N);
  if (!Number.isInteger(G) || G < 1) check("scales", t.scales.length, N);
  check("qzeros", t.qzeros.length, G * colsPacked);
  check("g_idx", t.gIdx.length, K);
  for (let k = 0; k < K; k++) {
    const g = t.gIdx[k]!;
    if (g < 0 || g >= G) {
      throw new FormatError("g_idx points outside the groups", { ...where, field: `${o.name ?? "layer"}.g_idx[${k}]`, expected: `0 ≤ g < ${G}`, found: String(g) });
    }
  }
  const codes = new Uint8Array(N * K); // [N, K]
  for (let n = 0; n < N; n++) unpackStream(t.qweight, n, N, K, bits, codes, n * K, 1);
  const zRow = new Uint8Array(N);
  const zeros = new Uint8Array(N * G); // [N, G]
  const scales = new Float32Array(N * G); // [N, G]
  for (let g = 0; g < G; g++) {
    unpackStream(t.qzeros, g * colsPacked, 1, N, bits, zRow, 0, 1);
    for (let n = 0; n < N; n++) {
      // v1 stores zero − 1 and kernels add the 1 back without wrapping, so a stored maxq means 2^b.
      const zero = o.format === "gptq" ? zRow[n]! + 1 : zRow[n]!;
      if (zero > 255) {
        // 8-bit v1 with stored 255: the true zero is 256, which a Uint8Array would wrap to 0 (silently wrong weights).
        throw new FormatError("GPTQ v1 zero point 256 (stored 255) at 8 bits is outside the grid this reader holds", {
          ...where, field: `${o.name ?? "layer"}.qzeros[group ${g}, column ${n}]`, expected: "a stored zero ≤ 254 (true zero ≤ 255)", found: "stored 255 (true zero 256)",
          hint: "re-save the checkpoint as gptq_v2 (true zeros) or re-quantize it; a v1 writer only produces 256 for an all-negative asymmetric group",
        });
      }
      zeros[n * G + g] = zero;
      scales[n * G + g] = f16ToF32(t.scales[g * N + n]!);
    }
  }
  return { N, K, bits, groupSize: groupLength(o.groupSize, K), sym: o.sym, codes, scales, zeros, gIdx: t.gIdx.slice() };
}

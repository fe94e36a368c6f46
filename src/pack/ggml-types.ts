/**
 * The ggml type table (DATA, ggml/include/ggml.h `enum ggml_type` + ggml.c `type_traits`):
 * id, name, elements per block and bytes per block of every type a GGUF file may hold.
 * The ONE table of ggml types: the GGUF reader/writer (io/gguf*.ts) validate tensors with
 * it, and the block codecs (gguf-blocks.ts `GGML_BLOCK_TYPES`) take their sizes from it.
 * test/gguf/ggml-layouts.test.ts checks every size against the block structs of ggml-common.h.
 */
export interface GgmlTypeInfo {
  /** `enum ggml_type` value (ggml/include/ggml.h). */
  id: number;
  /** Upper-case name as in `GGML_TYPE_<NAME>` (lower-case `type_name` in ggml.c). */
  name: string;
  /** Elements per block (`blck_size` in ggml.c type_traits); 1 for plain types. */
  blockSize: number;
  /** Bytes per block (`sizeof(block_<t>)`, static_asserts in ggml-common.h). */
  bytesPerBlock: number;
}

/** Every type a GGUF file may hold (ids 4, 5, 31–33, 36–38 were removed from ggml). */
export const GGML_TYPES: readonly GgmlTypeInfo[] = [
  { id: 0, name: "F32", blockSize: 1, bytesPerBlock: 4 },
  { id: 1, name: "F16", blockSize: 1, bytesPerBlock: 2 },
  { id: 2, name: "Q4_0", blockSize: 32, bytesPerBlock: 18 },
  { id: 3, name: "Q4_1", blockSize: 32, bytesPerBlock: 20 },
  { id: 6, name: "Q5_0", blockSize: 32, bytesPerBlock: 22 },
  { id: 7, name: "Q5_1", blockSize: 32, bytesPerBlock: 24 },
  { id: 8, name: "Q8_0", blockSize: 32, bytesPerBlock: 34 },
  { id: 9, name: "Q8_1", blockSize: 32, bytesPerBlock: 36 },
  { id: 10, name: "Q2_K", blockSize: 256, bytesPerBlock: 84 },
  { id: 11, name: "Q3_K", blockSize: 256, bytesPerBlock: 110 },
  { id: 12, name: "Q4_K", blockSize: 256, bytesPerBlock: 144 },
  { id: 13, name: "Q5_K", blockSize: 256, bytesPerBlock: 176 },
  { id: 14, name: "Q6_K", blockSize: 256, bytesPerBlock: 210 },
  { id: 15, name: "Q8_K", blockSize: 256, bytesPerBlock: 292 },
  { id: 16, name: "IQ2_XXS", blockSize: 256, bytesPerBlock: 66 },
  { id: 17, name: "IQ2_XS", blockSize: 256, bytesPerBlock: 74 },
  { id: 18, name: "IQ3_XXS", blockSize: 256, bytesPerBlock: 98 },
  { id: 19, name: "IQ1_S", blockSize: 256, bytesPerBlock: 50 },
  { id: 20, name: "IQ4_NL", blockSize: 32, bytesPerBlock: 18 },
  { id: 21, name: "IQ3_S", blockSize: 256, bytesPerBlock: 110 },
  { id: 22, name: "IQ2_S", blockSize: 256, bytesPerBlock: 82 },
  { id: 23, name: "IQ4_XS", blockSize: 256, bytesPerBlock: 136 },
  { id: 24, name: "I8", blockSize: 1, bytesPerBlock: 1 },
  { id: 25, name: "I16", blockSize: 1, bytesPerBlock: 2 },
  { id: 26, name: "I32", blockSize: 1, bytesPerBlock: 4 },
  { id: 27, name: "I64", blockSize: 1, bytesPerBlock: 8 },
  { id: 28, name: "F64", blockSize: 1, bytesPerBlock: 8 },
  { id: 29, name: "IQ1_M", blockSize: 256, bytesPerBlock: 56 },
  { id: 30, name: "BF16", blockSize: 1, bytesPerBlock: 2 },
  { id: 34, name: "TQ1_0", blockSize: 256, bytesPerBlock: 54 },
  { id: 35, name: "TQ2_0", blockSize: 256, bytesPerBlock: 66 },
  { id: 39, name: "MXFP4", blockSize: 32, bytesPerBlock: 17 },
  { id: 40, name: "NVFP4", blockSize: 64, bytesPerBlock: 36 },
  { id: 41, name: "Q1_0", blockSize: 128, bytesPerBlock: 18 },
  { id: 42, name: "Q2_0", blockSize: 64, bytesPerBlock: 18 },
];

export const TYPE_BY_ID = new Map(GGML_TYPES.map((t) => [t.id, t]));
export const TYPE_BY_NAME = new Map(GGML_TYPES.map((t) => [t.name, t]));

/** Look a ggml type up by id or (case-insensitive) name; undefined when unknown. */
export function findGgmlType(t: number | string): GgmlTypeInfo | undefined {
  return typeof t === "number" ? TYPE_BY_ID.get(t) : TYPE_BY_NAME.get(t.toUpperCase());
}

/**
 * Bytes of a tensor of `type` with `dims` (innermost first), or a description of why it
 * cannot exist: dims[0] not a multiple of the block size, or a size beyond 2^53.
 */
export function ggmlTensorBytes(type: GgmlTypeInfo, dims: readonly number[]): number | string {
  const d0 = dims[0] ?? 1;
  if (d0 % type.blockSize !== 0) return `dims[0] = ${d0} is not a multiple of the ${type.name} block size ${type.blockSize}`;
  let n = d0 / type.blockSize * type.bytesPerBlock;
  if (n > Number.MAX_SAFE_INTEGER) return "tensor size exceeds 2^53 bytes";
  for (let i = 1; i < dims.length; i++) {
    const d = dims[i]!;
    if (d !== 0 && n > Number.MAX_SAFE_INTEGER / d) return "tensor size exceeds 2^53 bytes";
    n *= d;
  }
  return n;
}

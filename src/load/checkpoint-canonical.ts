/**
 * Unquantized safetensors tensors as canonical packing inputs: F16/BF16 matrices keep
 * their stored bits (16-bit packed weights, no f32 copy), F32 stays f32. Embeddings
 * in 16 bits become a row-decoding table.
 */
import type { Checkpoint } from "../io/checkpoint.ts";
import type { EmbeddingTable } from "../nn/weights.ts";
import { FormatError } from "../util/errors.ts";
import { embeddingTable16, type Buffers, type CanonicalWeight } from "./canonical.ts";
import { checkpointRaw } from "./raw-read.ts";
import { u16 } from "./gguf-canonical.ts";

export interface CheckpointCanonical {
  readCanonical(name: string, buffers?: Buffers): CanonicalWeight;
  readEmbedding(name: string): Float32Array | EmbeddingTable;
  /** An F16/BF16 matrix's place in its shard (TensorSource.locate16), null for other dtypes. */
  locate16(name: string): { path: string; offset: number; dtype: "f16" | "bf16" } | null;
}

export function checkpointCanonical(ckpt: Checkpoint, origin: string): CheckpointCanonical {
  const matrix = (name: string): { dtype: string; N: number; K: number } => {
    const { dtype, shape } = ckpt.info(name);
    if (shape.length !== 2) throw new FormatError(`tensor "${name}" is not a matrix`, { file: origin, field: name, expected: "2 dimensions [out, in]", found: `[${shape.join(", ")}]` });
    return { dtype, N: shape[0]!, K: shape[1]! };
  };
  return {
    readCanonical(name, buffers) {
      const { dtype, N, K } = matrix(name);
      if (dtype === "F16" || dtype === "BF16") {
        const raw = buffers !== undefined ? checkpointRaw(ckpt, name, buffers) : ckpt.readRawSync(name);
        return { kind: "16", args: { data: u16(raw), dtype: dtype === "F16" ? "f16" : "bf16", N, K } };
      }
      if (dtype === "F32") return { kind: "f32", N, K, data: ckpt.readF32Sync(name) };
      throw new FormatError(`tensor "${name}" has a dtype that cannot be a weight`, { file: origin, field: name, expected: "F32, F16 or BF16", found: dtype });
    },
    locate16(name) {
      const { dtype } = matrix(name);
      if (dtype !== "F16" && dtype !== "BF16") return null;
      const { path, begin } = ckpt.locate(name);
      return { path, offset: begin, dtype: dtype === "F16" ? "f16" : "bf16" };
    },
    readEmbedding(name) {
      const { dtype, N, K } = matrix(name);
      if (dtype === "F16" || dtype === "BF16") return embeddingTable16(u16(ckpt.readRawSync(name)), dtype === "F16" ? "f16" : "bf16", N, K);
      return ckpt.readF32Sync(name);
    },
  };
}

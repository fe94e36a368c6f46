/**
 * Quantized source tensors for loader tests: random grids (QuantizedLinear) and
 * safetensors folders holding them in a checkpoint format's tensors.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { writeSafetensors, type TensorSource as WriteSource } from "../../src/io/safetensors.ts";
import type { QuantizedLinear } from "../../src/tensor/quantized.ts";
import { f16ToF32, f32ToF16 } from "../../src/tensor/dtype.ts";
import { mulberry32 } from "../../src/util/random.ts";

/** A random grid: codes, f16-rounded scales, zeros (sym: 2^(b−1)), g_idx contiguous or act-order. */
export function randomQuantized(N: number, K: number, bits: number, g: number, sym: boolean, actOrder: boolean, seed: number): QuantizedLinear {
  const rand = mulberry32(seed);
  const G = Math.ceil(K / g), maxq = 2 ** bits - 1;
  const codes = new Uint8Array(N * K).map(() => Math.floor(rand() * (maxq + 1)));
  const scales = new Float32Array(N * G).map(() => f16ToF32(f32ToF16(0.01 + 0.05 * rand())));
  const zeros = new Uint8Array(N * G).map(() => (sym ? 2 ** (bits - 1) : 1 + Math.floor(rand() * maxq)));
  const order = Array.from({ length: K }, (_, k) => k);
  if (actOrder) for (let i = K - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [order[i], order[j]] = [order[j]!, order[i]!]; }
  const gIdx = new Int32Array(K);
  order.forEach((k, pos) => { gIdx[k] = Math.floor(pos / g); });
  return { N, K, bits, groupSize: g, sym, codes, scales, zeros, gIdx };
}

export type FolderTensors = Record<string, { dtype: "I32" | "F16" | "BF16" | "F32"; shape: number[]; data: Uint8Array }>;

/** `<root>/<name>/model.safetensors` holding the tensors; returns the folder. */
export async function writeFolder(root: string, name: string, tensors: FolderTensors): Promise<string> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const list: WriteSource[] = Object.entries(tensors).map(([n, t]) => ({ name: n, dtype: t.dtype, shape: t.shape, data: t.data }));
  await writeSafetensors(join(dir, "model.safetensors"), list);
  return dir;
}

export const bytes = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

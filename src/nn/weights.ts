/**
 * Runtime weights, in PyTorch layout. Blocks are separate objects so the quantizer
 * can hold one block at a time; `loadBlock` reads exactly one block in f32.
 * A linear's weight is f32 (the quantizer, the dequantized reference path) or a
 * backend's packed handle (src/load/packed-weights.ts); the embedding is an f32
 * matrix or a table that decodes rows on demand from its stored form.
 */
import type { ModelConfig } from "../arch/config.ts";
import type { CanonicalWeight, LinearWeight, PackBuffers as Buffers, SourceBlocks } from "../backend/backend.ts";
import { linearTensorName, type LinearName } from "../arch/registry.ts";
import { FormatError, invariant } from "../util/errors.ts";
import { hasBias, linearShapes } from "../arch/shapes.ts";

export { hasBias, linearShapes }; // their home is arch/shapes.ts

/** A linear layer y = x·Wᵀ + b (W f32 by default; `Linear<LinearWeight>` at run time may be packed). */
export interface Linear<W extends LinearWeight = Float32Array> {
  /** [N, K] row-major (out_features × in_features), or a packed handle of that matrix */
  weight: W;
  /** [N] or absent */
  bias?: Float32Array;
  /** out_features */
  N: number;
  /** in_features */
  K: number;
}

export interface BlockWeights<W extends LinearWeight = Float32Array> {
  /** [H] */
  attnNorm: Float32Array;
  /** [H] */
  mlpNorm: Float32Array;
  linears: Record<LinearName, Linear<W>>;
}

/** Embedding rows kept in their stored form (f16/bf16 bits, GGUF blocks), decoded per lookup. */
export interface EmbeddingTable {
  /** Rows (vocabulary). */
  readonly V: number;
  /** Row length (hidden size). */
  readonly H: number;
  /** Bytes held. */
  readonly bytes: number;
  /** Storage type, e.g. "bf16", "Q4_0". */
  readonly dtype: string;
  /** out[offset .. offset+H) = row `id` in f32. */
  row(id: number, out: Float32Array, offset: number): void;
}

export interface ModelWeights<W extends LinearWeight = Float32Array> {
  /** [V, H] f32, or (packed models) a table decoding rows from their stored form */
  embed: [W] extends [Float32Array] ? Float32Array : Float32Array | EmbeddingTable;
  blocks: BlockWeights<W>[];
  /** [H] */
  finalNorm: Float32Array;
  /** [V, H] (the embedding matrix itself when tied and f32) */
  lmHead: W;
}

/** out[offset .. offset+H) = embedding row `id` (f32 matrix or EmbeddingTable). */
export function embeddingRow(embed: Float32Array | EmbeddingTable, id: number, H: number, out: Float32Array, offset: number): void {
  if (embed instanceof Float32Array) out.set(embed.subarray(id * H, (id + 1) * H), offset);
  else embed.row(id, out, offset);
}

/**
 * Where weights come from: a safetensors checkpoint, a GGUF file, a quantized
 * checkpoint unpacked to f32... Names are HF tensor names.
 */
export interface TensorSource {
  /** Human-readable origin for error messages (a folder or file path). */
  readonly origin: string;
  has(name: string): boolean;
  shape(name: string): readonly number[];
  readF32Sync(name: string): Float32Array;
  /**
   * readF32Sync into `out` (its exact length), reading the stored bytes through `buffers`
   * (no fresh arrays: the quantizer reads block after block into the same memory).
   */
  readF32Into?(name: string, out: Float32Array, buffers: Buffers): Float32Array;
  /**
   * A 2-D weight [N, K] as canonical packing inputs (load/canonical.ts), converted straight
   * from its stored form; with `buffers`, the arrays are views of them (valid until the next call).
   */
  readCanonical?(name: string, buffers?: Buffers): CanonicalWeight;
  /**
   * A quantized 2-D weight's stored bytes for Backend.repack (views of `buffers`), or null
   * when its stored form is not one the repackers read (then readCanonical is used).
   */
  readSource?(name: string, buffers: Buffers): SourceBlocks | null;
  /** The embedding [V, H] in its stored form (f32, or rows decoded on demand). */
  readEmbedding?(name: string): Float32Array | EmbeddingTable;
  /** Where an F16/BF16 tensor's bytes lie in a file (for Backend.view16), or null when it is not one stored as such. */
  locate16?(name: string): { path: string; offset: number; dtype: "f16" | "bf16" } | null;
}

export function expectShape(src: TensorSource, name: string, expected: readonly number[]): void {
  if (!src.has(name)) {
    throw new FormatError(`missing tensor "${name}"`, {
      file: src.origin, field: name, expected: `a tensor of shape [${expected.join(", ")}]`, found: "no such tensor",
      hint: "the checkpoint does not match config.json (wrong folder, or an incomplete download?)",
    });
  }
  const s = src.shape(name);
  if (s.length !== expected.length || s.some((d, i) => d !== expected[i])) {
    throw new FormatError(`tensor "${name}" has the wrong shape`, {
      file: src.origin, field: name, expected: `[${expected.join(", ")}] (from config.json)`, found: `[${s.join(", ")}]`,
      hint: "config.json and the weights disagree: check hidden_size, head counts and intermediate_size",
    });
  }
}

function read(src: TensorSource, name: string, shape: readonly number[]): Float32Array {
  expectShape(src, name, shape);
  return src.readF32Sync(name);
}

export interface LoadBlockOptions {
  /**
   * false: every linear's weight is left empty (shapes checked, biases and norms read), for
   * callers that read the matrices in their stored form themselves.
   */
  linearWeights?: boolean;
  /**
   * Reused memory (load/canonical.ts Scratch): every array of the block is a view of a slot
   * `block:*` of it, overwritten by the next loadBlock on the same buffers, so a block-by-block
   * reader allocates one block's worth once instead of two per block (sources without
   * readF32Into still return fresh arrays).
   */
  buffers?: Buffers;
}

/** One block in f32. */
export function loadBlock(cfg: ModelConfig, src: TensorSource, i: number, opts: LoadBlockOptions = {}): BlockWeights {
  const a = cfg.arch;
  const H = cfg.hiddenSize;
  const p = a.blockPrefix(i);
  const shapes = linearShapes(cfg);
  const { buffers } = opts;
  const get = (name: string, shape: readonly number[], slot: string): Float32Array => {
    if (buffers === undefined || src.readF32Into === undefined) return read(src, name, shape);
    expectShape(src, name, shape);
    return src.readF32Into(name, buffers.f32(`block:${slot}`, shape.reduce((x, y) => x * y, 1)), buffers);
  };
  const linears = {} as Record<LinearName, Linear>;
  for (const spec of a.linears) {
    const [N, K] = shapes[spec.name];
    const name = linearTensorName(a, i, spec);
    const weight = opts.linearWeights === false ? (expectShape(src, name, [N, K]), new Float32Array(0)) : get(name, [N, K], spec.name);
    const l: Linear = { weight, N, K };
    if (hasBias(cfg, spec.name)) l.bias = get(linearTensorName(a, i, spec, "bias"), [N], `${spec.name}.bias`);
    linears[spec.name] = l;
  }
  return {
    attnNorm: get(`${p}.${a.attnNorm.hf}.weight`, [H], "attnNorm"),
    mlpNorm: get(`${p}.${a.mlpNorm.hf}.weight`, [H], "mlpNorm"),
    linears,
  };
}

export function loadEmbedding(cfg: ModelConfig, src: TensorSource): Float32Array {
  return read(src, cfg.arch.embed.hf, [cfg.vocabSize, cfg.hiddenSize]);
}

export function loadModelWeights(cfg: ModelConfig, src: TensorSource): ModelWeights {
  const embed = loadEmbedding(cfg, src);
  const blocks: BlockWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) blocks.push(loadBlock(cfg, src, i));
  const finalNorm = read(src, cfg.arch.finalNorm.hf, [cfg.hiddenSize]);
  const headName = cfg.arch.lmHead.hf;
  // Tied models may still ship lm_head.weight (some exporters do); prefer it when present.
  const lmHead = src.has(headName) || !cfg.tieWordEmbeddings ? read(src, headName, [cfg.vocabSize, cfg.hiddenSize]) : embed;
  return { embed, blocks, finalNorm, lmHead };
}

/** The f32 matrix of a weight loaded with `weights: "f32"` (tests, the quantizer); an internal error if it is packed. */
export function asF32(w: LinearWeight | Float32Array | EmbeddingTable, what = "weight"): Float32Array {
  invariant(w instanceof Float32Array, () => `${what} is held packed; load with weights: "f32" to read it as f32`);
  return w;
}

/**
 * Runtime weights in f32, in PyTorch layout. Blocks are separate objects so the
 * quantizer can hold one block at a time; `loadBlock` reads exactly one block.
 */
import type { ModelConfig } from "../arch/config.ts";
import { linearTensorName, type LinearName } from "../arch/registry.ts";
import { FormatError } from "../util/errors.ts";
import { hasBias, linearShapes } from "../arch/shapes.ts";

export { hasBias, linearShapes }; // their home is arch/shapes.ts

/** A linear layer y = x·Wᵀ + b. */
export interface Linear {
  /** [N, K] row-major (out_features × in_features) */
  weight: Float32Array;
  /** [N] or absent */
  bias?: Float32Array;
  /** out_features */
  N: number;
  /** in_features */
  K: number;
}

export interface BlockWeights {
  /** [H] */
  attnNorm: Float32Array;
  /** [H] */
  mlpNorm: Float32Array;
  linears: Record<LinearName, Linear>;
}

export interface ModelWeights {
  /** [V, H] */
  embed: Float32Array;
  blocks: BlockWeights[];
  /** [H] */
  finalNorm: Float32Array;
  /** [V, H] (the embedding matrix itself when tied) */
  lmHead: Float32Array;
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
}

function expectShape(src: TensorSource, name: string, expected: readonly number[]): void {
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

export function loadBlock(cfg: ModelConfig, src: TensorSource, i: number): BlockWeights {
  const a = cfg.arch;
  const H = cfg.hiddenSize;
  const p = a.blockPrefix(i);
  const shapes = linearShapes(cfg);
  const linears = {} as Record<LinearName, Linear>;
  for (const spec of a.linears) {
    const [N, K] = shapes[spec.name];
    const l: Linear = { weight: read(src, linearTensorName(a, i, spec), [N, K]), N, K };
    if (hasBias(cfg, spec.name)) l.bias = read(src, linearTensorName(a, i, spec, "bias"), [N]);
    linears[spec.name] = l;
  }
  return {
    attnNorm: read(src, `${p}.${a.attnNorm.hf}.weight`, [H]),
    mlpNorm: read(src, `${p}.${a.mlpNorm.hf}.weight`, [H]),
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

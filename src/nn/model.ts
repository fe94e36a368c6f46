/**
 * The model forward: embeddings → N blocks → final norm → lm_head.
 * One forward pass shared by calibration, evaluation and chat.
 */
import type { ModelConfig } from "../arch/config.ts";
import type { Backend } from "../backend/backend.ts";
import { UsageError } from "../util/errors.ts";
import { blockForward, BlockWorkspace, normRows, type BlockContext, type LayerCache, type Tap } from "./block.ts";
import { RopeTable } from "./rope.ts";
import { embeddingRow, type ModelWeights } from "./weights.ts";
import type { LinearWeight } from "../backend/backend.ts";

/**
 * Element type of a KV cache: f32, or f16 (IEEE binary16, llama.cpp's default: half the
 * bytes decode attention streams; keys and values rounded to nearest even as written).
 */
export type KvDType = "f32" | "f16";

export class KvCache {
  readonly layers: LayerCache[];
  /** Number of positions already filled. */
  pos = 0;
  constructor(cfg: ModelConfig, readonly capacity: number, readonly dtype: KvDType = "f32") {
    const kvDim = cfg.numKvHeads * cfg.headDim;
    const rows = (): Float32Array | Uint16Array => (dtype === "f16" ? new Uint16Array(capacity * kvDim) : new Float32Array(capacity * kvDim));
    this.layers = Array.from({ length: cfg.numLayers }, () => ({
      k: rows(), // [capacity, nKv·d]
      v: rows(), // [capacity, nKv·d]
    }));
  }
  reset(): void { this.pos = 0; }
}

export interface ForwardOptions {
  /** Which logits to return: every position [T, V], only the last [1, V], or none. */
  logits?: "all" | "last" | "none";
  /** Sees each linear's input; ev.x is overwritten by the next block (copy it to keep it). */
  tap?: Tap;
}

export class Model {
  readonly rope: RopeTable;
  /** The forward's buffers, built on first use and grown to the longest call seen (then reused). */
  #workspace: BlockWorkspace | null = null;
  constructor(readonly cfg: ModelConfig, readonly weights: ModelWeights<LinearWeight>, readonly backend: Backend) {
    this.rope = new RopeTable(cfg);
  }

  newCache(capacity = this.cfg.maxPositionEmbeddings, dtype: KvDType = "f32"): KvCache {
    return new KvCache(this.cfg, capacity, dtype);
  }

  /** x[T, H] = embedding rows of tokens. */
  embed(tokens: ArrayLike<number>): Float32Array {
    const H = this.cfg.hiddenSize;
    const V = this.cfg.vocabSize;
    const x = new Float32Array(tokens.length * H);
    for (let t = 0; t < tokens.length; t++) {
      const id = tokens[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new UsageError("token id out of range", { field: `tokens[${t}]`, expected: `an integer in [0, ${V})`, found: String(id) });
      }
      embeddingRow(this.weights.embed, id, H, x, t * H);
    }
    return x;
  }

  /**
   * Feed `tokens` at positions cache.pos.. and advance the cache.
   * Returns logits [T, V] ("all"), [1, V] ("last") or an empty array ("none").
   */
  forward(tokens: ArrayLike<number>, cache: KvCache, opts: ForwardOptions = {}): Float32Array {
    const T = tokens.length;
    const pos0 = cache.pos;
    if (pos0 + T > cache.capacity) {
      throw new UsageError("sequence longer than the KV cache", {
        expected: `at most ${cache.capacity} positions`, found: `${pos0 + T}`,
        hint: "use a shorter context (--ctx) or a larger cache",
      });
    }
    const { cfg, backend } = this;
    if (!this.#workspace || this.#workspace.maxT < T) this.#workspace = new BlockWorkspace(cfg, T);
    const ctx: BlockContext = { cfg, backend, rope: this.rope, tap: opts.tap, workspace: this.#workspace };
    const x = this.embed(tokens); // [T, H] the residual stream, updated in place by every block
    for (let i = 0; i < cfg.numLayers; i++) {
      blockForward(ctx, i, this.weights.blocks[i]!, x, T, pos0, cache.layers[i]!, x);
    }
    cache.pos = pos0 + T;
    const mode = opts.logits ?? "all";
    if (mode === "none") return new Float32Array(0);
    const H = cfg.hiddenSize;
    const rows = mode === "last" ? x.subarray((T - 1) * H, T * H) : x;
    const R = mode === "last" ? 1 : T;
    const xn = normRows(ctx, rows, this.weights.finalNorm, R, new Float32Array(R * H)); // [R, H]
    return backend.matmul(xn, this.weights.lmHead, R, H, cfg.vocabSize); // [R, V]
  }
}

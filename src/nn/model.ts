/**
 * The model forward: embeddings → N blocks → final norm → lm_head.
 * One forward pass shared by calibration, evaluation and chat.
 */
import type { ModelConfig } from "../arch/config.ts";
import { KEY_BLOCK, type Backend, type StepPlan } from "../backend/backend.ts";
import { UsageError } from "../util/errors.ts";
import { blockForward, BlockWorkspace, normRows, type BlockContext, type LayerCache, type Tap } from "./block.ts";
import { RopeTable } from "./rope.ts";
import { embeddingRow, type ModelWeights } from "./weights.ts";
import type { LinearWeight } from "../backend/backend.ts";
import { argmax } from "../util/argmax.ts";

/**
 * Element type of a KV cache: f32, or f16 (IEEE binary16, llama.cpp's default: half the
 * bytes decode attention streams; keys and values rounded to nearest even as written).
 */
export type KvDType = "f32" | "f16";

export { argmax };

export class KvCache {
  readonly layers: LayerCache[];
  /** Number of positions already filled. */
  pos = 0;
  /**
   * keyBlocks (f16 only): the keys stored transposed in blocks of 32 positions, the layout the
   * native decode attention reads without transposes (AttentionShape.keyBlocks, native/LAYOUTS.md
   * "KV cache"); their array holds whole blocks (capacity rounded up to a multiple of 32).
   */
  constructor(cfg: ModelConfig, readonly capacity: number, readonly dtype: KvDType = "f32", readonly keyBlocks = false) {
    if (keyBlocks && dtype !== "f16") {
      throw new UsageError("KvCache: keys in blocks need an f16 cache", { field: "dtype", expected: '"f16" with keyBlocks', found: dtype, hint: "leave keyBlocks off for an f32 cache" });
    }
    const kvDim = cfg.numKvHeads * cfg.headDim;
    const kRows = keyBlocks ? Math.ceil(capacity / KEY_BLOCK) * KEY_BLOCK : capacity;
    const rows = (n: number): Float32Array | Uint16Array => (dtype === "f16" ? new Uint16Array(n * kvDim) : new Float32Array(n * kvDim));
    this.layers = Array.from({ length: cfg.numLayers }, () => ({
      k: rows(kRows), // [capacity, nKv·d], or keyBlocks [⌈capacity/32⌉, nKv·d, 32]
      v: rows(capacity), // [capacity, nKv·d]
      ...(keyBlocks ? { keyBlocks } : {}),
    }));
  }
  reset(): void { this.pos = 0; }
}

export interface ForwardOptions {
  /** Which logits to return: every position [T, V], only the last [1, V], or none. */
  logits?: "all" | "last" | "none";
  /** Sees each linear's input; ev.x is overwritten by the next block (copy it to keep it). */
  tap?: Tap;
  /**
   * Where to write the returned logits ([T, V] or [1, V], exactly that length) instead of a fresh
   * array: a decode loop reusing one buffer skips a 128 KB allocation and its page faults per
   * step (~0.1 ms at V = 32000, eval/reports/step-profile.md). Ignored with logits "none".
   */
  out?: Float32Array;
  /**
   * [≥ 1]: receives the greedy pick over the returned logits' last row (the lowest index of the
   * largest logit, a NaN never chosen, 0 when none exceeds −∞: util/argmax.ts): on
   * a replayed step from the plan's last op (Backend.argmax, native), else scanned here. A
   * greedy sampler then skips its own scan (~50 µs at V = 32000, eval/reports/step-gap.md).
   * Ignored with logits "none".
   */
  argmax?: Int32Array | undefined;
}

/**
 * A decode step recorded for one cache (Backend.recordStep): the plan and the buffers it owns.
 * x is the residual stream the plan updates in place, logits the lm_head output it writes.
 */
interface StepState {
  plan: StepPlan;
  /** [1, H] */ x: Float32Array;
  /** [1, V] */ logits: Float32Array;
  /** [1] the plan's argmax of logits, or null: the backend has no Backend.argmax */
  id: Int32Array | null;
}

export class Model {
  readonly rope: RopeTable;
  /**
   * Whether decode steps (T = 1, no tap, logits wanted) replay a recorded plan in one native
   * call when the backend offers Backend.recordStep (default on; QLLM_STEP_PLAN=0 turns it off,
   * eval/decode-ab.ts --plan-off a|b A/Bs it). Same kernels, same order: the same bits.
   */
  stepPlans = process.env.QLLM_STEP_PLAN !== "0";
  /** Per cache: its recorded step, or why the step cannot be recorded (then it runs eagerly). */
  #steps = new WeakMap<KvCache, StepState | string>();
  /** The forward's buffers, built on first use and grown to the longest call seen (then reused). */
  #workspace: BlockWorkspace | null = null;
  constructor(readonly cfg: ModelConfig, readonly weights: ModelWeights<LinearWeight>, readonly backend: Backend) {
    this.rope = new RopeTable(cfg);
  }

  /** keyBlocks defaults to the backend's layout for f16 caches (Backend.keyBlocks: the native backend's, blocked keys). */
  newCache(capacity = this.cfg.maxPositionEmbeddings, dtype: KvDType = "f32", keyBlocks = dtype === "f16" && this.backend.keyBlocks === true): KvCache {
    return new KvCache(this.cfg, capacity, dtype, keyBlocks);
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
    const mode = opts.logits ?? "all";
    const out = mode === "none" ? undefined : opts.out;
    if (out !== undefined) {
      const rows = mode === "last" ? 1 : T;
      if (out.length !== rows * cfg.vocabSize) {
        throw new UsageError("forward: opts.out has the wrong length", {
          field: "opts.out", expected: `${rows} × ${cfg.vocabSize} = ${rows * cfg.vocabSize} floats (logits "${mode}")`, found: `${out.length}`,
          hint: "allocate new Float32Array(rows * vocabSize), or leave out unset for a fresh array",
        });
      }
    }
    if (T === 1 && mode !== "none" && opts.tap === undefined && this.stepPlans) {
      const step = this.#stepFor(cache);
      if (typeof step !== "string") {
        embeddingRow(this.weights.embed, this.#checkToken(tokens[0]!), cfg.hiddenSize, step.x, 0);
        step.plan.run(pos0);
        cache.pos = pos0 + 1;
        if (opts.argmax !== undefined) opts.argmax[0] = step.id !== null ? step.id[0]! : argmax(step.logits);
        // [1, V] a copy: the plan's buffer is rewritten by the next step
        if (out === undefined) return step.logits.slice();
        out.set(step.logits);
        return out;
      }
    }
    if (!this.#workspace || this.#workspace.maxT < T) this.#workspace = new BlockWorkspace(cfg, T);
    const ctx: BlockContext = { cfg, backend, rope: this.rope, tap: opts.tap, workspace: this.#workspace };
    const x = this.embed(tokens); // [T, H] the residual stream, updated in place by every block
    for (let i = 0; i < cfg.numLayers; i++) {
      blockForward(ctx, i, this.weights.blocks[i]!, x, T, pos0, cache.layers[i]!, x);
    }
    cache.pos = pos0 + T;
    if (mode === "none") return new Float32Array(0);
    const H = cfg.hiddenSize;
    const rows = mode === "last" ? x.subarray((T - 1) * H, T * H) : x;
    const R = mode === "last" ? 1 : T;
    const xn = normRows(ctx, rows, this.weights.finalNorm, R, new Float32Array(R * H)); // [R, H]
    const logits = backend.matmul(xn, this.weights.lmHead, R, H, cfg.vocabSize, undefined, out); // [R, V]
    if (opts.argmax !== undefined) opts.argmax[0] = argmax(logits, (R - 1) * cfg.vocabSize, cfg.vocabSize);
    return logits;
  }

  /** The decode step recorded for `cache`, or why it has none, or undefined before its first T = 1 step (tests, benchmarks). */
  stepPlanOf(cache: KvCache): StepPlan | string | undefined {
    const s = this.#steps.get(cache);
    return typeof s === "object" ? s.plan : s;
  }

  /** tokens[0] checked as embed() checks it. */
  #checkToken(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.cfg.vocabSize) {
      throw new UsageError("token id out of range", { field: "tokens[0]", expected: `an integer in [0, ${this.cfg.vocabSize})`, found: String(id) });
    }
    return id;
  }

  /**
   * The recorded decode step of `cache` (recorded on first use, at the cache's current
   * position: the recording captures the calls, runs none), or why there is none. Its own
   * workspace for T = 1 and the RoPE table grown to the cache's capacity first, so that no
   * captured buffer is replaced while the plan lives.
   */
  #stepFor(cache: KvCache): StepState | string {
    const known = this.#steps.get(cache);
    if (known !== undefined) return known;
    const { cfg, backend } = this;
    const b = backend;
    let step: StepState | string;
    if (b.recordStep === undefined) step = "the backend records no plans";
    else if (!b.swiglu || !b.rmsNorm || !b.rope || !b.add || (cache.dtype === "f16" && !b.toF16) || (cache.keyBlocks && !b.toF16Keys)) step = "the backend lacks a native elementwise op";
    else {
      this.rope.ensure(cache.capacity);
      const H = cfg.hiddenSize, pos = cache.pos;
      const x = new Float32Array(H), logits = new Float32Array(cfg.vocabSize), xn = new Float32Array(H);
      const id = b.argmax !== undefined ? new Int32Array(1) : null;
      const ctx: BlockContext = { cfg, backend, rope: this.rope, workspace: new BlockWorkspace(cfg, 1) };
      const kv = cache.layers.flatMap((l) => [l.k, l.v]);
      const plan = b.recordStep(backend, kv, pos, cfg.numKvHeads * cfg.headDim, () => {
        for (let i = 0; i < cfg.numLayers; i++) blockForward(ctx, i, this.weights.blocks[i]!, x, 1, pos, cache.layers[i]!, x);
        normRows(ctx, x, this.weights.finalNorm, 1, xn);
        backend.matmul(xn, this.weights.lmHead, 1, H, cfg.vocabSize, undefined, logits);
        if (id !== null) b.argmax!(logits, cfg.vocabSize, id);
      });
      step = typeof plan === "string" ? plan : { plan, x, logits, id };
    }
    this.#steps.set(cache, step);
    return step;
  }
}

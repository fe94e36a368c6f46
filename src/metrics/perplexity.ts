/**
 * Perplexity under the two protocols of ALGORITHMS.md §5. Numbers are only
 * comparable within one protocol, so every result carries its protocol, ctx and
 * the number of tokens scored.
 *
 * - "gptq" (GPTQ/AWQ papers): non-overlapping windows of ctx tokens; every
 *   next-token prediction inside a window is scored (ctx − 1 per window).
 * - "llama.cpp" (`llama-perplexity`): the same windows, but the first token of each
 *   window is replaced by BOS (when the tokenizer adds one) and only the second
 *   half is scored: logits at positions ctx/2 .. ctx−2 predict tokens ctx/2+1 .. ctx−1.
 */
import type { KvDType, Model } from "../nn/model.ts";
import { UsageError } from "../util/errors.ts";

export type Protocol = "gptq" | "llama.cpp";
export const PROTOCOLS: readonly Protocol[] = ["gptq", "llama.cpp"];

export interface PerplexityOptions {
  protocol: Protocol;
  ctx: number;
  /** BOS id used by the llama.cpp protocol (null: the first token is kept). */
  bosId: number | null;
  /** The KV cache's element type (default f32; f16 rounds keys and values as written, CPU only). */
  kv?: KvDType;
  /** Called after each window with (windows done, windows total). */
  onWindow?: (done: number, total: number, partialPpl: number) => void;
}

export interface PerplexityResult {
  protocol: Protocol;
  ppl: number;
  /** Mean negative log-likelihood (nats) over scored tokens. */
  nll: number;
  ctx: number;
  windows: number;
  tokensScored: number;
  /** Tokens pushed through the model (windows · ctx). */
  tokensProcessed: number;
  seconds: number;
  /** tokensProcessed / seconds. */
  tokensPerSecond: number;
}

/** −log softmax(row)[target], computed in f64 with max subtraction. */
export function tokenNll(logits: Float32Array, offset: number, V: number, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) { const v = logits[offset + i]!; if (v > max) max = v; }
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[offset + i]! - max);
  return Math.log(sum) + max - logits[offset + target]!;
}

/** The windows a protocol evaluates: token ids per window and the scored positions. */
export function perplexityWindows(tokens: readonly number[], protocol: Protocol, ctx: number, bosId: number | null):
  { windows: number[][]; first: number } {
  if (!Number.isInteger(ctx) || ctx < 2) throw new UsageError("invalid context length", { field: "--ctx", expected: "an integer ≥ 2", found: String(ctx) });
  const n = Math.floor(tokens.length / ctx);
  if (n < 1) {
    throw new UsageError("text too short for one evaluation window", {
      field: "--ctx", expected: `at least ${ctx} tokens`, found: `${tokens.length} tokens`,
      hint: "use a longer --text or a smaller --ctx",
    });
  }
  const windows: number[][] = [];
  for (let w = 0; w < n; w++) {
    const win = tokens.slice(w * ctx, (w + 1) * ctx);
    if (protocol === "llama.cpp" && bosId !== null) win[0] = bosId;
    windows.push(win);
  }
  return { windows, first: protocol === "llama.cpp" ? Math.floor(ctx / 2) : 0 };
}

/** The part of a model perplexity needs: Model, or the GPU runner (async forward). */
export interface ScoringModel<C extends { reset(): void }> {
  readonly cfg: { maxPositionEmbeddings: number; vocabSize: number };
  newCache(capacity: number, kv?: KvDType): C;
  forward(tokens: readonly number[], cache: C, opts: { logits: "all" }): Float32Array | Promise<Float32Array>;
}

export function perplexity(model: Model, tokens: readonly number[], opts: PerplexityOptions): PerplexityResult {
  const run = scoring(model, tokens, opts);
  for (const win of run.windows) { run.cache.reset(); run.add(win, model.forward(win, run.cache, { logits: "all" })); }
  return run.result();
}

/** perplexity() for a model whose forward is asynchronous (the WebGPU runner); same windows, same scoring. */
export async function perplexityAsync<C extends { reset(): void }>(model: ScoringModel<C>, tokens: readonly number[], opts: PerplexityOptions): Promise<PerplexityResult> {
  const run = scoring(model, tokens, opts);
  for (const win of run.windows) { run.cache.reset(); run.add(win, await model.forward(win, run.cache, { logits: "all" })); }
  return run.result();
}

function scoring<C extends { reset(): void }>(model: ScoringModel<C>, tokens: readonly number[], opts: PerplexityOptions) {
  const { protocol, ctx } = opts;
  if (ctx > model.cfg.maxPositionEmbeddings) {
    throw new UsageError("context longer than the model supports", {
      field: "--ctx", expected: `≤ ${model.cfg.maxPositionEmbeddings} (max_position_embeddings)`, found: String(ctx),
    });
  }
  const { windows, first } = perplexityWindows(tokens, protocol, ctx, opts.bosId);
  const V = model.cfg.vocabSize;
  const cache = opts.kv === undefined ? model.newCache(ctx) : model.newCache(ctx, opts.kv);
  const t0 = performance.now();
  let sumNll = 0;
  let scored = 0;
  let done = 0;
  return {
    windows, cache,
    /** Score one window from its logits [ctx, V]. */
    add(win: number[], logits: Float32Array): void {
      for (let j = first; j < ctx - 1; j++) { sumNll += tokenNll(logits, j * V, V, win[j + 1]!); scored++; }
      opts.onWindow?.(++done, windows.length, Math.exp(sumNll / scored));
    },
    result(): PerplexityResult {
      const seconds = (performance.now() - t0) / 1000;
      const nll = sumNll / scored;
      return {
        protocol, ppl: Math.exp(nll), nll, ctx, windows: windows.length, tokensScored: scored,
        tokensProcessed: windows.length * ctx, seconds, tokensPerSecond: (windows.length * ctx) / seconds,
      };
    },
  };
}

/**
 * Token generation on one KV cache (a Session): prefill only the prompt tokens the
 * cache does not already hold, then sample token by token until an end-of-turn id,
 * a stop string, max tokens, the end of the cache, or cancellation.
 *
 * The loop yields to the event loop after every token (and every prefill chunk), so
 * a server can stream, notice a disconnected client, and interleave sessions, and a
 * terminal can react to Ctrl-C.
 *
 * The model is the CPU Model (a synchronous forward) or the WebGPU runner (GpuModel: its
 * forward is async, one logits read-back per call); a Session binds either to its own
 * cache, and generation awaits a step only when it is a promise.
 */
import type { KvCache, KvDType, Model } from "../nn/model.ts";
import { GpuModel, type GpuKvCache } from "../nn/webgpu-model.ts";
import { UsageError } from "../util/errors.ts";
import { Sampler, type SamplerOptions } from "./sampler.ts";
import { IncrementalDecoder, StopMatcher, type Detokenizer } from "./text-stream.ts";

/** Prompt tokens fed per forward call during prefill (bounds event-loop stalls). */
export const PREFILL_CHUNK = 256;

/** What the engine runs: the CPU model or the GPU runner. */
export type EngineModel = Model | GpuModel;

/**
 * Logits of the last position [1, V] ("last") or none, after feeding `tokens` at cache.pos. On the
 * CPU the array is the session's own buffer, rewritten by the next step, and `id` (given) gets
 * argmax(logits) (Model.forward opts.argmax: a replayed step's native pick); the GPU leaves it.
 */
type Step = (tokens: number[], logits: "last" | "none", id?: Int32Array) => Float32Array | Promise<Float32Array>;

/**
 * The CPU KV cache's element type when none is asked for: f16, as llama.cpp's default
 * (--cache-type-k/-v f16). Measured (eval/reports/kv-precision.md): on the bundled model and its
 * GPTQ/AWQ/Q4_0 outputs the held-out perplexity moves by < 0.01 (of ~108) and greedy ids agree
 * in 97–100% of positions, while decode attention reads half the bytes (576 positions: 97.6 →
 * 67.6 µs per layer, eval/reports/profile-decode-576{,-f16}.md). The GPU runner's default too.
 */
export const DEFAULT_KV: KvDType = "f16";

/** One model context: a KV cache and the ids whose keys/values it holds. */
export class Session {
  readonly cache: KvCache | GpuKvCache;
  /** ids in the cache, [cache.pos] */
  readonly cached: number[] = [];
  /** The model's forward on this session's cache. */
  readonly step: Step;
  /** The cache's element type. */
  readonly kv: KvDType;
  /** kv: the cache's element type (nn/model.ts KvDType), DEFAULT_KV when not given, on the CPU and the GPU. */
  constructor(readonly model: EngineModel, capacity = model.cfg.maxPositionEmbeddings, kv?: KvDType) {
    if (model instanceof GpuModel) {
      this.kv = kv ?? DEFAULT_KV;
      const cache = model.newCache(capacity, this.kv);
      this.cache = cache;
      this.step = (tokens, logits) => model.forward(tokens, cache, { logits });
    } else {
      this.kv = kv ?? DEFAULT_KV;
      const cache = model.newCache(capacity, this.kv);
      this.cache = cache;
      // One [1, V] buffer for every step's logits: generate() reads them before the next step.
      const out = new Float32Array(model.cfg.vocabSize);
      this.step = (tokens, logits, id) => model.forward(tokens, cache, { logits, out, argmax: id });
    }
  }
  get capacity(): number { return this.cache.capacity; }
  /** Forget everything (the next prompt is prefilled from position 0). */
  reset(): void { this.cache.reset(); this.cached.length = 0; }
}

export interface GenerateRequest {
  /** The whole context, [n] ids (what the cache already holds is reused). */
  prompt: readonly number[];
  maxTokens: number;
  sampler: SamplerOptions;
  /** EOS / end-of-turn ids: generation stops when one is sampled (not part of the text). */
  stopIds: readonly number[];
  /** Stop strings: generation stops when the text contains one (it is not part of the text). */
  stopStrings?: readonly string[];
  /** Keep going through end-of-turn ids (fixed-length timing). */
  ignoreEos?: boolean;
  signal?: AbortSignal;
  /** Each piece of visible text as it is produced. */
  onText?: (delta: string) => void;
}

export type FinishReason = "stop" | "length" | "cancelled";

export interface GenerateStats {
  promptTokens: number;
  /** Prompt tokens already in the cache (not recomputed). */
  reusedTokens: number;
  /** Prompt tokens run through the model in prefill (= promptTokens − reusedTokens). */
  prefillTokens: number;
  prefillMs: number;
  /** Tokens sampled (end-of-turn id excluded). */
  generatedTokens: number;
  /** Single-token forward calls after the prefill, and their time (sampling included). */
  decodeSteps: number;
  decodeMs: number;
}

export interface GenerateResult {
  text: string;
  /** Sampled ids, end-of-turn id excluded. */
  ids: number[];
  /** The end-of-turn id that ended generation, if one did. */
  endId: number | null;
  finishReason: FinishReason;
  stats: GenerateStats;
}

const nextTick = (): Promise<void> => new Promise((r) => setImmediate(r));

export async function generate(session: Session, tok: Detokenizer, req: GenerateRequest): Promise<GenerateResult> {
  const { cache, cached } = session;
  const prompt = req.prompt;
  if (prompt.length === 0) throw new UsageError("empty prompt", { field: "prompt", expected: "at least one token", found: "0 tokens" });
  if (prompt.length >= cache.capacity) {
    throw new UsageError("the prompt does not fit in the context", {
      field: "prompt", expected: `fewer than ${cache.capacity} tokens (the model's context)`, found: `${prompt.length} tokens`,
      hint: "shorten the prompt or the conversation",
    });
  }
  // Reuse the longest common prefix; at least one prompt token is run to get logits.
  let common = 0;
  while (common < cached.length && common < prompt.length - 1 && cached[common] === prompt[common]) common++;
  cache.pos = common;
  cached.length = common;

  const t0 = performance.now();
  let logits: Float32Array = new Float32Array(0); // [V] of the last position
  for (let s = common; s < prompt.length; s += PREFILL_CHUNK) {
    const chunk = prompt.slice(s, Math.min(s + PREFILL_CHUNK, prompt.length));
    const r = session.step(chunk, s + chunk.length === prompt.length ? "last" : "none");
    logits = r instanceof Promise ? await r : r;
    cached.push(...chunk);
    if (s + chunk.length < prompt.length) await nextTick();
  }
  const prefillMs = performance.now() - t0;

  const sampler = new Sampler(req.sampler);
  const decoder = new IncrementalDecoder(tok);
  const stop = new StopMatcher(req.stopStrings ?? []);
  const context = [...prompt]; // penalties look back over prompt + output
  const ids: number[] = [];
  let text = "";
  const emit = (d: string): void => { if (d.length > 0) { text += d; req.onText?.(d); } };
  let endId: number | null = null;
  let finishReason: FinishReason = "length";
  let decodeSteps = 0;
  // A greedy draw takes the step's own argmax (a replayed step's native op) instead of scanning
  // the logits again; −1: the step gave none (the GPU), the sampler scans.
  const pick = sampler.greedy ? Int32Array.of(-1) : undefined;
  const t1 = performance.now();
  for (;;) {
    if (req.signal?.aborted) { finishReason = "cancelled"; break; }
    const id = sampler.next(logits, context, pick !== undefined && pick[0]! >= 0 ? pick[0] : undefined);
    if (!req.ignoreEos && req.stopIds.includes(id)) { endId = id; finishReason = "stop"; break; }
    ids.push(id);
    context.push(id);
    emit(stop.push(decoder.push(id)));
    if (stop.stopped) { finishReason = "stop"; break; }
    if (ids.length >= req.maxTokens || cache.pos >= cache.capacity) break; // "length"
    await nextTick();
    if (req.signal?.aborted) { finishReason = "cancelled"; break; }
    if (pick !== undefined) pick[0] = -1;
    const r = session.step([id], "last", pick);
    logits = r instanceof Promise ? await r : r;
    cached.push(id);
    decodeSteps++;
  }
  if (!stop.stopped) emit(stop.push(decoder.flush()) + stop.flush());
  return {
    text, ids, endId, finishReason,
    stats: {
      promptTokens: prompt.length, reusedTokens: common, prefillTokens: prompt.length - common, prefillMs,
      generatedTokens: ids.length, decodeSteps, decodeMs: performance.now() - t1,
    },
  };
}

/** Tokens per second, or 0 for an empty interval. */
export function perSecond(tokens: number, ms: number): number {
  return ms > 0 ? (tokens * 1000) / ms : 0;
}

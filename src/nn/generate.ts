/**
 * Token generation: greedy (argmax) or temperature/top-k/top-p sampling with a
 * seeded PRNG, streaming each new token to a callback.
 */
import { argmax, type KvCache, type Model } from "./model.ts";
import { mulberry32 } from "../util/random.ts";

export interface SampleOptions {
  /** 0 = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

export interface GenerateOptions extends SampleOptions {
  maxTokens: number;
  /** Stop when one of these ids is produced (it is not included in the output). */
  stopIds?: readonly number[];
  onToken?: (id: number) => void;
  cache?: KvCache;
}

export { argmax } from "./model.ts";

export function sample(logits: Float32Array, opts: SampleOptions, rand: () => number): number {
  const temp = opts.temperature ?? 0;
  if (temp <= 0) return argmax(logits);
  const V = logits.length;
  const idx = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]!);
  const k = Math.min(opts.topK ?? V, V);
  const max = logits[idx[0]!]!;
  const probs: number[] = [];
  let sum = 0;
  for (let i = 0; i < k; i++) { const p = Math.exp((logits[idx[i]!]! - max) / temp); probs.push(p); sum += p; }
  const topP = opts.topP ?? 1;
  let cut = probs.length;
  let acc = 0;
  for (let i = 0; i < probs.length; i++) { acc += probs[i]! / sum; if (acc >= topP) { cut = i + 1; break; } }
  let total = 0;
  for (let i = 0; i < cut; i++) total += probs[i]!;
  let r = rand() * total;
  for (let i = 0; i < cut; i++) { r -= probs[i]!; if (r <= 0) return idx[i]!; }
  return idx[cut - 1]!;
}

/**
 * Step i of the decode rule every runner shares (CPU generate, GPU generateGpu): sample
 * from `logits` [1, V], stop on a stop id, emit the id; returns the id to feed next, or
 * null when generation ends here (stop id, maxTokens reached, cache full).
 */
export function decodeStep(
  logits: Float32Array, opts: GenerateOptions | Omit<GenerateOptions, "cache">, rand: () => number, out: number[], i: number,
  cache: { readonly pos: number; readonly capacity: number },
): number | null {
  const id = sample(logits, opts, rand);
  if (opts.stopIds?.includes(id)) return null;
  out.push(id);
  opts.onToken?.(id);
  return i === opts.maxTokens - 1 || cache.pos >= cache.capacity ? null : id;
}

/** Feed `prompt`, then produce up to maxTokens new ids. */
export function generate(model: Model, prompt: readonly number[], opts: GenerateOptions): number[] {
  const cache = opts.cache ?? model.newCache(Math.min(model.cfg.maxPositionEmbeddings, prompt.length + opts.maxTokens));
  const rand = mulberry32(opts.seed ?? 0);
  const out: number[] = [];
  let logits = model.forward(prompt, cache, { logits: "last" }); // [1, V]
  for (let i = 0; i < opts.maxTokens; i++) {
    const id = decodeStep(logits, opts, rand, out, i, cache);
    if (id === null) break;
    logits = model.forward([id], cache, { logits: "last" });
  }
  return out;
}

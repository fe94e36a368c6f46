/**
 * The sampler: logits [V] of the next position → one token id.
 *
 * Order (llama.cpp's default chain, common/sampling.cpp): penalties → top-k → top-p →
 * min-p → temperature → draw. top-p and min-p are therefore judged on the
 * temperature-1 distribution, as llama.cpp does. temperature 0 = greedy (argmax after
 * the penalties). The draw uses a seeded mulberry32 stream: same seed, same
 * prompt → same tokens.
 *
 * Penalties look at the last `penaltyLastN` tokens of the context (prompt + output):
 * - repetition (CTRL, Keskar et al. 2019; llama.cpp penalty_repeat): a logit of a token
 *   that occurred is divided by the penalty when positive, multiplied when negative;
 * - frequency / presence (OpenAI API): logit −= count·frequency + (count > 0)·presence.
 */
import { mulberry32 } from "../util/random.ts";
import { argmax } from "../util/argmax.ts";
import { UsageError } from "../util/errors.ts";

export interface SamplerOptions {
  /** 0 = greedy. */
  temperature: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK: number;
  /** Keep the smallest set whose probability reaches p; 1 = off. */
  topP: number;
  /** Drop tokens less likely than minP · p(most likely); 0 = off. */
  minP: number;
  /** 1 = off. */
  repetitionPenalty: number;
  /** 0 = off (OpenAI range −2..2). */
  frequencyPenalty: number;
  /** 0 = off (OpenAI range −2..2). */
  presencePenalty: number;
  /** How many recent context tokens the penalties see (llama.cpp default 64); 0 = none. */
  penaltyLastN: number;
  seed: number;
}

export const GREEDY: SamplerOptions = {
  temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0, penaltyLastN: 64, seed: 0,
};

/** Each option's valid range: [min, max, description] (data, checked in one place). */
const RANGES: Record<keyof SamplerOptions, [number, number, string]> = {
  temperature: [0, 100, "a number ≥ 0 (0 = greedy)"],
  topK: [0, 1e9, "an integer ≥ 0 (0 = off)"],
  topP: [0, 1, "a number in [0, 1] (1 = off)"],
  minP: [0, 1, "a number in [0, 1] (0 = off)"],
  repetitionPenalty: [0.01, 100, "a number > 0 (1 = off)"],
  frequencyPenalty: [-2, 2, "a number in [-2, 2]"],
  presencePenalty: [-2, 2, "a number in [-2, 2]"],
  penaltyLastN: [0, 1e9, "an integer ≥ 0"],
  seed: [0, 2 ** 32 - 1, "an integer in [0, 2³²)"],
};
const INTEGER: ReadonlySet<keyof SamplerOptions> = new Set(["topK", "penaltyLastN", "seed"]);

/** Fills defaults and validates; `where` names the caller's spelling (flag or JSON field) of each option. */
export function samplerOptions(partial: Partial<SamplerOptions>, where: (k: keyof SamplerOptions) => string = (k) => k): SamplerOptions {
  const o = { ...GREEDY, ...partial };
  for (const k of Object.keys(RANGES) as (keyof SamplerOptions)[]) {
    const v = o[k];
    const [lo, hi, what] = RANGES[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi || (INTEGER.has(k) && !Number.isInteger(v))) {
      throw new UsageError(`invalid sampler option ${where(k)}`, { field: where(k), expected: what, found: JSON.stringify(v) });
    }
  }
  return o;
}

export { argmax };

/** logits[V] in place: repetition, frequency and presence penalties over `recent` token ids. */
export function applyPenalties(logits: Float32Array, recent: ArrayLike<number>, o: SamplerOptions): void {
  if (o.repetitionPenalty === 1 && o.frequencyPenalty === 0 && o.presencePenalty === 0) return;
  const counts = new Map<number, number>();
  for (let i = 0; i < recent.length; i++) { const id = recent[i]!; counts.set(id, (counts.get(id) ?? 0) + 1); }
  for (const [id, n] of counts) {
    if (id < 0 || id >= logits.length) continue;
    let l = logits[id]!;
    if (o.repetitionPenalty !== 1) l = l > 0 ? l / o.repetitionPenalty : l * o.repetitionPenalty;
    l -= n * o.frequencyPenalty + o.presencePenalty;
    logits[id] = l;
  }
}

/** The k largest logits' ids, most likely first (k ≤ V). */
function topIds(logits: Float32Array, k: number): number[] {
  const V = logits.length;
  if (k >= V) return Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  // Keep a sorted list of the k best seen so far; cheap for small k (the common case).
  const ids: number[] = [];
  for (let i = 0; i < V; i++) {
    const v = logits[i]!;
    if (ids.length === k && v <= logits[ids[k - 1]!]!) continue;
    let j = ids.length < k ? ids.length : k - 1; // a full list drops its last entry
    while (j > 0 && logits[ids[j - 1]!]! < v) { ids[j] = ids[j - 1]!; j--; }
    ids[j] = i;
  }
  return ids;
}

/** A sampler with its own seeded random stream (one per generation). */
export class Sampler {
  private readonly rand: () => number;
  constructor(readonly opts: SamplerOptions) {
    this.rand = mulberry32(opts.seed);
  }

  /** Whether the draw is argmax(logits) as given: greedy, and no penalty changes a logit. */
  get greedy(): boolean {
    const o = this.opts;
    return o.temperature <= 0 && (o.penaltyLastN === 0 || (o.repetitionPenalty === 1 && o.frequencyPenalty === 0 && o.presencePenalty === 0));
  }

  /**
   * logits [V] (modified in place by the penalties); recent = context token ids, oldest first.
   * argmaxId: argmax(logits) when the caller has it (a step plan's native pick, Model.forward
   * opts.argmax), returned as the draw when `greedy`, without a scan.
   */
  next(logits: Float32Array, recent: readonly number[], argmaxId?: number): number {
    if (argmaxId !== undefined && this.greedy) return argmaxId;
    const o = this.opts;
    const n = Math.min(o.penaltyLastN, recent.length);
    if (n > 0) applyPenalties(logits, recent.slice(recent.length - n), o);
    if (o.temperature <= 0) return argmax(logits);

    // Candidates, most likely first: top-k (or all).
    const ids = topIds(logits, o.topK > 0 ? Math.min(o.topK, logits.length) : logits.length);
    const max = logits[ids[0]!]!;
    // Probabilities at temperature 1 for the top-p / min-p cuts.
    const p1 = ids.map((id) => Math.exp(logits[id]! - max));
    const z1 = p1.reduce((a, b) => a + b, 0);
    let cut = ids.length;
    if (o.topP < 1) {
      let acc = 0;
      for (let i = 0; i < ids.length; i++) { acc += p1[i]! / z1; if (acc >= o.topP) { cut = i + 1; break; } }
    }
    if (o.minP > 0) {
      // p1[0] is the most likely token's weight (exp 0 = 1): keep p ≥ minP · p_max.
      let m = 1;
      while (m < cut && p1[m]! >= o.minP) m++;
      cut = m;
    }
    // Temperature, then draw.
    const w = new Float64Array(cut);
    let total = 0;
    for (let i = 0; i < cut; i++) { w[i] = Math.exp((logits[ids[i]!]! - max) / o.temperature); total += w[i]!; }
    let r = this.rand() * total;
    for (let i = 0; i < cut; i++) { r -= w[i]!; if (r < 0) return ids[i]!; }
    return ids[cut - 1]!;
  }
}

/**
 * The sampler against hand-computed cases and an independent f64 softmax: penalties,
 * greedy, top-k, top-p, min-p, temperature (empirical frequencies), seeds; and the
 * streaming text helpers (stop strings held back across deltas, UTF-8-safe decoding).
 */
import { describe, expect, test } from "vitest";
import { applyPenalties, GREEDY, Sampler, samplerOptions, type SamplerOptions } from "../../src/generate/sampler.ts";
import { IncrementalDecoder, StopMatcher } from "../../src/generate/text-stream.ts";
import { loadTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { UsageError } from "../../src/util/errors.ts";

const opts = (o: Partial<SamplerOptions>): SamplerOptions => samplerOptions(o);

/** Draw `n` tokens from fresh copies of `logits`; returns the frequency of each id. */
function frequencies(logits: number[], o: Partial<SamplerOptions>, n: number): number[] {
  const s = new Sampler(opts(o));
  const f = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) f[s.next(Float32Array.from(logits), [])]! += 1 / n;
  return f;
}

/** Reference: softmax(logits / T) in f64, restricted to `keep` and renormalised. */
function softmax(logits: number[], T: number, keep: number[] = logits.map((_, i) => i)): number[] {
  const m = Math.max(...keep.map((i) => logits[i]!));
  const w = logits.map((l, i) => (keep.includes(i) ? Math.exp((l - m) / T) : 0));
  const z = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / z);
}

// 20,000 draws: the standard error of a frequency near 0.5 is ≈ 0.0035; allow 4.5σ.
const DRAWS = 20_000;
const FREQ_TOL = 0.016;

describe("sampler", () => {
  test("penalties: repetition (÷ when positive, × when negative), frequency and presence, hand-computed", () => {
    const l = Float32Array.from([2, -1, 0.5, 3]);
    applyPenalties(l, [0, 0, 1], { ...GREEDY, repetitionPenalty: 2, frequencyPenalty: 0.5, presencePenalty: 0.25 });
    // id 0: 2/2 − 2·0.5 − 0.25 = −0.25; id 1: −1·2 − 0.5 − 0.25 = −2.75; ids 2, 3 untouched.
    expect(Array.from(l)).toEqual([-0.25, -2.75, 0.5, 3]);
  });

  test("greedy is the argmax after penalties; the penalty window is the last N context tokens", () => {
    const l = [1, 0.9, 0.2];
    expect(new Sampler(opts({})).next(Float32Array.from(l), [])).toBe(0);
    expect(new Sampler(opts({ repetitionPenalty: 1.5 })).next(Float32Array.from(l), [0])).toBe(1);
    // Token 0 is outside a window of 1 ([..., 2]): not penalised.
    expect(new Sampler(opts({ repetitionPenalty: 1.5, penaltyLastN: 1 })).next(Float32Array.from(l), [0, 2])).toBe(0);
  });

  test("a greedy draw without penalties takes the caller's argmax (a step plan's pick) and scans only without one", () => {
    const l = [0.5, 3, 3, -1];
    expect(new Sampler(GREEDY).greedy).toBe(true);
    expect(new Sampler(GREEDY).next(Float32Array.from(l), [])).toBe(1); // the scan: the first of the tied maxima
    expect(new Sampler(GREEDY).next(Float32Array.from(l), [], 2)).toBe(2); // the given pick, taken as is
    // penalties change the logits first: the given pick is ignored, the penalised logits scanned
    const rep = new Sampler(opts({ repetitionPenalty: 2 }));
    expect(rep.greedy).toBe(false);
    expect(rep.next(Float32Array.from(l), [1], 1)).toBe(2);
    expect(new Sampler(opts({ repetitionPenalty: 2, penaltyLastN: 0 })).greedy).toBe(true);
    expect(new Sampler(opts({ temperature: 0.7 })).greedy).toBe(false);
  });

  test("temperature: frequencies follow softmax(l / T)", () => {
    const l = [1.0, 0.5, 0.0, -1.0];
    for (const T of [0.5, 1, 2]) {
      const f = frequencies(l, { temperature: T }, DRAWS);
      const p = softmax(l, T);
      for (let i = 0; i < l.length; i++) expect(Math.abs(f[i]! - p[i]!)).toBeLessThan(FREQ_TOL);
    }
  });

  test("top-k keeps the k most likely; k = 1 is greedy at any temperature", () => {
    const l = [0.1, 2.0, 1.5, 1.9, -3];
    const f = frequencies(l, { temperature: 1, topK: 2 }, DRAWS);
    const p = softmax(l, 1, [1, 3]);
    for (let i = 0; i < l.length; i++) expect(Math.abs(f[i]! - p[i]!)).toBeLessThan(FREQ_TOL);
    expect(frequencies(l, { temperature: 5, topK: 1 }, 200)[1]).toBeCloseTo(1, 12);
  });

  test("top-p keeps the smallest set reaching p (judged at temperature 1); min-p drops p < min_p · p_max", () => {
    const l = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
    // top-p 0.7: 0.5 < 0.7 ≤ 0.8 → ids 0, 1.
    let f = frequencies(l, { temperature: 1, topP: 0.7 }, DRAWS);
    let p = softmax(l, 1, [0, 1]);
    for (let i = 0; i < 4; i++) expect(Math.abs(f[i]! - p[i]!)).toBeLessThan(FREQ_TOL);
    // min-p 0.25: keep p ≥ 0.125 → ids 0, 1, 2 (0.05 < 0.125 is dropped).
    f = frequencies(l, { temperature: 1, minP: 0.25 }, DRAWS);
    p = softmax(l, 1, [0, 1, 2]);
    for (let i = 0; i < 4; i++) expect(Math.abs(f[i]! - p[i]!)).toBeLessThan(FREQ_TOL);
    // The cuts are made before the temperature: at T = 2 top-p 0.7 still keeps ids 0, 1 only.
    f = frequencies(l, { temperature: 2, topP: 0.7 }, DRAWS);
    p = softmax(l, 2, [0, 1]);
    for (let i = 0; i < 4; i++) expect(Math.abs(f[i]! - p[i]!)).toBeLessThan(FREQ_TOL);
  });

  test("same seed → same draws; another seed → other draws", () => {
    const l = Array.from({ length: 50 }, (_, i) => Math.sin(i));
    const draw = (seed: number): number[] => {
      const s = new Sampler(opts({ temperature: 1, seed }));
      return Array.from({ length: 40 }, () => s.next(Float32Array.from(l), []));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
  });

  test("out-of-range options are refused naming the option", () => {
    expect(() => samplerOptions({ topP: 1.5 })).toThrow(UsageError);
    expect(() => samplerOptions({ topP: 1.5 })).toThrow(/topP/);
    expect(() => samplerOptions({ topK: 2.5 }, (k) => `--${k}`)).toThrow(/--topK/);
    expect(() => samplerOptions({ temperature: NaN })).toThrow(/expected: a number ≥ 0/);
  });
});

describe("streaming text", () => {
  test("a stop string split across deltas is held back and cut; text before it is released", () => {
    const m = new StopMatcher(["END", "\n\n"]);
    expect(m.push("abE")).toBe("ab");
    expect(m.push("N")).toBe("");
    expect(m.push("x")).toBe("ENx"); // not a stop after all
    expect(m.push("yy\n")).toBe("yy");
    expect(m.push("\nzz")).toBe("");
    expect(m.stopped).toBe(true);
    const n = new StopMatcher(["wor"]);
    expect(n.push("Hello wo") + n.push("rld")).toBe("Hello ");
    const k = new StopMatcher(["xyz"]);
    expect(k.push("abcxy") + k.flush()).toBe("abcxy");
  });

  test("incremental decoding never splits a character and adds up to the full decode", () => {
    const tok = loadTokenizer(BUNDLED_MODEL_DIR);
    const text = "naïve café — 東京 ok 🙂 done";
    const ids = tok.encode(text, { addSpecial: false });
    const d = new IncrementalDecoder(tok);
    const parts = ids.map((id) => d.push(id));
    parts.push(d.flush());
    for (const p of parts) expect(p).not.toContain("\uFFFD");
    expect(parts.join("")).toBe(tok.decode(ids, { skipSpecial: true }));
    expect(parts.join("")).toBe(text);
  });
});

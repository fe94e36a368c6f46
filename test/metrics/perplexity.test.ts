import { describe, expect, it } from "vitest";
import { perplexityWindows, tokenNll } from "../../src/metrics/perplexity.ts";
import { UsageError } from "../../src/util/errors.ts";

describe("perplexity protocols", () => {
  it("tokenNll is −log softmax, hand-computed", () => {
    const logits = new Float32Array([0, Math.log(2), Math.log(5)]); // softmax = [1, 2, 5] / 8
    expect(tokenNll(logits, 0, 3, 2)).toBeCloseTo(-Math.log(5 / 8), 6);
    expect(tokenNll(logits, 0, 3, 0)).toBeCloseTo(Math.log(8), 6);
  });

  it("gptq windows are non-overlapping and keep the text's tokens", () => {
    const toks = Array.from({ length: 10 }, (_, i) => 100 + i);
    const { windows, first } = perplexityWindows(toks, "gptq", 4, 1);
    expect(windows).toEqual([[100, 101, 102, 103], [104, 105, 106, 107]]);
    expect(first).toBe(0);
  });

  it("llama.cpp windows start with BOS and score the second half", () => {
    const toks = Array.from({ length: 9 }, (_, i) => 100 + i);
    const { windows, first } = perplexityWindows(toks, "llama.cpp", 4, 1);
    expect(windows).toEqual([[1, 101, 102, 103], [1, 105, 106, 107]]);
    expect(first).toBe(2);
    expect(perplexityWindows(toks, "llama.cpp", 4, null).windows[1]).toEqual([104, 105, 106, 107]);
  });

  it("too short a text is a usage error", () => {
    expect(() => perplexityWindows([1, 2, 3], "gptq", 4, null)).toThrow(UsageError);
  });
});

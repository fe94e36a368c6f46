/**
 * Calibration sampling rules (quantize/calibrate.ts): "windows" (random windows of the text
 * tokenized once) and "records" (mit-han-lab llm-awq get_calib_dataset: records = lines,
 * shuffled, each tokenized with BOS, records longer than seqlen skipped, the first
 * `samples` joined and cut into ⌊total/seqlen⌋ windows). Checked against the rule re-done
 * here by hand on the bundled tokenizer.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { BUNDLED_CALIB_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { calibrationWindows } from "../../src/quantize/calibrate.ts";
import { loadTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { UsageError } from "../../src/util/errors.ts";

const tok = loadTokenizer(BUNDLED_MODEL_DIR);
const text = readFileSync(BUNDLED_CALIB_TEXT, "utf8");

describe("calibration sampling: records (llm-awq)", () => {
  const o = { samples: 128, seqlen: 512, seed: 0, sampling: "records" as const };
  const w = calibrationWindows(tok, text, o);

  it("joins whole BOS-first records and cuts the stream into seqlen windows, the remainder dropped", () => {
    const stream = w.flat();
    expect(w.every((x) => x.length === 512)).toBe(true);
    // Walk the stream: it must be a sequence of records, each `BOS + encode(line)` of a line of the text.
    const lines = new Map(text.split("\n").map((l) => l.trim()).filter((l) => l).map((l) => [tok.encode(l, { addSpecial: true }).join(","), l]));
    const starts = stream.flatMap((id, i) => (id === tok.bosId ? [i] : []));
    expect(starts[0]).toBe(0);
    expect(starts.length).toBeGreaterThan(w.length); // several records per window
    const used: string[] = [];
    for (let r = 0; r + 1 < starts.length; r++) {
      const rec = stream.slice(starts[r]!, starts[r + 1]!).join(",");
      expect(lines.has(rec)).toBe(true); // a whole record, BOS first (the last one may be cut)
      used.push(rec);
      expect(rec.split(",").length).toBeLessThanOrEqual(512);
    }
    expect(new Set(used).size).toBe(used.length); // no record twice
    expect(starts.length).toBeLessThanOrEqual(128);
  });

  it("keeps 128 records: the windows are ⌊(their tokens)/512⌋, so fewer than the record count", () => {
    expect(w.length).toBe(25); // 128 short lines of Brown prose, about 100 tokens each
  });

  it("is seeded", () => {
    expect(calibrationWindows(tok, text, o)).toEqual(w);
    expect(calibrationWindows(tok, text, { ...o, seed: 1 })[0]).not.toEqual(w[0]);
  });

  it("skips records longer than seqlen and refuses when nothing usable is left", () => {
    const long = Array.from({ length: 40 }, (_, i) => `word${i} `.repeat(60)).join("\n");
    const short = Array.from({ length: 40 }, (_, i) => `Line number ${i} is short.`).join("\n");
    const mixed = calibrationWindows(tok, `${long}\n${short}`, { samples: 1000, seqlen: 32, seed: 3, sampling: "records" });
    // Only the 40 short records are used (each long one has > 32 tokens): ⌊their tokens / 32⌋ windows.
    const shortTokens = short.split("\n").reduce((n, l) => n + tok.encode(l, { addSpecial: true }).length, 0);
    expect(long.split("\n").every((l) => tok.encode(l, { addSpecial: true }).length > 32)).toBe(true);
    expect(mixed.length).toBe(Math.floor(shortTokens / 32));
    expect(mixed.flat().filter((id) => id === tok.bosId).length).toBeGreaterThanOrEqual(Math.floor(40 * (mixed.length * 32) / shortTokens));
    expect(() => calibrationWindows(tok, long, { samples: 10, seqlen: 32, seed: 0, sampling: "records" })).toThrow(UsageError);
  });
});

describe("calibration sampling: windows (default)", () => {
  it("is what no sampling option gives: samples × seqlen, no BOS", () => {
    const o = { samples: 8, seqlen: 64, seed: 0 };
    const w = calibrationWindows(tok, text, o);
    expect(calibrationWindows(tok, text, { ...o, sampling: "windows" })).toEqual(w);
    expect(w.length).toBe(8);
    expect(w.every((x) => x.length === 64)).toBe(true);
  });
});

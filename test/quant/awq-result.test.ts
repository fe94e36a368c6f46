import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { refBackend } from "../../src/backend/ref.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { RopeTable } from "../../src/nn/rope.ts";
import { awqSearchBlock } from "../../src/methods/awq.ts";
import type { AwqBlockSearch } from "../../src/methods/awq-types.ts";
import {
  AWQ_SEARCH_MAGIC, AWQ_SEARCH_VERSION, checkAwqSearchFits, parseAwqSearch, readAwqSearch, serializeAwqSearch, writeAwqSearch,
  type AwqSearchSettings,
} from "../../src/methods/awq-result.ts";
import { FormatError, UsageError } from "../../src/util/errors.ts";
import { randomArray, randomWeights, tinyConfig } from "../helpers/random-weights.ts";

const tmp = mkdtempSync(join(tmpdir(), "qllm-awq-result-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// A real search of both blocks of a tiny MHA model (ref backend; a few hundred ms).
const cfg = tinyConfig({ num_key_value_heads: 4 });
const weights = randomWeights(cfg, 2);
const settings: AwqSearchSettings = { bits: 4, groupSize: 16, duoScaling: true, clip: true, meta: { calibSamples: 2, calibSeqlen: 16 } };
const inputs = [0, 1].map((s) => randomArray(16 * cfg.hiddenSize, 1, mulberry32(s)));
const blocks: AwqBlockSearch[] = [];
for (const [b, w] of weights.blocks.entries()) {
  blocks.push(await awqSearchBlock({
    cfg, backend: refBackend, rope: new RopeTable(cfg), block: b, weights: w, inputs, seqlen: 16,
    bits: settings.bits, groupSize: settings.groupSize, duoScaling: settings.duoScaling, clip: settings.clip,
  }));
}

describe("AWQ search file", () => {
  it("round-trips every scale, clip, α and loss exactly", async () => {
    const path = join(tmp, "search.json");
    await writeAwqSearch(path, "/models/tiny", settings, blocks);
    const f = readAwqSearch(path);
    expect(f.magic).toBe(AWQ_SEARCH_MAGIC);
    expect(f.version).toBe(AWQ_SEARCH_VERSION);
    expect(f.model).toBe("/models/tiny");
    expect(f.settings).toEqual(settings);
    expect(f.blocks).toEqual(blocks);
    expect(() => checkAwqSearchFits(cfg, f, settings, path)).not.toThrow();
  });

  it("names the version it found and the one it expected", () => {
    const doc = JSON.parse(serializeAwqSearch("m", settings, blocks)) as Record<string, unknown>;
    doc["version"] = 99;
    const err = (() => { try { parseAwqSearch(JSON.stringify(doc), "old.json"); } catch (e) { return e; } return null; })();
    expect(err).toBeInstanceOf(FormatError);
    expect((err as FormatError).details).toMatchObject({ file: "old.json", field: "version", expected: String(AWQ_SEARCH_VERSION), found: "99" });
  });

  it("refuses other files and damaged content with typed errors", () => {
    expect(() => parseAwqSearch("{", "x.json")).toThrow(/not valid JSON/);
    expect(() => parseAwqSearch(JSON.stringify({ magic: "quantize-llm/journal", version: 1 }), "x.json")).toThrow(/not a quantize-llm AWQ search file/);
    const doc = JSON.parse(serializeAwqSearch("m", settings, blocks)) as { blocks: { clips: { maxVal: string }[]; scales: { layers: string[] }[] }[] };
    doc.blocks[1]!.clips[0]!.maxVal = Buffer.from(new Float32Array(3).buffer).toString("base64");
    expect(() => parseAwqSearch(JSON.stringify(doc), "x.json")).toThrow(/blocks\[1\]\.clips\[0\]\.maxVal/);
    const doc2 = JSON.parse(serializeAwqSearch("m", settings, blocks)) as typeof doc;
    doc2.blocks[0]!.scales[0]!.layers = ["q", "attn"];
    expect(() => parseAwqSearch(JSON.stringify(doc2), "x.json")).toThrow(FormatError);
    expect(() => readAwqSearch(join(tmp, "missing.json"))).toThrow(UsageError);
  });

  it("refuses a search made with other settings or for another model", () => {
    const path = join(tmp, "search2.json");
    writeFileSync(path, serializeAwqSearch("m", settings, blocks));
    const f = readAwqSearch(path);
    expect(() => checkAwqSearchFits(cfg, f, { ...settings, groupSize: 32 }, path)).toThrow(/settings\.groupSize/);
    const gqa = tinyConfig(); // the same sizes but GQA: no v→o group
    expect(() => checkAwqSearchFits(gqa, f, settings, path)).toThrow(UsageError);
    expect(() => checkAwqSearchFits(cfg, { ...f, blocks: f.blocks.slice(0, 1) }, settings, path)).toThrow(/blocks 0\.\.1/);
  });

  it("records the clip-token and calibration sampling rules; a file without them means random / windows", () => {
    const calibration = { textSha256: "ab", samples: 2, seqlen: 16, seed: 0 };
    const withRules: AwqSearchSettings = { ...settings, clipSampling: "stride", calibration: { ...calibration, sampling: "records" } };
    const path = join(tmp, "search3.json");
    writeFileSync(path, serializeAwqSearch("m", withRules, blocks));
    const f = readAwqSearch(path);
    expect(f.settings).toEqual(withRules);
    expect(() => checkAwqSearchFits(cfg, f, withRules, path)).not.toThrow();
    expect(() => checkAwqSearchFits(cfg, f, { ...withRules, clipSampling: "random" }, path)).toThrow(/settings\.clipSampling/);
    expect(() => checkAwqSearchFits(cfg, f, { ...withRules, calibration: { ...calibration, sampling: "windows" } }, path)).toThrow(/settings\.calibration\.sampling/);
    const old = parseAwqSearch(serializeAwqSearch("m", { ...settings, calibration }, blocks), "old.json");
    expect(() => checkAwqSearchFits(cfg, old, { ...settings, clipSampling: "random", calibration: { ...calibration, sampling: "windows" } }, path)).not.toThrow();
    expect(() => checkAwqSearchFits(cfg, old, { ...settings, clipSampling: "stride", calibration }, path)).toThrow(/settings\.clipSampling/);
    const bad = JSON.parse(serializeAwqSearch("m", withRules, blocks)) as { settings: Record<string, unknown> };
    bad.settings["clipSampling"] = "every-other";
    expect(() => parseAwqSearch(JSON.stringify(bad), "bad.json")).toThrow(/settings\.clipSampling/);
  });
});

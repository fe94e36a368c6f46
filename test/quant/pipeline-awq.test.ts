import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
const backend = selectBackend();
import { loadHfModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT } from "../../src/load/paths.ts";
import { InterruptedError, quantizeModel, type QuantizeJob } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

const tmp = mkdtempSync(join(tmpdir(), "qllm-awq-pipeline-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const base: QuantSettings = {
  method: "awq", bits: 4, groupSize: 32, sym: false, actOrder: false, staticGroups: false, damp: 0.01,
  blockSize: 128, trueSequential: true, format: "gptq_v2", calibSamples: 6, calibSeqlen: 64, calibSeed: 0,
  calibText: BUNDLED_CALIB_TEXT, duoScaling: true, clip: true, loadSearch: null,
};

let model: TinyModel;
async function tiny(): Promise<TinyModel> {
  model ??= await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 4, seed: 8, tokenizer: "bundled", dir: join(tmp, "model") });
  return model;
}
function job(m: TinyModel, out: string, s: Partial<QuantSettings> = {}): QuantizeJob {
  return { modelDir: m.dir, outDir: join(tmp, out), settings: { ...base, ...s }, backend };
}
function sameFiles(a: string, b: string): void {
  const names = readdirSync(a).filter((f) => f !== "quant-report.json").sort();
  expect(readdirSync(b).filter((f) => f !== "quant-report.json").sort()).toEqual(names);
  for (const f of names) expect(readFileSync(join(b, f)).equals(readFileSync(join(a, f))), f).toBe(true);
}

describe("AWQ through the pipeline", () => {
  it("llm-awq's calibration records and clip-token stride reach the search, and the search file records them", async () => {
    const m = await tiny();
    const search = join(tmp, "search-llm-awq.json");
    let windows = 0;
    const s = { calibSampling: "records" as const, clipSampling: "stride" as const, calibSamples: 40 };
    await quantizeModel({ ...job(m, "awq-records", s), saveSearch: search, onEvent: (e) => { if (e.type === "calibrated") windows = e.samples; } });
    const f = JSON.parse(readFileSync(search, "utf8")) as { settings: { clipSampling: string; calibration: { sampling: string } }; blocks: { tokens: number; clipTokens: number }[] };
    expect(f.settings.clipSampling).toBe("stride");
    expect(f.settings.calibration.sampling).toBe("records");
    expect(windows).toBeGreaterThan(0);
    expect(windows).toBeLessThan(40); // 40 records of ≤ 64 tokens, joined: fewer 64-token windows than records
    const T = windows * 64;
    expect(f.blocks[0]!.tokens).toBe(T);
    const step = Math.max(1, Math.floor(T / 512));
    expect(f.blocks[0]!.clipTokens).toBe(Math.ceil(T / step)); // every ⌊T/512⌋-th token
    // Re-applying under other sampling rules is refused.
    await expect(quantizeModel(job(m, "awq-records-2", { ...s, clipSampling: "random", loadSearch: search }))).rejects.toThrow(/settings\.clipSampling/);
  });

  it("writes an AutoAWQ GEMM folder that the loader reads, with a search file that re-applies to identical bytes", async () => {
    const m = await tiny();
    const search = join(tmp, "search.json");
    const r = await quantizeModel({ ...job(m, "awq"), saveSearch: search });
    expect(JSON.parse(readFileSync(join(r.outDir, "config.json"), "utf8")).quantization_config).toMatchObject({ quant_method: "awq", version: "gemm", bits: 4, group_size: 32 });
    expect(existsSync(join(r.outDir, "quant_config.json"))).toBe(true);
    const loaded = await loadHfModel(r.outDir, backend);
    expect(loaded.format).toBe("awq");
    const again = await quantizeModel(job(m, "awq-loaded", { loadSearch: search }));
    sameFiles(r.outDir, again.outDir);
  });

  it("3-bit AWQ is written as HF-GPTQ v2; AWQ+GPTQ resumes after an interruption to identical bytes", async () => {
    const m = await tiny();
    const a3 = await quantizeModel(job(m, "awq3", { bits: 3 }));
    expect(JSON.parse(readFileSync(join(a3.outDir, "config.json"), "utf8")).quantization_config).toMatchObject({ quant_method: "gptq", bits: 3, checkpoint_format: "gptq_v2" });
    expect((await loadHfModel(a3.outDir, backend)).format).toBe("gptq");

    const s = { method: "awq+gptq" as const, bits: 3, sym: true, format: "gptq" as const };
    const full = await quantizeModel(job(m, "ag-full", s));
    const ac = new AbortController();
    await expect(quantizeModel({ ...job(m, "ag", s), signal: ac.signal, onEvent: (e) => { if (e.type === "block-done") ac.abort(); } }))
      .rejects.toBeInstanceOf(InterruptedError);
    const resumed = await quantizeModel({ ...job(m, "ag", s), resume: true });
    sameFiles(full.outDir, resumed.outDir);
  });

  it("refuses AWQ GEMM shapes it cannot store, before any compute", async () => {
    const m = await tiny();
    await expect(quantizeModel(job(m, "bad", { groupSize: -1 }))).rejects.toThrow(/AutoAWQ GEMM/);
    expect(existsSync(join(tmp, "bad.partial"))).toBe(false);
  });
});

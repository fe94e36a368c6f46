/**
 * Issue 10: outputs are never lost or half-made. The target is checked before any
 * compute; a wrong-kind target is refused even with --overwrite; only the final output
 * and one work folder ever appear; a failed run leaves no journal that blocks the next
 * one; a resume or a loaded AWQ search with other settings names the fields that differ.
 */
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, watch, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
import { BUNDLED_CALIB_TEXT } from "../../src/load/paths.ts";
import { InterruptedError, quantizeModel } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";
import { runMain } from "./run-main.ts";

const tmp = mkdtempSync(join(tmpdir(), "qllm-outputs-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let model: TinyModel;
async function tiny(): Promise<TinyModel> {
  model ??= await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 128, layers: 3, heads: 4, kvHeads: 4, seed: 3, tokenizer: "bundled", dir: join(tmp, "model") });
  return model;
}
/** A fresh empty folder per case. */
function folder(name: string): string { const d = join(tmp, name); mkdirSync(d); return d; }

describe("the output target is checked before any compute", () => {
  it("an existing .gguf needs --overwrite; an existing folder as a .gguf target is refused even with it", async () => {
    const m = await tiny();
    const d = folder("gguf-targets");
    const file = join(d, "m.gguf");
    writeFileSync(file, "keep me");
    const t0 = performance.now();
    let r = await runMain("rtn", m.dir, "--format", "gguf", "--group-size", "32", "-o", file, "--no-eval");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/output file already exists[\s\S]*hint: +pass --overwrite/);
    const asDir = join(d, "dir.gguf");
    mkdirSync(asDir);
    r = await runMain("rtn", m.dir, "--format", "gguf", "--group-size", "32", "-o", asDir, "--overwrite", "--no-eval");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/the output path is a folder[\s\S]*--overwrite only replaces a file/);
    expect(performance.now() - t0).toBeLessThan(3000); // refused up front, not after the compute
    expect(readFileSync(file, "utf8")).toBe("keep me");
    expect(readdirSync(d).sort()).toEqual(["dir.gguf", "m.gguf"]); // no <out>.hf/ or .partial left
  });

  it("an existing file as an HF output folder is refused even with --overwrite (the file is kept)", async () => {
    const m = await tiny();
    const d = folder("hf-target");
    writeFileSync(join(d, "out"), "a file");
    const r = await runMain("rtn", m.dir, "-o", join(d, "out"), "--overwrite", "--no-eval");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/the output path is a file[\s\S]*expected: +a folder \(or nothing\)/);
    expect(readFileSync(join(d, "out"), "utf8")).toBe("a file");
  });

  it("--format gguf with a tokenizer GGUF cannot hold is refused before any compute", async () => {
    const m = await tiny();
    const bad = join(tmp, "bad-tokenizer");
    mkdirSync(bad);
    for (const f of readdirSync(m.dir)) writeFileSync(join(bad, f), readFileSync(join(m.dir, f)));
    const tj = JSON.parse(readFileSync(join(bad, "tokenizer.json"), "utf8")) as Record<string, unknown>;
    tj["pre_tokenizer"] = { type: "Sequence", pretokenizers: [{ type: "Split", pattern: { Regex: String.raw`\p{N}{1,5}|\s+` }, behavior: "Isolated", invert: false }, { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false }] };
    writeFileSync(join(bad, "tokenizer.json"), JSON.stringify(tj));
    const d = folder("bad-tok-out");
    const seen: string[] = [];
    const w = watch(d, (_e, name) => { if (name) seen.push(String(name)); });
    let r;
    try {
      r = await runMain("gptq", bad, "--format", "gguf", "--group-size", "32", "--sym", "--calib-text", BUNDLED_CALIB_TEXT, "-o", join(d, "m.gguf"), "--no-eval");
    } finally { w.close(); }
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/cannot export this tokenizer to GGUF: llama.cpp has no built-in pre-tokenizer/);
    expect(r.stderr).not.toMatch(/calibration:|block 1/);
    expect(seen).toEqual([]);
  });

  it("gptq --format gguf without --group-size picks group 32, which maps exactly (Q4_0, every layer with its own codes)", async () => {
    const m = await tiny();
    const d = folder("gguf-default-group");
    const r = await runMain("gptq", m.dir, "--format", "gguf", "--calib-text", BUNDLED_CALIB_TEXT, "--calib-samples", "4", "--calib-seqlen", "32", "--no-eval", "-o", join(d, "m.gguf"));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/21 Q4_0.*21 layers with the quantizer's own codes/);
    expect(r.stderr).not.toMatch(/re-quantiz/i);
    const { openGguf } = await import("../../src/io/gguf.ts");
    const f = openGguf(join(d, "m.gguf"));
    try { expect(f.tensors.get("blk.2.ffn_down.weight")?.type.name).toBe("Q4_0"); } finally { f.close(); }
  });

  it("export of a group-64 folder summarises the re-quantization in one line with its measured error", async () => {
    const m = await tiny();
    const d = folder("requant");
    let r = await runMain("rtn", m.dir, "-o", join(d, "g128"), "--group-size", "64", "--no-eval");
    expect(r.status, r.stderr).toBe(0);
    r = await runMain("export", join(d, "g128"), "--format", "gguf", "-o", join(d, "g128.gguf"));
    expect(r.status, r.stderr).toBe(0);
    const warn = r.stderr.split("\n").filter((l) => l.startsWith("warning:"));
    expect(warn.filter((l) => /re-quantized/.test(l))).toHaveLength(1);
    expect(warn.join("\n")).toMatch(/21 layers re-quantized \(21 Q[0-9A-Z_]+; grid: group size 64 \(ggml 4\/8-bit blocks hold 32 weights\)\): relative RMS error vs the checkpoint's weights mean \d\.\d{3}e-\d+, max \d\.\d{3}e-\d+ \(model\.layers\.\d\.[a-z_.]+\); an exact GGUF needs 4-bit --sym group 32/);
  });

  it("--format gguf: only the final file (+ its report) and one <out>.partial work folder ever appear", async () => {
    const m = await tiny();
    const d = folder("gguf-names");
    const seen = new Set<string>();
    const w = watch(d, (_e, name) => { if (name) seen.add(String(name)); });
    try {
      const r = await runMain("rtn", m.dir, "--format", "gguf", "--group-size", "32", "-o", join(d, "m.gguf"), "--no-eval");
      expect(r.status, r.stderr).toBe(0);
      await new Promise((res) => setTimeout(res, 100));
    } finally { w.close(); }
    expect([...seen].sort()).toEqual(["m.gguf", "m.gguf.partial", "m.gguf.quant-report.json"]);
    expect(readdirSync(d).sort()).toEqual(["m.gguf", "m.gguf.quant-report.json"]);
  });
});

/** Overwrite one weight of block 1 with NaN in the tiny model's (F32) safetensors file. */
function poisonBlock1(dir: string): void {
  const file = join(dir, readdirSync(dir).find((f) => f.endsWith(".safetensors"))!);
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { data_offsets: [number, number] }>;
  const [start] = header["model.layers.1.mlp.down_proj.weight"]!.data_offsets;
  const fd = openSync(file, "r+");
  try { writeSync(fd, Buffer.from(new Float32Array([Number.NaN]).buffer), 0, 4, 8 + n + start); } finally { closeSync(fd); }
}

describe("failed and resumed runs", () => {
  it("a run that fails on bad input mid-way cleans its journal: the next run is not refused as 'interrupted'", async () => {
    const src = await tiny();
    const bad = await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 128, layers: 3, heads: 4, kvHeads: 4, seed: 3, tokenizer: "bundled", dir: join(tmp, "poisoned") });
    poisonBlock1(bad.dir);
    const d = folder("failed");
    const out = join(d, "q");
    let r = await runMain("rtn", bad.dir, "-o", out, "--group-size", "32", "--no-eval");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/NaN|not finite/i);
    expect(readdirSync(d)).toEqual([]); // no q.partial/journal.json left behind
    r = await runMain("rtn", src.dir, "-o", out, "--group-size", "32", "--no-eval");
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(join(out, "config.json"))).toBe(true);
  });

  it("resume with other settings names the fields (old → new); --overwrite discards the interrupted run", async () => {
    const m = await tiny();
    const d = folder("resume");
    const out = join(d, "q");
    const settings: QuantSettings = {
      method: "rtn", bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
      trueSequential: true, format: "gptq", calibSamples: 0, calibSeqlen: 0, calibSeed: 0, calibText: "",
    };
    const ac = new AbortController();
    await expect(quantizeModel({ modelDir: m.dir, outDir: out, settings, backend: selectBackend({ backend: "ref" }), signal: ac.signal, onEvent: (e) => { if (e.type === "block-done") ac.abort(); } }))
      .rejects.toBeInstanceOf(InterruptedError);
    let r = await runMain("rtn", m.dir, "-o", out, "--resume", "--bits", "3", "--group-size", "32", "--no-eval");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/different settings[\s\S]*field: +bits\n[\s\S]*found: +bits: 4 → 3 \(interrupted run → this command\)/);
    expect(r.stderr).not.toMatch(/\{"method"/);
    r = await runMain("rtn", m.dir, "-o", out, "--group-size", "32", "--no-eval");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/an interrupted run of this output exists[\s\S]*--resume to continue it, or --overwrite to discard it/);
    r = await runMain("rtn", m.dir, "-o", out, "--bits", "3", "--group-size", "32", "--overwrite", "--no-eval");
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).quantization_config.bits).toBe(3);
  });

  it("--load-search refuses a search made with another grid or calibration, naming the field", async () => {
    const m = await tiny();
    const d = folder("search");
    const search = join(d, "s.json");
    const calib = ["--calib-text", BUNDLED_CALIB_TEXT, "--calib-samples", "4", "--calib-seqlen", "32", "--group-size", "32", "--no-eval"];
    let r = await runMain("awq", m.dir, "-o", join(d, "a"), "--save-search", search, ...calib);
    expect(r.status, r.stderr).toBe(0);
    r = await runMain("awq", m.dir, "--then", "gptq", "--sym", "-o", join(d, "b"), "--load-search", search, ...calib);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/another model or other settings[\s\S]*field: +settings\.sym[\s\S]*expected: +sym \(--sym\)[\s\S]*found: +asym/);
    r = await runMain("awq", m.dir, "-o", join(d, "c"), "--load-search", search, ...calib.map((a) => (a === "4" ? "5" : a)));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/field: +settings\.calibration\.samples[\s\S]*expected: +5[\s\S]*found: +4/);
    r = await runMain("awq", m.dir, "-o", join(d, "e"), "--load-search", search, ...calib); // same settings: accepted
    expect(r.status, r.stderr).toBe(0);
  });
});

describe.runIf(existsSync(join(import.meta.dirname, "..", "..", ".git")))(".gitignore", () => {
  it("ignores the default outputs that land in the working folder", async () => {
    const { spawnSync } = await import("node:child_process");
    const names = ["qllm-tiny-f16.gguf", "qllm-tiny-quantized.gguf", "qllm-tiny-gptq-w4g32.gguf", "qllm-tiny-gptq-w4g32.gguf.quant-report.json",
      "qllm-tiny-gptq-w4g32.gguf.partial/hf/config.json", "qllm-tiny-gptq-w4g128/config.json", "qllm-tiny-gptq-w4g128.partial/journal.json", "m.gguf.tmp-123-abcdef"];
    const r = spawnSync("git", ["check-ignore", "--no-index", ...names], { cwd: join(import.meta.dirname, "..", ".."), encoding: "utf8" });
    expect(r.stdout.trim().split("\n").sort()).toEqual([...names].sort());
  });
});

/** The CLI as a user runs it: exit codes, the --json last line, typed errors without stack traces. */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BUNDLED_MODEL_DIR, PACKAGE_ROOT } from "../../src/load/paths.ts";

const BIN = join(PACKAGE_ROOT, "bin", "quantize-llm.js");
function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, QLLM_THREADS: "1" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
/** run() on 2 threads, for the whole-text evaluations. */
function run2(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, QLLM_THREADS: "2" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("quantize-llm CLI", () => {
  it("eval on the bundled model prints the protocol and the committed PyTorch perplexity", () => {
    // models/qllm-tiny/eval_results.json: the training recipe's own PyTorch evaluation (f32) of the whole held-out text
    const ref = JSON.parse(readFileSync(join(BUNDLED_MODEL_DIR, "eval_results.json"), "utf8")) as { gptq: { ppl: number; scored_tokens: number } };
    const r = run2("eval", "--protocol", "gptq", "--json");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/protocol: +gptq, ctx 512, 67 windows/);
    const last = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    expect(last).toMatchObject({ protocol: "gptq", ctx: 512, windows: 67, tokensScored: ref.gptq.scored_tokens });
    expect(Math.abs(last.ppl / ref.gptq.ppl - 1)).toBeLessThan(1e-6); // measured 1.4e-8
  });

  it("chat --raw --temperature 0 continues each committed prompt with PyTorch's greedy text", () => {
    const ref = JSON.parse(readFileSync(join(BUNDLED_MODEL_DIR, "eval_results.json"), "utf8")) as { greedy: { prompt: string; generated_ids: number[]; text: string }[] };
    for (const g of ref.greedy) {
      const r = run2("chat", "--raw", "--prompt", g.prompt, "--max-tokens", String(g.generated_ids.length), "--temperature", "0");
      expect(r.status, r.stderr).toBe(0);
      expect(g.text.startsWith(g.prompt)).toBe(true);
      expect(r.stdout.replace(/\n$/, "")).toBe(g.text.slice(g.prompt.length));
    }
  });

  it("chat --raw continues a prompt greedily; chat --prompt answers through the chat template", () => {
    const raw = run("chat", "--raw", "--prompt", "The jury said", "--max-tokens", "12", "--temperature", "0");
    expect(raw.status, raw.stderr).toBe(0);
    expect(raw.stdout.trim().length).toBeGreaterThan(10);
    const chat = run("chat", "--prompt", "Who was there?", "--max-tokens", "8", "--temperature", "0");
    expect(chat.status, chat.stderr).toBe(0);
    expect(chat.stdout.trim().length).toBeGreaterThan(0);
  });

  it("gptq --format gguf writes Q4_0 from the quantizer's own grid, and refuses grids with no block type", async () => {
    const { mkdtempSync, rmSync, existsSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { openGguf } = await import("../../src/io/gguf.ts");
    const dir = mkdtempSync(join(tmpdir(), "qllm-cli-gguf-"));
    try {
      const out = join(dir, "m.gguf");
      const r = run("gptq", "--bits", "4", "--group-size", "32", "--format", "gguf", "-o", out, "--calib-samples", "4", "--calib-seqlen", "128", "--no-eval");
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/28 Q4_0.*28 layers with the quantizer's own codes/);
      const f = openGguf(out);
      expect(f.tensors.get("blk.0.attn_q.weight")?.type.name).toBe("Q4_0");
      f.close();
      expect(existsSync(`${out}.hf`)).toBe(false);
      const bad = run("gptq", "--bits", "4", "--group-size", "128", "--format", "gguf", "-o", join(dir, "x.gguf"));
      expect(bad.status).toBe(2);
      expect(bad.stderr).toMatch(/no exact GGUF block type[\s\S]*--group-size 128/);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  it.each([
    [["eval", "--protocol", "wikitext"], /invalid value for --protocol[\s\S]*expected: one of gptq, llama\.cpp/],
    [["eval", "/no/such/model"], /model folder not found[\s\S]*\/no\/such\/model/],
    [["eval", "--bogus"], /bad arguments for "eval"[\s\S]*--bogus/],
    [["gptq", "--bits", "5", "-o", "/tmp/qllm-never"], /unsupported bit width[\s\S]*2, 3, 4, 8/],
    [["rtn", "--damp", "0.1"], /--damp does not apply to rtn/],
    [["gptq", "--group-grid", "start", "-o", "/tmp/qllm-never"], /invalid value for --group-grid[\s\S]*current, block-start/],
    [["rtn", "--group-grid", "block-start"], /--group-grid does not apply to rtn/],
    [["awq", "--calib-sampling", "lines", "-o", "/tmp/qllm-never"], /invalid value for --calib-sampling[\s\S]*windows, records/],
    [["awq", "--clip-sampling", "every", "-o", "/tmp/qllm-never"], /invalid value for --clip-sampling[\s\S]*random, stride/],
    [["gptq", "--clip-sampling", "stride"], /--clip-sampling applies to awq only/],
    [["rtn", "--calib-sampling", "records"], /--calib-sampling does not apply to rtn/],
    [["frobnicate"], /unknown command "frobnicate"/],
  ])("%j is a clear error, exit 2, no stack trace", (args, message) => {
    const r = run(...(args as string[]));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

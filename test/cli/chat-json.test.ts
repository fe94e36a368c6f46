/**
 * `chat --prompt … --json` on a quantized model, as a user measures it: the last stdout
 * line holds prompt/generated tokens, prefill and decode tokens/s and peak RSS;
 * `--ignore-eos` runs exactly --max-tokens; chat and eval name the packed kernel path.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { readModelConfig } from "../../src/load/hf-folder.ts";
import { runMain } from "./run-main.ts";

let tmp = "", dir = "";
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "qllm-chat-json-"));
  dir = join(tmp, "w4g128");
  const r = await runMain("rtn", "--bits", "4", "--group-size", "128", "--no-eval", "-o", dir);
  expect(r.status, r.stderr).toBe(0);
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Figures {
  prompt_tokens: number; prefill_tokens: number; generated_tokens: number; prefill_tokens_per_s: number;
  decode_tokens_per_s: number; peak_rss_mib: number; finish_reason: string; kernel_path: string;
}
const lastJson = (stdout: string): Figures => JSON.parse(stdout.trim().split("\n").at(-1)!) as Figures;

describe("chat --json on a 4-bit model", () => {
  const prompt = "The jury said";
  it("prints the run's figures as its last line; --ignore-eos generates exactly --max-tokens", async () => {
    const max = 48;
    const plain = await runMain("chat", dir, "--raw", "--prompt", prompt, "--max-tokens", String(max), "--temperature", "0", "--json");
    const fixed = await runMain("chat", dir, "--raw", "--prompt", prompt, "--max-tokens", String(max), "--temperature", "0", "--json", "--ignore-eos");
    expect(fixed.status, fixed.stderr).toBe(0);
    const f = lastJson(fixed.stdout), p = lastJson(plain.stdout);
    // prompt tokens counted independently: the folder's tokenizer with BOS, as --raw encodes
    const tok = loadTokenizer(dir, readModelConfig(BUNDLED_MODEL_DIR).eosTokenIds);
    expect(f.prompt_tokens).toBe(tok.encode(prompt, { addSpecial: true }).length);
    expect(f.prefill_tokens).toBe(f.prompt_tokens);
    expect(f.generated_tokens).toBe(max);
    expect(f.finish_reason).toBe("length");
    expect(f.prefill_tokens_per_s).toBeGreaterThan(0);
    expect(f.decode_tokens_per_s).toBeGreaterThan(0);
    expect(f.peak_rss_mib).toBeGreaterThanOrEqual(process.memoryUsage().rss / 2 ** 20 * 0.5); // this process's peak, in MiB (not KiB or bytes)
    expect(f.peak_rss_mib).toBeLessThan(64 * 1024);
    expect(f.kernel_path).toMatch(/q4x16 \(int4 g128.*; KV cache f16$/); // the CPU default (engine.ts DEFAULT_KV)
    // without the flag the same greedy run may stop at an end-of-sequence id, never run longer
    expect(p.generated_tokens).toBeLessThanOrEqual(max);
    if (p.finish_reason === "stop") expect(p.generated_tokens).toBeLessThan(max);
    expect(fixed.stderr).toMatch(/kernel path: native \w+, \d+ threads?: \d+ linears q4x16 \(int4 g128/);
  }, 60_000);

  it("chat --kv f32 names its cache in the kernel path; a bad --kv is refused", async () => {
    const r = await runMain("chat", dir, "--raw", "--prompt", prompt, "--max-tokens", "8", "--temperature", "0", "--json", "--kv", "f32");
    expect(r.status, r.stderr).toBe(0);
    expect(lastJson(r.stdout).kernel_path).toMatch(/; KV cache f32$/);
    expect(r.stderr).toMatch(/kernel path: .*; KV cache f32/);
    const bad = await runMain("chat", dir, "--raw", "--prompt", prompt, "--kv", "bf16");
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/invalid value for --kv/);
  }, 60_000);

  it("eval of the quantized folder prints the packed kernel path; --kv f16 scores within 0.1% of the f32 default", async () => {
    const r = await runMain("eval", dir, "--text", BUNDLED_EVAL_TEXT, "--max-tokens", "600", "--json");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/kernels: +native \w+, \d+ threads?: \d+ linears q4x16 \(int4 g128.*; KV cache f32/);
    const h = await runMain("eval", dir, "--text", BUNDLED_EVAL_TEXT, "--max-tokens", "600", "--json", "--kv", "f16");
    expect(h.status, h.stderr).toBe(0);
    const [a, b] = [r, h].map((x) => JSON.parse(x.stdout.trim().split("\n").at(-1)!) as { ppl: number; kv: string });
    expect([a!.kv, b!.kv]).toEqual(["f32", "f16"]);
    expect(Math.abs(b!.ppl / a!.ppl - 1)).toBeLessThan(1e-3);
  }, 60_000);
});

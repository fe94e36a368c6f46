/**
 * Both chat engines answer the same prompt the same way: our engine and llama.cpp
 * (node-llama-cpp) on the bundled model exported to an exact f32 GGUF, under greedy and
 * under sampler settings that force one candidate (top-k 1, top-p ≈ 0). llama.cpp gets
 * no system prompt we did not give (node-llama-cpp's chat session injects a default one),
 * and --raw continues plain text on both. A folder whose GGUF conversion fails leaves no
 * temporary folder behind; a flag llama.cpp cannot honour is refused.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
import { LlamaCppChat } from "../../src/cli/chat-llamacpp.ts";
import { exportGguf } from "../../src/export/gguf.ts";
import { Conversation, endOfTurnIds } from "../../src/generate/conversation.ts";
import { generate, Session } from "../../src/generate/engine.ts";
import { samplerOptions, type SamplerOptions } from "../../src/generate/sampler.ts";
import { loadModel, type LoadedModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_MODEL_DIR, PACKAGE_ROOT } from "../../src/load/paths.ts";

const BIN = `${PACKAGE_ROOT}bin/quantize-llm.js`;
let tmp: string;
let native: LoadedModel;
let llama: LlamaCppChat;
let llamaSys: LlamaCppChat;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "qllm-engines-"));
  const gguf = join(tmp, "tiny-f32.gguf");
  await exportGguf(BUNDLED_MODEL_DIR, gguf, { type: "f32" });
  native = await loadModel(BUNDLED_MODEL_DIR, selectBackend({ threads: 1 }));
  llama = await LlamaCppChat.open({ modelPath: gguf, threads: 1, contextSize: 512 });
  llamaSys = await LlamaCppChat.open({ modelPath: gguf, threads: 1, contextSize: 512, system: "You are a storyteller." });
});
afterAll(async () => {
  await llama?.dispose();
  await llamaSys?.dispose();
  if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
});

const nativeAsk = async (user: string, sampler: SamplerOptions, system?: string): Promise<string> =>
  (await new Conversation(new Session(native.model), native.tokenizer, system).ask(user, { maxTokens: 24, sampler })).text;

describe("chat engines agree", () => {
  test("greedy, no system prompt: the same answer (no default system prompt injected)", async () => {
    const g = samplerOptions({});
    const a = await nativeAsk("Who was there?", g);
    llama.reset();
    const b = await llama.ask("Who was there?", { maxTokens: 24, sampler: g });
    expect(b.text).toBe(a);
    expect(a.length).toBeGreaterThan(10);
  });

  test("with --system, and with sampler settings that leave one candidate (top-k 1; top-p ≈ 0)", async () => {
    const greedy = await nativeAsk("Who was there?", samplerOptions({}), "You are a storyteller.");
    for (const s of [samplerOptions({ temperature: 1.5, topK: 1, seed: 3 }), samplerOptions({ temperature: 1.5, topK: 0, topP: 1e-6, seed: 3 })]) {
      expect(await nativeAsk("Who was there?", s, "You are a storyteller.")).toBe(greedy);
      llamaSys.reset();
      expect((await llamaSys.ask("Who was there?", { maxTokens: 24, sampler: s })).text).toBe(greedy);
    }
    // The same settings without the cut do sample something else: the cut is what made them equal.
    llamaSys.reset();
    expect((await llamaSys.ask("Who was there?", { maxTokens: 24, sampler: samplerOptions({ temperature: 1.5, topK: 0, seed: 3 }) })).text).not.toBe(greedy);
  });

  test("--raw continues plain text the same way", async () => {
    const g = samplerOptions({});
    const tok = native.tokenizer;
    const a = await generate(new Session(native.model), tok, { prompt: tok.encode("The jury said", { addSpecial: true }), maxTokens: 16, sampler: g, stopIds: endOfTurnIds(tok) });
    const b = await llama.complete("The jury said", { maxTokens: 16, sampler: g });
    expect(b.text).toBe(a.text);
    expect(b.stats.promptTokens).toBe(a.stats.promptTokens);
  });
});

describe("chat --engine llama.cpp at the command line", () => {
  test("a failed folder → GGUF conversion leaves no temporary folder", () => {
    const work = mkdtempSync(join(tmpdir(), "qllm-convfail-"));
    try {
      const bad = join(work, "model");
      const tdir = join(work, "tmp");
      mkdirSync(bad);
      mkdirSync(tdir);
      for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(BUNDLED_MODEL_DIR, f), join(bad, f));
      writeFileSync(join(bad, "model.safetensors"), Buffer.alloc(64, 7)); // not a safetensors file
      const r = spawnSync(process.execPath, [BIN, "chat", bad, "--engine", "llama.cpp", "--prompt", "hi"], {
        encoding: "utf8", env: { ...process.env, TMPDIR: tdir, QLLM_THREADS: "1" },
      });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^error: /m);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(r.stderr).toMatch(/converting .* to GGUF/);
      expect(r.stderr).toMatch(/safetensors/i);
      expect(readdirSync(tdir).filter((f) => f.startsWith("qllm-"))).toEqual([]); // (tsx keeps its own cache there)
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  test("a flag llama.cpp cannot honour is refused, not ignored", () => {
    const r = spawnSync(process.execPath, [BIN, "chat", "--engine", "llama.cpp", "--backend", "ref", "--prompt", "hi"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--backend does not apply to --engine llama\.cpp/);
  });
});

/**
 * `chatWithLlamaCpp`: the bundled model exported to GGUF answers a prompt through llama.cpp
 * with its own chat template (ChatML), streaming what it returns; greedy answers are
 * reproducible, and a folder instead of a .gguf is refused with a hint.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { chatWithLlamaCpp } from "../../src/cli/chat-llamacpp.ts";
import { exportQuantizedGguf } from "../../src/export/gguf-quant.ts";
import { BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";

const HAS_WEIGHTS = existsSync(join(BUNDLED_MODEL_DIR, "model.safetensors"));

describe.skipIf(!HAS_WEIGHTS)("chat through llama.cpp", () => {
  let tmp: string;
  let gguf: string;
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "qllm-chat-llamacpp-"));
    gguf = join(tmp, "tiny-q8_0.gguf");
    await exportQuantizedGguf(BUNDLED_MODEL_DIR, gguf, { type: "q8_0" });
  });
  afterAll(() => { if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true }); });

  test("answers a prompt with the GGUF's chat template, streaming, reproducibly when greedy", async () => {
    const run = async (): Promise<{ streamed: string; answers: string[]; template: string }> => {
      let streamed = "";
      const r = await chatWithLlamaCpp({
        modelPath: gguf, prompt: "Once upon a time", system: "You are a storyteller.", maxTokens: 24, temperature: 0, seed: 1, threads: 1,
        out: { write: (s: string) => { streamed += s; } },
      });
      return { streamed, ...r };
    };
    const a = await run();
    expect(a.template).toBe("jinja");
    expect(a.answers).toHaveLength(1);
    expect(a.answers[0]!.trim().length).toBeGreaterThan(0);
    expect(a.streamed).toBe(a.answers[0] + "\n");
    expect(a.answers[0]).not.toContain("<|im_start|>");
    console.log(`llama.cpp answer: ${JSON.stringify(a.answers[0])}`);
    const b = await run();
    expect(b.answers).toEqual(a.answers);
  });

  test("a model folder is refused with the export hint", async () => {
    await expect(chatWithLlamaCpp({ modelPath: BUNDLED_MODEL_DIR, maxTokens: 4, temperature: 0, seed: 0, threads: 1 })).rejects.toThrow(/\.gguf/);
  });
});

/**
 * `serve` through the official openai client on loopback: streaming and non-streaming
 * chat, completions, models; usage counts checked against the tokenizer; the greedy and
 * the seeded answers equal `quantize-llm chat --prompt`'s for the same messages and seed.
 */
import { spawn, spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { chatPromptIds } from "../../src/generate/conversation.ts";
import { PACKAGE_ROOT } from "../../src/load/paths.ts";
import type { RunningServer } from "../../src/serve/server.ts";
import { bundled, client, MODEL_ID, serveBundled, sseData } from "./helpers.ts";

const BIN = `${PACKAGE_ROOT}bin/quantize-llm.js`;
const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, QLLM_THREADS: "1" } });

let srv: RunningServer;
beforeAll(async () => { srv = await serveBundled(); });
afterAll(async () => { await srv?.close(); });

const messages: { role: "system" | "user"; content: string }[] = [{ role: "system" as const, content: "You are a storyteller." }, { role: "user" as const, content: "Who was there?" }];

describe("serve with the openai client", () => {
  test("non-streaming chat: shape, usage from the tokenizer, and the same text as streaming", async () => {
    const { openai, raw } = client(srv.url);
    const r = await openai.chat.completions.create({ model: MODEL_ID, messages, temperature: 0, max_tokens: 20 });
    expect(r.object).toBe("chat.completion");
    expect(r.model).toBe(MODEL_ID);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.message.role).toBe("assistant");
    expect(r.choices[0]!.finish_reason).toBe("length");
    const { tokenizer } = await bundled();
    const promptTokens = chatPromptIds(tokenizer, messages).length;
    expect(r.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 20, total_tokens: promptTokens + 20 });

    const s = await openai.chat.completions.create({ model: MODEL_ID, messages, temperature: 0, max_tokens: 20, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage = null;
    const finish: (string | null)[] = [];
    for await (const ch of s) {
      if (ch.usage) usage = ch.usage;
      for (const c of ch.choices) { text += c.delta.content ?? ""; finish.push(c.finish_reason); }
    }
    expect(text).toBe(r.choices[0]!.message.content);
    expect(usage).toEqual(r.usage);
    expect(finish.at(-1)).toBe("length");
    expect(finish.slice(0, -1).every((f) => f === null)).toBe(true);
    const events = sseData(raw.at(-1)!);
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events.at(-2)!)).toMatchObject({ choices: [], usage: r.usage }); // include_usage: its own last chunk
  });

  test("completions (streaming and not) and models", async () => {
    const { openai, raw } = client(srv.url);
    const c = await openai.completions.create({ model: MODEL_ID, prompt: "The jury said", temperature: 0, max_tokens: 12 });
    expect(c.object).toBe("text_completion");
    expect(c.usage?.completion_tokens).toBe(12);
    const s = await openai.completions.create({ model: MODEL_ID, prompt: "The jury said", temperature: 0, max_tokens: 12, stream: true });
    let text = "";
    for await (const ch of s) text += ch.choices[0]?.text ?? "";
    expect(text).toBe(c.choices[0]!.text);
    expect(sseData(raw.at(-1)!).at(-1)).toBe("[DONE]");
    // chat --raw is the same continuation.
    const r = cli("chat", "--raw", "--prompt", "The jury said", "--temperature", "0", "--max-tokens", "12");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${text}\n`);
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL_ID]);
    expect((await openai.models.retrieve(MODEL_ID)).id).toBe(MODEL_ID);
  });

  test("the answer equals chat --prompt's for the same messages and seed (greedy and sampled)", async () => {
    const { openai } = client(srv.url);
    for (const [flags, params] of [
      [["--temperature", "0"], { temperature: 0 }],
      [["--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "5"], { temperature: 0.9, top_k: 40, top_p: 0.95, seed: 5 }],
    ] as const) {
      const r = cli("chat", "--system", messages[0]!.content, "--prompt", messages[1]!.content, "--max-tokens", "24", ...flags);
      expect(r.status, r.stderr).toBe(0);
      const api = await openai.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 24, ...params } as never) as { choices: { message: { content: string } }[] };
      expect(`${api.choices[0]!.message.content}\n`).toBe(r.stdout);
      expect(r.stdout.trim().length).toBeGreaterThan(0);
    }
  });

  test("quantize-llm serve: listens on loopback, answers, and shuts down on SIGINT", async () => {
    const child = spawn(process.execPath, [BIN, "serve", "--port", "0", "--api-key", "k"], { env: { ...process.env, QLLM_THREADS: "1" } });
    let err = "";
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on("data", (d: Buffer) => { err += d.toString(); const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(err); if (m) resolve(m[1]!); });
      child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    });
    expect(err).toMatch(/kernel path: (native|ref)/);
    const { openai } = client(url, "k");
    const r = await openai.chat.completions.create({ model: MODEL_ID, messages, temperature: 0, max_tokens: 4 });
    expect(r.usage?.completion_tokens).toBe(4);
    const code = await new Promise<number | null>((resolve) => { child.on("exit", resolve); child.kill("SIGINT"); });
    expect(code).toBe(0);
    expect(err).toMatch(/POST \/v1\/chat\/completions 200/);
  });
});

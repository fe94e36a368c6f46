/**
 * Load on loopback through the official client: 64 concurrent streaming requests all end
 * with [DONE] or an explicit 429, none hangs, none is mixed up (each answer equals the
 * engine's sequential answer for its prompt and seed); a full queue refuses with 429;
 * 16 clients that disconnect mid-stream free their slots (queue empty, nothing busy);
 * the per-request timeout ends a request with a 504-shaped error.
 */
import OpenAI from "openai";
import { afterEach, describe, expect, test } from "vitest";
import { chatPromptIds, endOfTurnIds } from "../../src/generate/conversation.ts";
import { generate, Session } from "../../src/generate/engine.ts";
import { samplerOptions } from "../../src/generate/sampler.ts";
import type { RunningServer } from "../../src/serve/server.ts";
import { bundled, client, MODEL_ID, serveBundled, sseData } from "./helpers.ts";

let srv: RunningServer | null = null;
afterEach(async () => { await srv?.close(); srv = null; });

const ask = (i: number) => ({ role: "user" as const, content: `Tell me about witness number ${i}.` });
const params = (i: number) => ({ temperature: 0.8, top_k: 40, seed: 1000 + i, max_tokens: 6 });

/** Health counters, polled until `ok` or `ms` elapse. */
async function healthUntil(url: string, ok: (h: { busy: number; queued: number }) => boolean, ms: number): Promise<{ busy: number; queued: number }> {
  const end = Date.now() + ms;
  for (;;) {
    const h = await (await fetch(`${url}/health`)).json() as { busy: number; queued: number };
    if (ok(h) || Date.now() > end) return h;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("serve under load", () => {
  test("64 concurrent streams: each ends with [DONE] or a 429, and equals its sequential answer", async () => {
    srv = await serveBundled({ parallel: 2, maxQueue: 40, timeoutMs: 60_000 });
    const { openai, raw } = client(srv.url);
    const results = await Promise.all(Array.from({ length: 64 }, async (_, i) => {
      try {
        const s = await openai.chat.completions.create({ model: MODEL_ID, messages: [ask(i)], stream: true, ...params(i) } as never) as unknown as AsyncIterable<OpenAI.Chat.ChatCompletionChunk>;
        let text = "";
        for await (const ch of s) text += ch.choices[0]?.delta.content ?? "";
        return { i, text };
      } catch (e) {
        if (e instanceof OpenAI.APIError && e.status === 429) return { i, refused: e.code };
        throw e;
      }
    }));
    const done = results.filter((r): r is { i: number; text: string } => "text" in r);
    const refused = results.filter((r) => "refused" in r);
    expect(done.length + refused.length).toBe(64);
    expect(done.length).toBeGreaterThanOrEqual(42); // 2 slots + 40 queued are never refused
    for (const r of refused) expect(r).toMatchObject({ refused: "queue_full" });
    // Every stream that was answered ends with [DONE]; 429 bodies are JSON errors.
    const streams = raw.filter((b) => b.startsWith("data: "));
    expect(streams).toHaveLength(done.length);
    for (const b of streams) expect(sseData(b).at(-1)).toBe("[DONE]");
    // Not mixed up: the engine alone, one request after another, gives the same texts.
    const { model, tokenizer } = await bundled();
    const session = new Session(model);
    for (const r of done) {
      const p = params(r.i);
      session.reset();
      const seq = await generate(session, tokenizer, {
        prompt: chatPromptIds(tokenizer, [ask(r.i)]), maxTokens: p.max_tokens, stopIds: endOfTurnIds(tokenizer),
        sampler: samplerOptions({ temperature: p.temperature, topK: p.top_k, topP: 1, seed: p.seed }),
      });
      expect(r.text, `request ${r.i}`).toBe(seq.text);
    }
    expect(new Set(done.map((r) => r.text)).size).toBeGreaterThan(done.length / 2);
    expect(await healthUntil(srv.url, (h) => h.busy === 0 && h.queued === 0, 2000)).toMatchObject({ busy: 0, queued: 0 });
  });

  test("a full queue refuses at once with 429", async () => {
    srv = await serveBundled({ parallel: 1, maxQueue: 1, timeoutMs: 60_000 });
    const { openai } = client(srv.url);
    const long = { model: MODEL_ID, temperature: 0, max_tokens: 400, ignore_eos: true };
    const acs = [new AbortController(), new AbortController()];
    const held = acs.map((ac, i) => openai.chat.completions.create({ ...long, messages: [ask(i)] }, { signal: ac.signal }).catch((x: unknown) => x));
    expect(await healthUntil(srv.url, (h) => h.busy === 1 && h.queued === 1, 5000)).toMatchObject({ busy: 1, queued: 1 });
    const t0 = Date.now();
    const e = await openai.chat.completions.create({ ...long, messages: [ask(2)] }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    expect((e as InstanceType<typeof OpenAI.RateLimitError>).code).toBe("queue_full");
    expect(Date.now() - t0).toBeLessThan(1000);
    for (const ac of acs) ac.abort();
    for (const h of await Promise.all(held)) expect(h).toBeInstanceOf(OpenAI.APIUserAbortError);
    expect(await healthUntil(srv.url, (h) => h.busy === 0 && h.queued === 0, 1000)).toMatchObject({ busy: 0, queued: 0 });
  });

  test("16 clients disconnecting mid-stream free their slots: nothing busy, the queue empty", async () => {
    srv = await serveBundled({ parallel: 2, maxQueue: 14, timeoutMs: 60_000 });
    const { openai } = client(srv.url);
    const long = { model: MODEL_ID, temperature: 0, max_tokens: 400, ignore_eos: true, stream: true };
    let firstChunks = 0;
    const t0 = Date.now();
    const streams = Array.from({ length: 16 }, async (_, i) => {
      const ac = new AbortController();
      try {
        const s = await openai.chat.completions.create({ ...long, messages: [ask(i)] } as never, { signal: ac.signal }) as unknown as AsyncIterable<OpenAI.Chat.ChatCompletionChunk>;
        for await (const ch of s) if (ch.choices[0]?.delta.content) { firstChunks++; ac.abort(); break; } // hang up mid-stream
        return "disconnected"; // the SDK ends the iteration quietly after an abort
      } catch (e) {
        if (e instanceof OpenAI.APIUserAbortError) return "disconnected";
        throw e;
      }
    });
    expect(await Promise.all(streams)).toEqual(new Array(16).fill("disconnected"));
    expect(firstChunks).toBe(16);
    // 16 × 400 tokens would take tens of seconds: each hang-up ended its generation at once.
    expect(await healthUntil(srv.url, (h) => h.busy === 0 && h.queued === 0, 1000)).toMatchObject({ busy: 0, queued: 0 });
    expect(Date.now() - t0).toBeLessThan(16 * 400 * 2);
    const ok = await openai.chat.completions.create({ model: MODEL_ID, messages: [ask(1)], temperature: 0, max_tokens: 4 });
    expect(ok.usage?.completion_tokens).toBe(4);
  });

  test("the per-request timeout ends a request: 504 when not streaming, an error event then [DONE] when streaming", async () => {
    srv = await serveBundled({ timeoutMs: 150 });
    const { openai, raw } = client(srv.url);
    const body = { model: MODEL_ID, messages: [ask(0)], temperature: 0, max_tokens: 500, ignore_eos: true };
    const e = await openai.chat.completions.create(body as never).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.APIError);
    expect((e as InstanceType<typeof OpenAI.APIError>).status).toBe(504);
    const s = await openai.chat.completions.create({ ...body, stream: true } as never) as unknown as AsyncIterable<unknown>;
    const se = await (async () => { for await (const _ of s) { /* read until the error */ } })().catch((x: unknown) => x);
    expect(se).toBeInstanceOf(OpenAI.APIError);
    const events = sseData(raw.at(-1)!);
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events.at(-2)!)).toMatchObject({ error: { type: "timeout_error", code: "timeout" } });
    expect(await healthUntil(srv.url, (h) => h.busy === 0, 1000)).toMatchObject({ busy: 0, queued: 0 });
  });
});

/**
 * Bad input over HTTP: malformed JSON, wrong types and ranges, an oversized body, a
 * missing or wrong API key, an unknown route, the wrong media type — each the right
 * status and an OpenAI-shaped error ({ error: { message, type, param, code } }), and
 * the server still answers correctly afterwards.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { RunningServer } from "../../src/serve/server.ts";
import { client, MODEL_ID, serveBundled } from "./helpers.ts";

const KEY = "sekret-key";
let srv: RunningServer;
beforeAll(async () => { srv = await serveBundled({ apiKey: KEY, bodyLimit: 16 * 1024 }); });
afterAll(async () => { await srv?.close(); });

const good = { model: MODEL_ID, messages: [{ role: "user", content: "Who was there?" }], temperature: 0, max_tokens: 6 };

async function post(path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: { error?: Record<string, unknown> } }> {
  const res = await fetch(`${srv.url}${path}`, {
    method: "POST", body, headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", ...headers },
  });
  return { status: res.status, json: await res.json() as { error?: Record<string, unknown> } };
}

function expectOpenAiError(json: { error?: Record<string, unknown> }, type: string, param: string | null, code: string | null): void {
  expect(Object.keys(json)).toEqual(["error"]);
  expect(json.error).toEqual({ message: expect.any(String), type, param, code });
  expect((json.error!["message"] as string).length).toBeGreaterThan(10);
}

/** After every bad request: the server still serves a good one. */
async function stillServes(): Promise<void> {
  const r = await post("/v1/chat/completions", JSON.stringify(good));
  expect(r.status).toBe(200);
  expect((r.json as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(6);
}

describe("serve: bad input", () => {
  test("malformed JSON, an empty body, a non-object body → 400", async () => {
    for (const body of ['{"model": "qllm-tiny", "messages": [', "", "[1, 2]", "42"]) {
      const r = await post("/v1/chat/completions", body);
      expect(r.status, body).toBe(400);
      expectOpenAiError(r.json, "invalid_request_error", null, body.startsWith("{") || body === "" ? "invalid_json" : "invalid_type");
    }
    await stillServes();
  });

  test("wrong types and ranges → 400 naming the parameter", async () => {
    const cases: [Record<string, unknown>, string, string][] = [
      [{ messages: "hi" }, "messages", "invalid_type"],
      [{ messages: [] }, "messages", "empty_array"],
      [{ messages: [{ role: "robot", content: "x" }] }, "messages[0].role", "invalid_value"],
      [{ messages: [{ role: "user", content: 7 }] }, "messages[0].content", "invalid_type"],
      [{ temperature: "hot" }, "temperature", "invalid_type"],
      [{ temperature: 3 }, "temperature", "invalid_value"],
      [{ top_p: -0.1 }, "top_p", "invalid_value"],
      [{ max_tokens: 0 }, "max_tokens", "invalid_value"],
      [{ max_tokens: 1.5 }, "max_tokens", "invalid_type"],
      [{ max_tokens: 100_000 }, "max_tokens", "invalid_value"],
      [{ n: 2 }, "n", "invalid_value"],
      [{ stop: 5 }, "stop", "invalid_type"],
      [{ stream: "yes" }, "stream", "invalid_type"],
      [{ stream_options: { include_usage: true } }, "stream_options", "invalid_value"],
      [{ tools: [{ type: "function" }] }, "tools", "unsupported_parameter"],
      [{ model: "gpt-4o" }, "model", "model_not_found"],
      [{ model: 3 }, "model", "invalid_type"],
    ];
    for (const [patch, param, code] of cases) {
      const r = await post("/v1/chat/completions", JSON.stringify({ ...good, ...patch }));
      expect(r.status, JSON.stringify(patch)).toBe(400);
      expectOpenAiError(r.json, "invalid_request_error", param, code);
    }
    const c = await post("/v1/completions", JSON.stringify({ model: MODEL_ID, prompt: ["a", "b"] }));
    expect(c.status).toBe(400);
    expectOpenAiError(c.json, "invalid_request_error", "prompt", "invalid_type");
    const long = await post("/v1/completions", JSON.stringify({ model: MODEL_ID, prompt: "word ".repeat(1000) }));
    expect(long.status).toBe(400);
    expectOpenAiError(long.json, "invalid_request_error", "prompt", "context_length_exceeded");
    await stillServes();
  });

  test("the official client surfaces the same errors as typed exceptions", async () => {
    const { openai } = client(srv.url, KEY);
    const e = await openai.chat.completions.create({ ...good, temperature: 9 } as never).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("temperature");
    const wrong = await client(srv.url, "wrong-key").openai.models.list().catch((x: unknown) => x);
    expect(wrong).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((wrong as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe("invalid_api_key");
  });

  test("an oversized body → 413; the wrong media type → 415", async () => {
    const big = JSON.stringify({ ...good, messages: [{ role: "user", content: "x".repeat(20_000) }] });
    const r = await post("/v1/chat/completions", big);
    expect(r.status).toBe(413);
    expectOpenAiError(r.json, "invalid_request_error", null, "request_too_large");
    const t = await post("/v1/chat/completions", JSON.stringify(good), { "content-type": "text/plain" });
    expect(t.status).toBe(415);
    expectOpenAiError(t.json, "invalid_request_error", null, "unsupported_media_type");
    await stillServes();
  });

  test("a missing or wrong API key → 401 (before the body is read); /health needs none", async () => {
    for (const auth of [undefined, "Bearer nope", `Basic ${KEY}`, `Bearer ${KEY}x`]) {
      const res = await fetch(`${srv.url}/v1/chat/completions`, {
        method: "POST", body: JSON.stringify(good), headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
      });
      expect(res.status, String(auth)).toBe(401);
      expectOpenAiError(await res.json() as never, "invalid_request_error", null, "invalid_api_key");
    }
    const huge = await fetch(`${srv.url}/v1/chat/completions`, { method: "POST", body: "x".repeat(100_000), headers: { "content-type": "application/json" } });
    expect(huge.status).toBe(401);
    const h = await fetch(`${srv.url}/health`);
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ status: "ok", model: MODEL_ID, busy: 0, queued: 0 });
    await stillServes();
  });

  test("an unknown route or method → 404", async () => {
    for (const [method, path] of [["GET", "/v1/nothing"], ["POST", "/v1/models"], ["GET", "/v1/chat/completions"], ["GET", "/v1/models/gpt-4o"]] as const) {
      const res = await fetch(`${srv.url}${path}`, { method, headers: { authorization: `Bearer ${KEY}` } });
      expect(res.status, `${method} ${path}`).toBe(404);
      const json = await res.json() as never;
      expectOpenAiError(json, "invalid_request_error", path === "/v1/models/gpt-4o" ? "model" : null, path === "/v1/models/gpt-4o" ? "model_not_found" : "unknown_url");
    }
    await stillServes();
  });
});

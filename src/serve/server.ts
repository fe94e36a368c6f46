/**
 * The OpenAI-compatible HTTP server (fastify): routes, API-key check, error shapes,
 * and the request → slot → generation → response flow (SSE when streaming).
 *
 *   POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /health
 */
import { randomUUID, timingSafeEqual } from "node:crypto";
import type { ServerResponse } from "node:http";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import type { KvDType } from "../nn/model.ts";
import { chatPromptIds, endOfTurnIds } from "../generate/conversation.ts";
import { generate, Session, type EngineModel, type GenerateResult } from "../generate/engine.ts";
import { ApiError, invalid, parseRequest, type ParsedRequest } from "./openai-request.ts";
import { QueueFullError, Scheduler } from "./scheduler.ts";
import { SseWriter } from "./sse.ts";

export interface ServerOptions {
  /** The CPU model or the GPU runner (GPU slots share its activation buffers: steps are serialized by the GPU queue). */
  model: EngineModel;
  tokenizer: TextTokenizer;
  /** The id clients pass as `model` (GET /v1/models lists it). */
  modelId: string;
  host?: string;
  /** 0 = any free port. */
  port?: number;
  /** When set, every route but /health needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** The KV caches' element type (default: the Session's, engine.ts DEFAULT_KV). */
  kv?: KvDType;
  /** Requests generated at once (each slot has its own KV cache). */
  parallel?: number;
  /** Requests that may wait for a slot; one more gets 429. */
  maxQueue?: number;
  /** Per-request limit, queueing included (ms). */
  timeoutMs?: number;
  /** Largest request body (bytes); larger gets 413. */
  bodyLimit?: number;
  /** One line per finished request. */
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;
  app: FastifyInstance;
  scheduler: Scheduler;
  close(): Promise<void>;
}

class Timeout extends Error {}
class Disconnected extends Error {}

const sseHeaders = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" };

function sameKey(header: string | undefined, key: string): boolean {
  const want = Buffer.from(`Bearer ${key}`);
  const got = Buffer.from(header ?? "");
  return got.length === want.length && timingSafeEqual(got, want);
}

/** fastify's own errors (body parsing, size) → OpenAI-shaped ones. */
function apiErrorOf(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const fe = e as { code?: string; statusCode?: number; message?: string };
  if (fe.code === "FST_ERR_CTP_BODY_TOO_LARGE") return new ApiError(413, "the request body is larger than the server accepts", "invalid_request_error", null, "request_too_large");
  if (fe.code === "FST_ERR_CTP_INVALID_JSON_BODY" || fe.code === "FST_ERR_CTP_EMPTY_JSON_BODY" || (e instanceof SyntaxError)) {
    return invalid(`the request body is not valid JSON: ${fe.message ?? ""}`, null, "invalid_json");
  }
  if (fe.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return new ApiError(415, "send the body as application/json", "invalid_request_error", null, "unsupported_media_type");
  if (typeof fe.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new ApiError(fe.statusCode, fe.message ?? "bad request", "invalid_request_error", null, fe.code ?? null);
  }
  return new ApiError(500, `internal server error: ${fe.message ?? String(e)}`, "server_error");
}

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const { model, tokenizer: tok, modelId } = o;
  const context = model.cfg.maxPositionEmbeddings;
  const timeoutMs = o.timeoutMs ?? 600_000;
  const scheduler = new Scheduler(Array.from({ length: o.parallel ?? 1 }, () => new Session(model, context, o.kv)), o.maxQueue ?? 16);
  const endIds = endOfTurnIds(tok);
  const created = Math.floor(Date.now() / 1000);
  const app = Fastify({ bodyLimit: o.bodyLimit ?? 1 << 20, logger: false, return503OnClosing: true });
  app.removeContentTypeParser("text/plain"); // bodies are JSON only: anything else gets 415

  app.addHook("onRequest", async (req) => {
    if (o.apiKey === undefined || req.url === "/health") return;
    if (!sameKey(req.headers.authorization, o.apiKey)) {
      const missing = req.headers.authorization === undefined;
      throw new ApiError(401, missing ? "You didn't provide an API key: send 'Authorization: Bearer <key>'" : "Incorrect API key provided",
        "invalid_request_error", null, "invalid_api_key");
    }
  });
  app.setErrorHandler((e, _req, reply) => {
    const ae = apiErrorOf(e);
    void reply.code(ae.status).send(ae.body());
  });
  app.setNotFoundHandler((req, reply) => {
    const ae = new ApiError(404, `Invalid URL (${req.method} ${req.url})`, "invalid_request_error", null, "unknown_url");
    void reply.code(404).send(ae.body());
  });
  if (o.log) {
    const log = o.log;
    app.addHook("onResponse", async (req, reply) => { log(`${req.method} ${req.url} ${reply.statusCode} ${reply.elapsedTime.toFixed(0)} ms`); });
  }

  app.get("/health", async () => ({ status: "ok", model: modelId, slots: scheduler.slots.length, busy: scheduler.busy, queued: scheduler.queued }));
  const modelCard = { id: modelId, object: "model", created, owned_by: "quantize-llm" };
  app.get("/v1/models", async () => ({ object: "list", data: [modelCard] }));
  app.get<{ Params: { id: string } }>("/v1/models/:id", async (req, reply) => {
    if (req.params.id !== modelId) return reply.code(404).send(new ApiError(404, `The model '${req.params.id}' does not exist`, "invalid_request_error", "model", "model_not_found").body());
    return modelCard;
  });

  const handle = (kind: "chat" | "completion") => async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const p = parseRequest(kind, req.body, modelId, context);
    const prompt = p.messages ? chatPromptIds(tok, p.messages) : tok.encode(p.prompt!, { addSpecial: true });
    if (prompt.length >= context) {
      throw invalid(`the prompt is ${prompt.length} tokens; the model's context is ${context} tokens`, kind === "chat" ? "messages" : "prompt", "context_length_exceeded");
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Timeout()), timeoutMs);
    const res: ServerResponse = reply.raw;
    const onClose = (): void => { if (!res.writableEnded) ac.abort(new Disconnected()); };
    res.on("close", onClose);
    try {
      let slot: Session;
      try { slot = await scheduler.acquire(ac.signal); } catch (e) {
        if (e instanceof QueueFullError) throw new ApiError(429, `${e.message}; retry later`, "rate_limit_error", null, "queue_full");
        if (e instanceof Timeout) throw new ApiError(504, `no slot became free within ${timeoutMs} ms`, "timeout_error", null, "timeout");
        if (e instanceof Disconnected) { reply.hijack(); return; }
        throw e;
      }
      try {
        slot.reset(); // each request from position 0: an answer depends only on its own request
        await respond(kind, p, prompt, slot, reply, ac.signal);
      } finally {
        scheduler.release(slot);
      }
    } finally {
      clearTimeout(timer);
      res.off("close", onClose);
    }
  };

  const respond = async (kind: "chat" | "completion", p: ParsedRequest, prompt: number[], slot: Session, reply: FastifyReply, signal: AbortSignal): Promise<void> => {
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
    const now = Math.floor(Date.now() / 1000);
    const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const gen = (onText?: (d: string) => void): Promise<GenerateResult> => generate(slot, tok, {
      prompt, maxTokens: Math.min(p.maxTokens, context - prompt.length), sampler: p.sampler, stopIds: endIds,
      stopStrings: p.stop, ignoreEos: p.ignoreEos, signal, ...(onText ? { onText } : {}),
    });
    const usage = (r: GenerateResult) => ({ prompt_tokens: prompt.length, completion_tokens: r.ids.length, total_tokens: prompt.length + r.ids.length });
    const timeoutError = new ApiError(504, `the request ran past the server's timeout of ${timeoutMs} ms`, "timeout_error", null, "timeout");

    if (!p.stream) {
      const r = await gen();
      if (r.finishReason === "cancelled") {
        if (signal.reason instanceof Timeout) throw timeoutError;
        reply.hijack(); // the client is gone: nothing to send
        return;
      }
      const choice = kind === "chat"
        ? { index: 0, message: { role: "assistant", content: r.text, refusal: null }, logprobs: null, finish_reason: r.finishReason }
        : { index: 0, text: r.text, logprobs: null, finish_reason: r.finishReason };
      await reply.send({ id, object: kind === "chat" ? "chat.completion" : "text_completion", created: now, model: modelId, choices: [choice], usage: usage(r) });
      return;
    }

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, sseHeaders);
    const sse = new SseWriter(res);
    const send = (data: unknown): void => sse.send(data);
    const extra = p.includeUsage ? { usage: null } : {};
    const chunk = (delta: Record<string, unknown>, finish: string | null) => kind === "chat"
      ? { id, object, created: now, model: modelId, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra }
      : { id, object, created: now, model: modelId, choices: [{ index: 0, text: (delta["content"] as string | undefined) ?? "", logprobs: null, finish_reason: finish }], ...extra };
    if (kind === "chat") send(chunk({ role: "assistant", content: "" }, null));
    // A text chunk is the same JSON every time but for its text: stringify the rest once.
    const MARK = "\u0001text\u0001";
    const [head, tail] = JSON.stringify(chunk({ content: MARK }, null)).split(JSON.stringify(MARK)) as [string, string];
    const r = await gen((d) => send(head + JSON.stringify(d) + tail));
    if (r.finishReason === "cancelled") {
      if (signal.reason instanceof Timeout) { send(timeoutError.body()); send("[DONE]"); }
      sse.end();
      return;
    }
    send(chunk({}, r.finishReason));
    if (p.includeUsage) send({ id, object, created: now, model: modelId, choices: [], usage: usage(r) });
    send("[DONE]");
    sse.end();
  };

  app.post("/v1/chat/completions", handle("chat"));
  app.post("/v1/completions", handle("completion"));

  const address = await app.listen({ host: o.host ?? "127.0.0.1", port: o.port ?? 8080 });
  return { url: address, app, scheduler, close: () => app.close() };
}

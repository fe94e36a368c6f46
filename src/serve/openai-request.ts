/**
 * OpenAI request bodies → typed generation requests, and OpenAI-shaped errors.
 * Field names, ranges and defaults follow the OpenAI API reference (chat/completions,
 * completions); top_k, min_p, repetition_penalty and ignore_eos are the llama.cpp
 * server's extensions with its meaning.
 */
import { randomInt } from "node:crypto";
import { samplerOptions, type SamplerOptions } from "../generate/sampler.ts";
import type { ChatMessage } from "../tokenizer/tokenizer.ts";
import { UsageError } from "../util/errors.ts";

/** An error the API returns as { error: { message, type, param, code } } with `status`. */
export class ApiError extends Error {
  constructor(
    readonly status: number, message: string, readonly type: string, readonly param: string | null = null, readonly code: string | null = null,
  ) { super(message); }
  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const invalid = (message: string, param: string | null, code: string | null = "invalid_value"): ApiError =>
  new ApiError(400, message, "invalid_request_error", param, code);

export interface ParsedRequest {
  messages: ChatMessage[] | null;
  prompt: string | null;
  maxTokens: number;
  stream: boolean;
  includeUsage: boolean;
  stop: string[];
  ignoreEos: boolean;
  sampler: SamplerOptions;
}

type Kind = "number" | "integer" | "boolean";
/** Optional scalar fields: JSON name → [kind, min, max, sampler option it sets]. */
const SCALARS: Record<string, [Kind, number, number, keyof SamplerOptions | null]> = {
  temperature: ["number", 0, 2, "temperature"],
  top_p: ["number", 0, 1, "topP"],
  top_k: ["integer", 0, 1e9, "topK"],
  min_p: ["number", 0, 1, "minP"],
  frequency_penalty: ["number", -2, 2, "frequencyPenalty"],
  presence_penalty: ["number", -2, 2, "presencePenalty"],
  repetition_penalty: ["number", 0.01, 100, "repetitionPenalty"],
  seed: ["integer", -(2 ** 63), 2 ** 63, "seed"],
  n: ["integer", 1, 1, null],
  max_tokens: ["integer", 1, Infinity, null],
  max_completion_tokens: ["integer", 1, Infinity, null],
  stream: ["boolean", 0, 0, null],
  ignore_eos: ["boolean", 0, 0, null],
};
/** Fields we recognise but cannot honour: refused rather than silently ignored. */
const UNSUPPORTED = ["tools", "functions", "tool_choice", "function_call", "response_format", "logit_bias", "best_of", "suffix", "echo"];
const LOGPROBS = ["logprobs", "top_logprobs"];
const ROLES: ReadonlySet<string> = new Set(["system", "user", "assistant", "developer"]);

function scalar(body: Record<string, unknown>, name: string): number | boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  const [kind, lo, hi] = SCALARS[name]!;
  if (kind === "boolean") {
    if (typeof v !== "boolean") throw invalid(`'${name}' must be a boolean, got ${JSON.stringify(v)}`, name, "invalid_type");
    return v;
  }
  if (typeof v !== "number" || !Number.isFinite(v) || (kind === "integer" && !Number.isInteger(v))) {
    throw invalid(`'${name}' must be ${kind === "integer" ? "an integer" : "a number"}, got ${JSON.stringify(v)}`, name, "invalid_type");
  }
  if (v < lo || v > hi) {
    throw invalid(`'${name}' is ${v}; expected ${lo === hi ? `exactly ${lo}` : `a value in [${lo}, ${hi}]`}`, name);
  }
  return v;
}

function textContent(v: unknown, param: string): string {
  if (typeof v === "string") return v;
  // Content parts: only text parts ({type: "text", text}) are supported.
  if (Array.isArray(v)) {
    return v.map((p, i) => {
      const part = p as { type?: unknown; text?: unknown } | null;
      if (!part || part.type !== "text" || typeof part.text !== "string") {
        throw invalid(`'${param}[${i}]' must be a text part {"type": "text", "text": "..."}`, `${param}[${i}]`, "invalid_type");
      }
      return part.text;
    }).join("");
  }
  throw invalid(`'${param}' must be a string or an array of text parts, got ${JSON.stringify(v)}`, param, "invalid_type");
}

function messagesOf(v: unknown): ChatMessage[] {
  if (!Array.isArray(v)) throw invalid(`'messages' must be an array, got ${JSON.stringify(v)}`, "messages", "invalid_type");
  if (v.length === 0) throw invalid("'messages' must not be empty", "messages", "empty_array");
  return v.map((m, i) => {
    if (!m || typeof m !== "object" || Array.isArray(m)) throw invalid(`'messages[${i}]' must be an object`, `messages[${i}]`, "invalid_type");
    const { role, content } = m as { role?: unknown; content?: unknown };
    if (typeof role !== "string" || !ROLES.has(role)) {
      throw invalid(`'messages[${i}].role' must be one of system, developer, user, assistant; got ${JSON.stringify(role)}`, `messages[${i}].role`);
    }
    // "developer" is the newer name of "system" (OpenAI o-series).
    return { role: role === "developer" ? "system" : (role as ChatMessage["role"]), content: textContent(content, `messages[${i}].content`) };
  });
}

function stopOf(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string" || s.length === 0) || list.length > 4) {
    throw invalid(`'stop' must be a non-empty string or an array of at most 4 of them, got ${JSON.stringify(v)}`, "stop", "invalid_type");
  }
  return list as string[];
}

/**
 * Validates a /v1/chat/completions (kind "chat") or /v1/completions body.
 * `modelId` is the one model served; `context` its context length.
 */
export function parseRequest(kind: "chat" | "completion", body: unknown, modelId: string, context: number): ParsedRequest {
  if (!body || typeof body !== "object" || Array.isArray(body)) throw invalid("the request body must be a JSON object", null, "invalid_type");
  const b = body as Record<string, unknown>;
  if (typeof b["model"] !== "string") throw invalid(`'model' must be a string, got ${JSON.stringify(b["model"])}`, "model", "invalid_type");
  if (b["model"] !== modelId) {
    throw new ApiError(400, `The model '${b["model"]}' does not exist; this server serves '${modelId}' (GET /v1/models)`, "invalid_request_error", "model", "model_not_found");
  }
  for (const f of UNSUPPORTED) {
    if (b[f] !== undefined && b[f] !== null) throw invalid(`'${f}' is not supported by this server`, f, "unsupported_parameter");
  }
  for (const f of LOGPROBS) {
    if (b[f] !== undefined && b[f] !== null && b[f] !== false && b[f] !== 0) throw invalid(`'${f}' is not supported by this server`, f, "unsupported_parameter");
  }
  const vals: Record<string, number | boolean | undefined> = {};
  for (const name of Object.keys(SCALARS)) vals[name] = scalar(b, name);
  const maxTokens = (vals["max_completion_tokens"] ?? vals["max_tokens"] ?? context) as number;
  if (maxTokens > context) {
    throw invalid(`'max_tokens' is ${maxTokens}; the model's context is ${context} tokens`, vals["max_completion_tokens"] !== undefined ? "max_completion_tokens" : "max_tokens");
  }
  const so = b["stream_options"];
  if (so !== undefined && so !== null && (typeof so !== "object" || Array.isArray(so))) throw invalid("'stream_options' must be an object", "stream_options", "invalid_type");
  const iu = (so as { include_usage?: unknown } | null | undefined)?.include_usage;
  if (iu !== undefined && iu !== null && typeof iu !== "boolean") throw invalid("'stream_options.include_usage' must be a boolean", "stream_options.include_usage", "invalid_type");
  const stream = (vals["stream"] as boolean | undefined) ?? false;
  if (so !== undefined && so !== null && !stream) throw invalid("'stream_options' is only allowed when 'stream' is true", "stream_options");

  const partial: Partial<SamplerOptions> = { temperature: 1, topP: 1, seed: randomInt(2 ** 32) >>> 0 };
  for (const [name, [, , , opt]] of Object.entries(SCALARS)) {
    const v = vals[name];
    if (opt && typeof v === "number") partial[opt] = opt === "seed" ? Number(BigInt.asUintN(32, BigInt(v))) : v;
  }
  let sampler: SamplerOptions;
  try { sampler = samplerOptions(partial); } catch (e) {
    if (e instanceof UsageError) throw invalid(e.message.split("\n")[0]!, e.details.field ?? null);
    throw e;
  }

  let messages: ChatMessage[] | null = null;
  let prompt: string | null = null;
  if (kind === "chat") messages = messagesOf(b["messages"]);
  else {
    const p = b["prompt"];
    if (typeof p === "string") prompt = p;
    else if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string") prompt = p[0];
    else throw invalid(`'prompt' must be a string (or an array of one string), got ${JSON.stringify(p)}`, "prompt", "invalid_type");
    if (prompt.length === 0) throw invalid("'prompt' must not be empty", "prompt");
  }
  return {
    messages, prompt, maxTokens, stream, includeUsage: iu === true, stop: stopOf(b["stop"]),
    ignoreEos: (vals["ignore_eos"] as boolean | undefined) ?? false, sampler,
  };
}

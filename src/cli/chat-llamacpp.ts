/**
 * `chat --engine llama.cpp`: the same chat through llama.cpp (node-llama-cpp, an optional
 * peer dependency loaded on first use). The prompt is built exactly as our engine builds
 * it — the GGUF's own chat template rendered with the given messages only (no default
 * system prompt), or the raw text with --raw — and sampled with the same options, so
 * both engines give the same greedy answer to the same prompt.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { checkFits, dropOldestTurns, type TurnOptions } from "../generate/conversation.ts";
import type { FinishReason, GenerateResult } from "../generate/engine.ts";
import { runFigures, speedLine } from "../generate/report.ts";
import { samplerOptions } from "../generate/sampler.ts";
import { IncrementalDecoder, StopMatcher } from "../generate/text-stream.ts";
import { exportGguf } from "../export/gguf.ts";
import { exportQuantizedGguf } from "../export/gguf-quant.ts";
import { openGguf } from "../io/gguf.ts";
import { readAwqLegacyConfig } from "../load/awq-source.ts";
import { readQuantizationConfig } from "../load/gptq-source.ts";
import { readModelConfig } from "../load/hf-folder.ts";
import type { ChatMessage } from "../tokenizer/tokenizer.ts";
import { ConfigError, DependencyError, UsageError } from "../util/errors.ts";
import { intFlag } from "./args.ts";
import { repl, type Chatter } from "./chat-repl.ts";

type NodeLlamaCpp = typeof import("node-llama-cpp");

async function importNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  try {
    return await import("node-llama-cpp");
  } catch (e) {
    throw new DependencyError("node-llama-cpp is not installed", {
      expected: "the optional peer dependency node-llama-cpp ^3.22", found: (e as Error).message,
      hint: "npm install node-llama-cpp   (then run the command again; --engine native needs nothing extra)",
    });
  }
}

function ggufMeta(path: string): { template: string | null; contextLength: number | null } {
  const f = openGguf(path);
  try {
    const ct = f.get("tokenizer.chat_template");
    const A = f.architecture;
    const cl = A !== undefined && f.get(`${A}.context_length`) !== undefined ? f.getNumber(`${A}.context_length`) : null;
    return { template: ct?.type === "string" ? ct.value : null, contextLength: cl };
  } finally {
    f.close();
  }
}

/**
 * A .gguf as is; a model folder converted to a temporary GGUF (exact for quantized folders
 * whose grid maps). The temporary folder is removed on failure and by `cleanup`.
 */
export async function ggufFor(path: string, log: (s: string) => void): Promise<{ file: string; cleanup(): void }> {
  if (path.toLowerCase().endsWith(".gguf")) return { file: path, cleanup: () => {} };
  const cfg = readModelConfig(path);
  const tmp = mkdtempSync(join(tmpdir(), "qllm-chat-"));
  const cleanup = (): void => rmSync(tmp, { recursive: true, force: true });
  const file = join(tmp, "model.gguf");
  log(`converting ${path} to GGUF for llama.cpp (quantize-llm export does this once and keeps the file)\n`);
  try {
    if (readQuantizationConfig(path, cfg.raw) ?? readAwqLegacyConfig(path)) await exportQuantizedGguf(path, file, {});
    else await exportGguf(path, file, { type: "f16" });
  } catch (e) {
    cleanup();
    throw e;
  }
  return { file, cleanup };
}

export interface LlamaCppOpenOptions {
  /** A .gguf file. */
  modelPath: string;
  threads: number;
  system?: string;
  /** Context size (default: the model's context length, at most 4096). */
  contextSize?: number;
}

/** One llama.cpp context with a conversation on it; `dispose()` when done. */
export class LlamaCppChat implements Chatter {
  readonly messages: ChatMessage[] = [];
  private constructor(
    private readonly llama: Llama, private readonly model: LlamaModel, private readonly context: LlamaContext,
    private readonly sequence: LlamaContextSequence, private readonly template: Template | null, readonly system: string | undefined,
  ) { this.reset(); }

  static async open(o: LlamaCppOpenOptions): Promise<LlamaCppChat> {
    if (!o.modelPath.toLowerCase().endsWith(".gguf")) {
      throw new UsageError("the llama.cpp engine needs a .gguf file", {
        file: o.modelPath, field: "model", expected: "a .gguf file", found: o.modelPath,
        hint: "convert the folder first: quantize-llm export <folder> --format gguf --type q4_0 -o model.gguf",
      });
    }
    const { template, contextLength } = ggufMeta(o.modelPath);
    const nlc = await importNodeLlamaCpp();
    const llama = await nlc.getLlama({
      gpu: false, build: "never", usePrebuiltBinaries: true, progressLogs: false, logLevel: nlc.LlamaLogLevel.error, maxThreads: o.threads,
    });
    try {
      const model = await llama.loadModel({ modelPath: o.modelPath, gpuLayers: 0 });
      const context = await model.createContext({ contextSize: o.contextSize ?? Math.min(contextLength ?? 4096, 4096), threads: o.threads });
      return new LlamaCppChat(llama, model, context, context.getSequence(), template !== null ? new Template(template) : null, o.system);
    } catch (e) {
      await llama.dispose();
      throw e;
    }
  }

  get contextSize(): number { return this.context.contextSize; }

  reset(): void {
    this.messages.length = 0;
    if (this.system !== undefined) this.messages.push({ role: "system", content: this.system });
  }

  /** The chat template rendered as transformers' apply_chat_template does. */
  private render(messages: ChatMessage[]): string {
    if (!this.template) {
      throw new ConfigError("the GGUF has no chat template", {
        field: "tokenizer.chat_template", expected: "a Jinja chat template", found: "none", hint: "use --raw to continue plain text",
      });
    }
    const t = this.model.tokens;
    return this.template.render({ messages, add_generation_prompt: true, bos_token: t.bosString ?? "", eos_token: t.eosString ?? "" });
  }

  async ask(user: string, o: TurnOptions): Promise<GenerateResult> {
    const capacity = this.contextSize;
    const reserve = Math.min(o.maxTokens, Math.floor(capacity / 2));
    const next = (): Token[] => this.model.tokenize(this.render([...this.messages, { role: "user", content: user }]), true);
    let prompt = next();
    const dropped = dropOldestTurns(this.messages, () => prompt.length + reserve <= capacity, () => { prompt = next(); });
    checkFits(prompt.length, capacity, this.messages[0]?.role === "system");
    if (dropped > 0) o.onDropped?.(dropped);
    const r = await this.run(prompt, o);
    this.messages.push({ role: "user", content: user }, { role: "assistant", content: r.text });
    return r;
  }

  /** Continue plain text (the model's BOS first when it wants one), as `chat --raw`. */
  async complete(text: string, o: TurnOptions): Promise<GenerateResult> {
    const bos = this.model.tokens.bos;
    const prompt = [...(bos !== null && this.model.tokens.shouldPrependBosToken ? [bos] : []), ...this.model.tokenize(text, false)];
    checkFits(prompt.length, this.contextSize, false);
    return this.run(prompt, o);
  }

  private async run(prompt: Token[], o: TurnOptions): Promise<GenerateResult> {
    const s = o.sampler;
    await this.sequence.clearHistory();
    const context: Token[] = [...prompt]; // what the penalties look back over
    const penalties = s.repetitionPenalty !== 1 || s.frequencyPenalty !== 0 || s.presencePenalty !== 0;
    const model = this.model;
    const decoder = new IncrementalDecoder({ decode: (ids, d) => model.detokenize(ids as Token[], !(d.skipSpecial ?? false)) });
    const stop = new StopMatcher(o.stopStrings ?? []);
    const ids: number[] = [];
    let text = "";
    const emit = (d: string): void => { if (d.length > 0) { text += d; o.onText?.(d); } };
    let endId: number | null = null;
    let finishReason: FinishReason = "length";
    const maxTokens = Math.min(o.maxTokens, this.contextSize - prompt.length);
    const t0 = performance.now();
    let t1 = t0;
    for await (const t of this.sequence.evaluate(prompt, {
      temperature: s.temperature, topK: s.topK, topP: s.topP, minP: s.minP, seed: s.seed, yieldEogToken: true,
      ...(penalties && s.penaltyLastN > 0 ? {
        repeatPenalty: {
          punishTokens: () => context.slice(-s.penaltyLastN), maxPunishTokens: s.penaltyLastN,
          penalty: s.repetitionPenalty, frequencyPenalty: s.frequencyPenalty, presencePenalty: s.presencePenalty,
        },
      } : {}),
    })) {
      if (ids.length === 0 && endId === null) t1 = performance.now();
      if (o.signal?.aborted) { finishReason = "cancelled"; break; }
      if (!o.ignoreEos && (o.stopIds?.includes(t) ?? model.isEogToken(t))) { endId = t; finishReason = "stop"; break; }
      ids.push(t);
      context.push(t);
      emit(stop.push(decoder.push(t)));
      if (stop.stopped) { finishReason = "stop"; break; }
      if (ids.length >= maxTokens) break;
    }
    if (!stop.stopped) emit(stop.push(decoder.flush()) + stop.flush());
    return {
      text, ids, endId, finishReason,
      stats: {
        promptTokens: prompt.length, reusedTokens: 0, prefillTokens: prompt.length, prefillMs: t1 - t0,
        generatedTokens: ids.length, decodeSteps: Math.max(0, ids.length - 1), decodeMs: performance.now() - t1,
      },
    };
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }
}

/** Flags our engine has and llama.cpp has no counterpart for: refused, not ignored. */
const NATIVE_ONLY = ["backend", "device", "kv"] as const;

export async function runLlamaCppChat(
  path: string, values: Record<string, unknown>, common: Pick<TurnOptions, "maxTokens" | "sampler" | "stopStrings" | "ignoreEos">,
): Promise<number> {
  for (const f of NATIVE_ONLY) {
    if (values[f] !== undefined) {
      throw new UsageError(`--${f} does not apply to --engine llama.cpp`, { field: `--${f}`, found: String(values[f]), hint: `drop --${f}, or use --engine native` });
    }
  }
  const threads = intFlag("threads", values["threads"] as string | undefined, 1);
  const { file, cleanup } = await ggufFor(path, (s) => process.stderr.write(s));
  try {
    const chat = await LlamaCppChat.open({ modelPath: file, threads, ...(typeof values["system"] === "string" ? { system: values["system"] } : {}) });
    process.stderr.write(`kernel path: llama.cpp (node-llama-cpp, CPU, ${threads} thread${threads === 1 ? "" : "s"})\n`);
    try {
      const turn: TurnOptions = {
        ...common, onText: (d) => { process.stdout.write(d); },
        onDropped: (n) => process.stderr.write(`(context full: dropped the ${n} oldest turn${n === 1 ? "" : "s"}; the system prompt is kept)\n`),
      };
      const prompt = values["prompt"];
      if (typeof prompt !== "string") return await repl(chat, turn, path);
      const ac = new AbortController();
      const stop = (): void => ac.abort();
      process.once("SIGINT", stop);
      try {
        const r = values["raw"] ? await chat.complete(prompt, { ...turn, signal: ac.signal }) : await chat.ask(prompt, { ...turn, signal: ac.signal });
        process.stdout.write("\n");
        if (values["json"]) process.stdout.write(`${JSON.stringify(runFigures(r.stats, r.finishReason, "llama.cpp"))}\n`);
        else process.stderr.write(`${speedLine(r.stats)}\n`);
        return r.finishReason === "cancelled" ? 130 : 0;
      } finally {
        process.off("SIGINT", stop);
      }
    } finally {
      await chat.dispose();
    }
  } finally {
    cleanup();
  }
}

export interface ChatLlamaCppOptions extends LlamaCppOpenOptions {
  /** One message to answer (required; optional only so that a bad model path is reported first). */
  prompt?: string;
  maxTokens: number;
  /** 0 = greedy. */
  temperature: number;
  seed: number;
  /** Where tokens stream (default process.stdout). */
  out?: { write(s: string): unknown };
}

/** One answer through llama.cpp with the GGUF's chat template (a library entry point). */
export async function chatWithLlamaCpp(o: ChatLlamaCppOptions): Promise<{ answers: string[]; template: string }> {
  const chat = await LlamaCppChat.open(o);
  try {
    if (o.prompt === undefined) throw new UsageError("chatWithLlamaCpp needs a prompt", { field: "prompt", expected: "a message", found: "none" });
    const out = o.out ?? process.stdout;
    const r = await chat.ask(o.prompt, {
      maxTokens: o.maxTokens, sampler: samplerOptions({ temperature: o.temperature, topK: 40, topP: 0.95, seed: o.seed }), onText: (d) => { out.write(d); },
    });
    out.write("\n");
    return { answers: [r.text], template: "jinja" };
  } finally {
    await chat.dispose();
  }
}

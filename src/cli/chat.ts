/** `quantize-llm chat [model]`: a local chat on our engine (or llama.cpp), streaming, multi-turn. */
import { selectBackend } from "../backend/select.ts";
import { Conversation, endOfTurnIds, type TurnOptions } from "../generate/conversation.ts";
import { generate, Session, type GenerateResult } from "../generate/engine.ts";
import { runFigures, speedLine } from "../generate/report.ts";
import { resolveModelArg } from "../load/paths.ts";
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { UsageError } from "../util/errors.ts";
import { choiceFlag, intFlag, onePositional, parseFlags } from "./args.ts";
import { SAMPLER_FLAG_SPECS, SAMPLER_USAGE, samplerFromFlags } from "./chat-flags.ts";
import { runLlamaCppChat } from "./chat-llamacpp.ts";
import { repl } from "./chat-repl.ts";
import type { Command } from "./command.ts";
import { DEVICE_USAGE, deviceFlag, KV_USAGE, kvFlag, loadOnDevice, WEIGHTS16_USAGE, weights16Flag } from "./device.ts";

const usage = `usage: quantize-llm chat [model] [options]

Chat with a model on the CPU or the GPU (HF, HF-GPTQ or AWQ folder, or .gguf). With no model, uses the bundled model.
Interactive: /reset starts over, /exit (or Ctrl-D) quits, Ctrl-C stops an answer (twice: quits).

  --engine E            native (default) | llama.cpp (a .gguf through node-llama-cpp, an optional
                        dependency: npm install node-llama-cpp)
  --prompt TEXT         answer one message and exit (non-interactive)
  --raw                 with --prompt: continue TEXT as plain text, without the chat template
  --system TEXT         system message (kept when old turns are dropped to make room)
  --max-tokens N        tokens per answer (default 128)
  --stop TEXT           stop when the answer contains TEXT (repeatable)
  --ignore-eos          do not stop at end-of-turn tokens (fixed-length timing)
  --json                with --prompt: print the run's figures as a JSON last line
${DEVICE_USAGE}${WEIGHTS16_USAGE}${KV_USAGE}${SAMPLER_USAGE}  --threads N, --backend auto|native|ref
`;

export const chatCommand: Command = {
  name: "chat",
  summary: "chat with a model locally (streaming; --prompt for one answer)",
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags("chat", argv, {
      prompt: { type: "string" }, raw: { type: "boolean" }, system: { type: "string" }, "max-tokens": { type: "string" },
      stop: { type: "string", multiple: true }, "ignore-eos": { type: "boolean" }, json: { type: "boolean" },
      threads: { type: "string" }, backend: { type: "string" }, device: { type: "string" }, weights16: { type: "string" }, kv: { type: "string" }, engine: { type: "string" }, help: { type: "boolean", short: "h" },
      ...SAMPLER_FLAG_SPECS,
    });
    if (values.help) { process.stdout.write(usage); return 0; }
    const path = resolveModelArg(onePositional("chat", positionals));
    if (values.raw && values.prompt === undefined) {
      throw new UsageError("--raw needs --prompt", { field: "--raw", expected: "--prompt TEXT to continue", found: "no --prompt", hint: 'quantize-llm chat --raw --prompt "Once upon a time"' });
    }
    const engine = choiceFlag("engine", values.engine, ["native", "llama.cpp"] as const, "native");
    const sampler = samplerFromFlags(values);
    const maxTokens = intFlag("max-tokens", values["max-tokens"], 128);
    const common = { maxTokens, sampler, stopStrings: values.stop ?? [], ignoreEos: values["ignore-eos"] ?? false };
    if (engine === "llama.cpp") return runLlamaCppChat(path, values, common);

    const backend = selectBackend({
      backend: choiceFlag("backend", values.backend, ["auto", "native", "ref"] as const, "auto"),
      ...(values.threads !== undefined ? { threads: intFlag("threads", values.threads, 1) } : {}),
    });
    const loaded = await loadOnDevice(path, deviceFlag(values.device), backend, { weights16: weights16Flag(values.weights16) });
    const { tokenizer } = loaded;
    let session: Session;
    try {
      session = new Session(loaded.device === "gpu" ? loaded.gpu : loaded.model, undefined, kvFlag(values.kv));
    } catch (e) {
      if (loaded.device === "gpu") loaded.gpu.destroy();
      throw e;
    }
    const kernels = `${loaded.kernels}; KV cache ${session.kv}`;
    process.stderr.write(`kernel path: ${kernels}\n`);
    try {
      return await converse(session, tokenizer, kernels, path, values, common);
    } finally {
      if (loaded.device === "gpu") loaded.gpu.destroy();
    }
  },
};

async function converse(
  session: Session, tokenizer: TextTokenizer, kernels: string, path: string,
  values: { prompt?: string | undefined; raw?: boolean | undefined; json?: boolean | undefined; system?: string | undefined },
  common: Omit<TurnOptions, "onText" | "onDropped">,
): Promise<number> {
  const conv = new Conversation(session, tokenizer, values.system);
  const out = process.stdout;
  const turn: TurnOptions = {
    ...common, onText: (d) => { out.write(d); },
    onDropped: (n) => process.stderr.write(`(context full: dropped the ${n} oldest turn${n === 1 ? "" : "s"}; the system prompt is kept)\n`),
  };

  if (values.prompt !== undefined) {
    const ac = new AbortController();
    const stop = (): void => ac.abort();
    process.once("SIGINT", stop);
    let r: GenerateResult;
    try {
      r = values.raw
        ? await generate(session, tokenizer, { ...turn, prompt: tokenizer.encode(values.prompt, { addSpecial: true }), stopIds: endOfTurnIds(tokenizer), signal: ac.signal })
        : await conv.ask(values.prompt, { ...turn, signal: ac.signal });
    } finally {
      process.off("SIGINT", stop);
    }
    out.write("\n");
    if (values.json) out.write(`${JSON.stringify(runFigures(r.stats, r.finishReason, kernels))}\n`);
    else process.stderr.write(`${speedLine(r.stats)}\n`);
    return r.finishReason === "cancelled" ? 130 : 0;
  }
  return repl(conv, turn, path);
}

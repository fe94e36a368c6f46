/** `quantize-llm chat [model]`: a local chat on the model's weights with its chat template. */
import { createInterface } from "node:readline/promises";
import { selectBackend } from "../backend/select.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportGguf } from "../export/gguf.ts";
import { exportQuantizedGguf } from "../export/gguf-quant.ts";
import { loadModel, readModelConfig } from "../load/hf-folder.ts";
import { readQuantizationConfig } from "../load/gptq-source.ts";
import { readAwqLegacyConfig } from "../load/awq-source.ts";
import { chatWithLlamaCpp } from "./chat-llamacpp.ts";
import { resolveModelArg } from "../load/paths.ts";
import { generate } from "../nn/generate.ts";
import type { ChatMessage } from "../tokenizer/tokenizer.ts";
import { choiceFlag, intFlag, onePositional, parseFlags } from "./args.ts";
import type { Command } from "./command.ts";

const usage = `usage: quantize-llm chat [model] [options]

Chat with a model on the CPU (HF, HF-GPTQ or AWQ folder, or .gguf). With no model, uses the bundled model.

  --engine E            native (default) | llama.cpp (a .gguf through node-llama-cpp, an optional
                        dependency: npm install node-llama-cpp)
  --prompt TEXT         answer one message and exit (non-interactive)
  --raw                 continue TEXT as plain text, without the chat template
  --system TEXT         system message
  --max-tokens N        tokens per answer (default 128)
  --temperature T       0 = greedy (default 0.7)
  --top-k N             (default 40)
  --top-p P             (default 0.95)
  --seed N              sampling seed (default 0)
  --threads N, --backend auto|native|ref
`;

export const chatCommand: Command = {
  name: "chat",
  summary: "chat with a model locally (streaming; --prompt for one answer)",
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags("chat", argv, {
      prompt: { type: "string" }, raw: { type: "boolean" }, system: { type: "string" },
      "max-tokens": { type: "string" }, temperature: { type: "string" }, "top-k": { type: "string" },
      "top-p": { type: "string" }, seed: { type: "string" }, threads: { type: "string" },
      backend: { type: "string" }, engine: { type: "string" }, help: { type: "boolean", short: "h" },
    });
    if (values.help) { process.stdout.write(usage); return 0; }
    const dir = resolveModelArg(onePositional("chat", positionals));
    const backend = selectBackend({
      backend: choiceFlag("backend", values.backend, ["auto", "native", "ref"] as const, "auto"),
      ...(values.threads !== undefined ? { threads: intFlag("threads", values.threads, 1) } : {}),
    });
    const engine = choiceFlag("engine", values.engine, ["native", "llama.cpp"] as const, "native");
    const maxTokens = intFlag("max-tokens", values["max-tokens"], 128);
    const temperature = values.temperature !== undefined ? Number(values.temperature) : 0.7;
    if (engine === "llama.cpp") {
      let modelPath = dir;
      let tmp: string | null = null;
      if (!dir.toLowerCase().endsWith(".gguf")) {
        // A model folder: convert it to a temporary GGUF (exact for quantized folders whose grid maps).
        readModelConfig(dir);
        tmp = mkdtempSync(join(tmpdir(), "qllm-chat-"));
        modelPath = join(tmp, "model.gguf");
        process.stderr.write(`converting ${dir} to GGUF for llama.cpp (quantize-llm export does this once and keeps the file)\n`);
        if (readQuantizationConfig(dir, readModelConfig(dir).raw) ?? readAwqLegacyConfig(dir)) await exportQuantizedGguf(dir, modelPath, {});
        else await exportGguf(dir, modelPath, { type: "f16" });
      }
      try {
        await chatWithLlamaCpp({
          modelPath, maxTokens, temperature: Number.isFinite(temperature) ? temperature : 0.7, seed: intFlag("seed", values.seed, 0, 0),
        threads: values.threads !== undefined ? intFlag("threads", values.threads, 1) : 1,
          ...(values.prompt !== undefined ? { prompt: values.prompt } : {}), ...(values.system !== undefined ? { system: values.system } : {}),
        });
      } finally {
        if (tmp) rmSync(tmp, { recursive: true, force: true });
      }
      return 0;
    }
    const { cfg, tokenizer, model } = await loadModel(dir, backend);
    const sampling = {
      temperature: Number.isFinite(temperature) ? temperature : 0.7,
      topK: intFlag("top-k", values["top-k"], 40),
      topP: values["top-p"] !== undefined ? Number(values["top-p"]) : 0.95,
      seed: intFlag("seed", values.seed, 0, 0),
    };
    const stopIds = [...tokenizer.eosIds, ...["<|im_end|>", "<|eot_id|>"].map((t) => tokenizer.tokenToId(t)).filter((x): x is number => x !== undefined)];

    // Like transformers' apply_chat_template: a rendered template already holds its special tokens.
    const answer = (prompt: string, addSpecial = false): string => {
      const ids = tokenizer.encode(prompt, { addSpecial });
      const room = cfg.maxPositionEmbeddings - ids.length;
      const out: number[] = [];
      let printed = "";
      generate(model, ids.slice(-cfg.maxPositionEmbeddings + 1), {
        ...sampling, maxTokens: Math.max(1, Math.min(maxTokens, room)), stopIds,
        onToken: (id) => {
          out.push(id);
          const text = tokenizer.decode(out, { skipSpecial: true });
          process.stdout.write(text.slice(printed.length));
          printed = text;
        },
      });
      process.stdout.write("\n");
      return printed;
    };

    const history: ChatMessage[] = values.system !== undefined ? [{ role: "system", content: values.system }] : [];
    const render = (): string => tokenizer.applyChatTemplate(history, true);
    if (values.prompt !== undefined) {
      if (values.raw) { answer(values.prompt, true); return 0; }
      history.push({ role: "user", content: values.prompt });
      answer(render());
      return 0;
    }
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    process.stdout.write(`chat with ${dir} (empty line or Ctrl-D to quit)\n`);
    for (;;) {
      let line: string;
      try { line = await rl.question("> "); } catch { break; }
      if (line.trim() === "") break;
      history.push({ role: "user", content: line });
      const reply = answer(render());
      history.push({ role: "assistant", content: reply });
    }
    rl.close();
    return 0;
  },
};

/** `quantize-llm chat [model]`: a local chat on the model's weights with its chat template. */
import { createInterface } from "node:readline/promises";
import { selectBackend } from "../backend/select.ts";
import { loadHfModel } from "../load/hf-folder.ts";
import { resolveModelArg } from "../load/paths.ts";
import { generate } from "../nn/generate.ts";
import type { ChatMessage } from "../tokenizer/tokenizer.ts";
import { choiceFlag, intFlag, onePositional, parseFlags } from "./args.ts";
import type { Command } from "./command.ts";

const usage = `usage: quantize-llm chat [model] [options]

Chat with a model on the CPU. With no model, uses the bundled model.

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
      backend: { type: "string" }, help: { type: "boolean", short: "h" },
    });
    if (values.help) { process.stdout.write(usage); return 0; }
    const dir = resolveModelArg(onePositional("chat", positionals));
    const backend = selectBackend({
      backend: choiceFlag("backend", values.backend, ["auto", "native", "ref"] as const, "auto"),
      ...(values.threads !== undefined ? { threads: intFlag("threads", values.threads, 1) } : {}),
    });
    const { cfg, tokenizer, model } = await loadHfModel(dir, backend);
    const maxTokens = intFlag("max-tokens", values["max-tokens"], 128);
    const temperature = values.temperature !== undefined ? Number(values.temperature) : 0.7;
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

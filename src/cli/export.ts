/** `quantize-llm export [model] --format gguf --type f32|f16 -o FILE`: convert a HF folder to GGUF. */
import { existsSync, statSync } from "node:fs";
import { basename, dirname, relative, resolve } from "node:path";
import { exportGguf } from "../export/gguf.ts";
import { resolveModelArg } from "../load/paths.ts";
import { UsageError } from "../util/errors.ts";
import { Progress } from "../util/progress.ts";
import { choiceFlag, onePositional, parseFlags } from "./args.ts";
import type { Command } from "./command.ts";

const FORMATS = ["gguf"] as const;
const TYPES = ["f32", "f16"] as const;

const usage = `usage: quantize-llm export [model] --format gguf [options]

Convert a plain Hugging Face model folder (llama, mistral, qwen2; byte-level BPE
tokenizer) to a single GGUF file for llama.cpp, node-llama-cpp, Ollama or LM Studio.
With no model, exports the bundled model (models/qllm-tiny).

  --format F            output format: gguf (required)
  --type T              f32 | f16 for the 2-D weights; norms and biases stay f32 (default f16)
  -o, --output FILE     output file (default: <model folder name>-<type>.gguf)
  --name NAME           general.name written in the file (default: the model folder name)
  --force               overwrite FILE if it exists
`;

export const exportCommand: Command = {
  name: "export",
  summary: "convert a model folder to GGUF (f32 or f16) for llama.cpp",
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags("export", argv, {
      format: { type: "string" }, type: { type: "string" }, output: { type: "string", short: "o" },
      name: { type: "string" }, force: { type: "boolean" }, help: { type: "boolean", short: "h" },
    });
    if (values.help) { process.stdout.write(usage); return 0; }
    const dir = resolveModelArg(onePositional("export", positionals));
    if (values.format === undefined) {
      throw new UsageError("missing --format", { field: "--format", expected: FORMATS.join(" | "), found: "nothing", hint: "e.g. quantize-llm export --format gguf -o model.gguf" });
    }
    choiceFlag("format", values.format, FORMATS, "gguf");
    const type = choiceFlag("type", values.type, TYPES, "f16");
    const out = resolve(values.output ?? `${basename(dir)}-${type}.gguf`);
    if (!existsSync(dirname(out)) || !statSync(dirname(out)).isDirectory()) {
      throw new UsageError("output folder does not exist", { file: dirname(out), field: "--output", hint: "create the folder first, or pass another -o FILE" });
    }
    if (existsSync(out) && values.force !== true) {
      throw new UsageError("output file already exists", { file: out, field: "--output", hint: "pass --force to overwrite it, or choose another -o FILE" });
    }

    const t0 = performance.now();
    const progress = new Progress("export", { stream: process.stderr });
    const r = await exportGguf(dir, out, {
      type, ...(values.name !== undefined ? { name: values.name } : {}),
      onTensor: (done, total, name) => progress.update(done, total, name),
    });
    progress.done();
    for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
    const seconds = (performance.now() - t0) / 1000;
    process.stdout.write([
      `wrote:      ${relative(process.cwd(), r.path) || r.path}`,
      `size:       ${(r.bytes / 2 ** 20).toFixed(2)} MiB (${r.bytes} bytes)`,
      `tensors:    ${r.tensorCount} (${type === "f16" ? "2-D weights f16" : "all f32"}, norms and biases f32), ${r.kvCount} metadata keys`,
      `model:      GGUF arch ${r.architecture}, tokenizer gpt2 / pre "${r.pre}"`,
      `time:       ${seconds.toFixed(2)} s`,
      "",
    ].join("\n"));
    return 0;
  },
};

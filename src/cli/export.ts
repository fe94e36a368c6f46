/**
 * `quantize-llm export [model] --format gguf [--type T] -o FILE`: convert a HF folder (plain,
 * HF-GPTQ or AutoAWQ GEMM) to GGUF. f32/f16 of a plain folder: export/gguf.ts; everything
 * quantized: export/gguf-quant.ts.
 */
import { basename, relative, resolve } from "node:path";
import { exportGguf } from "../export/gguf.ts";
import { exportQuantizedGguf, GGUF_QUANT_TYPES, GGUF_TENSOR_TYPES, type GgufTensorType } from "../export/gguf-quant.ts";
import { readQuantizationConfig } from "../load/gptq-source.ts";
import { readAwqLegacyConfig } from "../load/awq-source.ts";
import { readModelConfig } from "../load/hf-folder.ts";
import { resolveModelArg } from "../load/paths.ts";
import { UsageError } from "../util/errors.ts";
import { checkOutputTarget } from "../util/output-target.ts";
import { Progress } from "../util/progress.ts";
import { choiceFlag, onePositional, parseFlags } from "./args.ts";
import type { Command } from "./command.ts";

const FORMATS = ["gguf"] as const;

const usage = `usage: quantize-llm export [model] --format gguf [options]

Convert a Hugging Face model folder (llama, mistral, qwen2; byte-level BPE or SentencePiece-
style byte-fallback BPE tokenizer, written as llama.cpp's gpt2 or llama vocabulary) to
a single GGUF file for llama.cpp, node-llama-cpp, Ollama or LM Studio. With no model,
exports the bundled model (models/qllm-tiny).

A GPTQ/AWQ folder (from quantize-llm gptq/awq/awq+gptq) keeps its own codes when its grid
is a GGUF block type: 4-bit --sym --group-size 32 without --act-order → Q4_0 (exact),
4-bit asymmetric (AWQ) group 32 → Q4_1 (exact up to the f16 rounding of m, reported),
8-bit --sym group 32 → Q8_0 (exact). Other grids are re-quantized (--requant-type) with a
warning giving the measured error.

  --format F            output format: gguf (required)
  --type T              plain folders: f32 | f16 | q8_0 | q4_0 | q4_1 | q4_k_m (llama.cpp reference
                        round-to-nearest; q4_k_m = Q4_K with Q6_K for attn_v/ffn_down of the
                        layers llama.cpp gives more bits, as its Q4_K_M mix) (default f16)
  --embed-type T        token_embd type: q8_0 | q4_0 | q4_1 | q4_k | q6_k | f16 | f32
                        (default q8_0; q4_k with --type q4_k_m)
  --head-type T         output.weight type, same choices (default q8_0; q6_k with --type q4_k_m)
  --requant-type T      quantized folders: type for layers whose grid maps to no block type (default q4_k)
  --exact               quantized folders: fail instead of re-quantizing any layer
  -o, --output FILE     output file (default: <model folder name>-<type>.gguf)
  --name NAME           general.name written in the file (default: the model folder name)
  --overwrite, --force  replace FILE if it exists (a folder at that path is never replaced)
`;

export const exportCommand: Command = {
  name: "export",
  summary: "convert a model folder (plain, GPTQ or AWQ) to GGUF for llama.cpp: f32, f16, q8_0, q4_0, q4_1, q4_k_m",
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags("export", argv, {
      format: { type: "string" }, type: { type: "string" }, output: { type: "string", short: "o" },
      name: { type: "string" }, force: { type: "boolean" }, overwrite: { type: "boolean" }, help: { type: "boolean", short: "h" },
      "embed-type": { type: "string" }, "head-type": { type: "string" }, "requant-type": { type: "string" }, exact: { type: "boolean" },
    });
    if (values.help) { process.stdout.write(usage); return 0; }
    const dir = resolveModelArg(onePositional("export", positionals));
    if (values.format === undefined) {
      throw new UsageError("missing --format", { field: "--format", expected: FORMATS.join(" | "), found: "nothing", hint: "e.g. quantize-llm export --format gguf -o model.gguf" });
    }
    choiceFlag("format", values.format, FORMATS, "gguf");
    const cfg = readModelConfig(dir);
    const quantized = readQuantizationConfig(dir, cfg.raw) !== null || readAwqLegacyConfig(dir) !== null;
    const type = values.type === undefined ? undefined : choiceFlag("type", values.type, GGUF_QUANT_TYPES, "f16");
    const tensorType = (flag: string, v: string | undefined): GgufTensorType | undefined => (v === undefined ? undefined : choiceFlag(flag, v, GGUF_TENSOR_TYPES, "q8_0"));
    const embedType = tensorType("embed-type", values["embed-type"]), headType = tensorType("head-type", values["head-type"]);
    const requantType = tensorType("requant-type", values["requant-type"]);
    const plainFloat = !quantized && (type === undefined || type === "f16" || type === "f32") && embedType === undefined && headType === undefined;
    const label = quantized ? "quantized" : type ?? "f16";
    const out = resolve(values.output ?? `${basename(dir)}-${label}.gguf`);
    checkOutputTarget(out, "file", { flag: "-o", overwriteFlag: "--overwrite", overwrite: values.force === true || values.overwrite === true });

    const t0 = performance.now();
    const progress = new Progress("export", { stream: process.stderr });
    const onTensor = (done: number, total: number, name: string): void => progress.update(done, total, name);
    const name = values.name !== undefined ? { name: values.name } : {};
    const lines: string[] = [];
    let warnings: string[];
    if (plainFloat) {
      const ft = type === "f32" ? "f32" : "f16";
      const r = await exportGguf(dir, out, { type: ft, ...name, onTensor });
      warnings = r.warnings;
      lines.push(`wrote:      ${relative(process.cwd(), r.path) || r.path}`, `size:       ${(r.bytes / 2 ** 20).toFixed(2)} MiB (${r.bytes} bytes)`,
        `tensors:    ${r.tensorCount} (${ft === "f16" ? "2-D weights f16" : "all f32"}, norms and biases f32), ${r.kvCount} metadata keys`,
        `model:      GGUF arch ${r.architecture}, tokenizer ${r.pre === "default" ? "llama (SentencePiece, scores + byte fallback)" : `gpt2 / pre "${r.pre}"`}`);
    } else {
      const r = await exportQuantizedGguf(dir, out, {
        ...(type !== undefined ? { type } : {}), ...(embedType !== undefined ? { embedType } : {}), ...(headType !== undefined ? { headType } : {}),
        ...(requantType !== undefined ? { requantType } : {}), ...(values.exact === true ? { exact: true } : {}), ...name, onTensor,
      });
      warnings = r.warnings;
      lines.push(`wrote:      ${relative(process.cwd(), r.path) || r.path}`, `size:       ${(r.bytes / 2 ** 20).toFixed(2)} MiB (${r.bytes} bytes), ${r.bitsPerWeight.toFixed(2)} bits per weight`,
        `tensors:    ${r.tensorCount}: ${Object.entries(r.types).map(([t, n]) => `${n} ${t}`).join(", ")}`,
        `source:     ${r.source}${r.source === "hf" ? "" : `: ${r.exactLayers} layers written with their own codes, ${r.requantizedLayers} re-quantized`}`);
      if (r.maxMRoundingError > 0) lines.push(`Q4_1 m:     max |Δw| from rounding m = −s·z to f16: ${r.maxMRoundingError.toExponential(3)}`);
    }
    progress.done();
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    const seconds = (performance.now() - t0) / 1000;
    process.stdout.write([...lines, `time:       ${seconds.toFixed(2)} s`, ""].join("\n"));
    return 0;
  },
};

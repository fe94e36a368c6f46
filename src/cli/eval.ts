/** `quantize-llm eval [model]`: perplexity with the protocol printed. */
import { relative } from "node:path";
import { withPackedActivations } from "../backend/backend.ts";
import { selectBackend } from "../backend/select.ts";
import { describeKernelPath } from "../load/kernel-path.ts";
import { loadModel, readModelConfig } from "../load/hf-folder.ts";
import { BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR, resolveModelArg } from "../load/paths.ts";
import { perplexity, perplexityAsync, PROTOCOLS, type Protocol } from "../metrics/perplexity.ts";
import { DependencyError, UsageError } from "../util/errors.ts";
import { DEVICE_CHOICES, GpuError, openGpu, type DeviceChoice, type GpuContext } from "../backend/webgpu-device.ts";
import { loadGpuModel } from "../load/webgpu-load.ts";
import { Progress } from "../util/progress.ts";
import { readTextFile } from "../util/text-file.ts";
import { choiceFlag, intFlag, onePositional, parseFlags } from "./args.ts";
import type { Command } from "./command.ts";

const usage = `usage: quantize-llm eval [model] [options]

Perplexity of a model (HF, HF-GPTQ or AWQ folder, or .gguf file) on a text file. With no model, evaluates the bundled model
(models/qllm-tiny) on its held-out split.

  --text FILE           text to score (default: the bundled model's held-out text)
  --protocol P          gptq (papers: all tokens of each window) | llama.cpp
                        (BOS first, second half of each window scored); default gptq
  --ctx N               window length in tokens (default: min(2048 for gptq / 512 for
                        llama.cpp, the model's max_position_embeddings))
  --max-tokens N        score only the first N tokens of the tokenized text
  --threads N           CPU threads (default: QLLM_THREADS or the number of cores)
  --backend B           auto | native | ref (default auto)
  --weights W           packed (runtime int4/int8/16-bit layouts) | f32 (dequantized reference)
                        | auto (default: packed on the native backend, f32 on ref)
  --activations A       packed matmuls: int8 (per block, as llama.cpp; default) | f32 (exact)
  --device D            cpu (default) | gpu (WebGPU: any adapter, software ones included)
                        | auto (a hardware GPU adapter when there is one, else the CPU)
  --json                print one JSON object as the last line of stdout
`;

export const evalCommand: Command = {
  name: "eval",
  summary: "perplexity of a model on a text (bundled model and held-out text by default)",
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags("eval", argv, {
      text: { type: "string" }, protocol: { type: "string" }, ctx: { type: "string" },
      "max-tokens": { type: "string" }, threads: { type: "string" }, backend: { type: "string" },
      weights: { type: "string" }, activations: { type: "string" }, device: { type: "string" },
      json: { type: "boolean" }, help: { type: "boolean", short: "h" },
    });
    if (values.help) { process.stdout.write(usage); return 0; }
    const dir = resolveModelArg(onePositional("eval", positionals));
    if (!dir.toLowerCase().endsWith(".gguf")) readModelConfig(dir); // a missing or bad model folder is the first thing to report
    const protocol = choiceFlag<Protocol>("protocol", values.protocol, PROTOCOLS, "gptq");
    const weights = choiceFlag("weights", values.weights, ["auto", "packed", "f32"] as const, "auto");
    const activations = choiceFlag("activations", values.activations, ["int8", "f32"] as const, "int8");
    const selected = selectBackend({
      backend: choiceFlag("backend", values.backend, ["auto", "native", "ref"] as const, "auto"),
      ...(values.threads !== undefined ? { threads: intFlag("threads", values.threads, 1) } : {}),
    });
    const backend = activations === "int8" ? selected : withPackedActivations(selected, activations);
    const textFile = values.text ?? (dir === BUNDLED_MODEL_DIR ? BUNDLED_EVAL_TEXT : undefined);
    if (textFile === undefined) {
      throw new UsageError("no text to evaluate", {
        field: "--text", expected: "a UTF-8 text file", found: "nothing",
        hint: "only the bundled model has a default held-out text; pass --text FILE (e.g. a WikiText-2 test split)",
      });
    }
    const text = readTextFile(textFile, "--text");

    const gpuCtx = await openDevice(choiceFlag<DeviceChoice>("device", values.device, DEVICE_CHOICES, "cpu"));
    const t0 = performance.now();
    const loaded = gpuCtx !== null ? await loadGpuModel(dir, gpuCtx) : await loadModel(dir, backend, { weights });
    const { cfg, tokenizer } = loaded;
    for (const w of cfg.warnings) process.stderr.write(`warning: ${w}\n`);
    const loadSeconds = (performance.now() - t0) / 1000;
    const ctx = intFlag("ctx", values.ctx, Math.min(protocol === "gptq" ? 2048 : 512, cfg.maxPositionEmbeddings), 2);
    let tokens = tokenizer.encode(text, { addSpecial: true });
    const totalTokens = tokens.length;
    if (values["max-tokens"] !== undefined) tokens = tokens.slice(0, intFlag("max-tokens", values["max-tokens"], 1));

    const progress = new Progress("eval", { stream: process.stderr });
    const pplOpts = { protocol, ctx, bosId: tokenizer.bosId, onWindow: (done: number, total: number, p: number) => progress.update(done, total, `ppl ${p.toFixed(3)}`) };
    const r = "gpu" in loaded ? await perplexityAsync(loaded.gpu, tokens, pplOpts) : perplexity(loaded.model, tokens, pplOpts);
    progress.done();

    const nParams = countParams(cfg);
    const kernels = "gpu" in loaded
      ? `webgpu on ${gpuCtx!.info.description || gpuCtx!.info.device}${gpuCtx!.info.software ? " (software adapter)" : ""}, ` +
        `${gpuCtx!.info.subgroups ? "subgroup" : "workgroup-memory"} reductions, ${loaded.q4Linears} int4 / ${loaded.f16Linears} f16 linears, f32 activations`
      : describeKernelPath(loaded.model, { activations });
    if ("gpu" in loaded) loaded.gpu.destroy();
    const shown = relative(process.cwd(), dir) || ".";
    const lines = [
      `model:      ${shown} (${cfg.modelType}, ${cfg.numLayers} layers, ${(nParams / 1e6).toFixed(2)}M parameters, loaded in ${loadSeconds.toFixed(2)} s)`,
      `text:       ${relative(process.cwd(), textFile)} (${text.length} chars, ${totalTokens} tokens${tokenizer.bosId !== null ? ", BOS once at the start" : ""})`,
      `protocol:   ${r.protocol}, ctx ${r.ctx}, ${r.windows} windows, ${r.tokensScored} tokens scored`,
      `kernels:    ${kernels}`,
      `perplexity: ${r.ppl.toFixed(4)}`,
      `speed:      ${r.tokensPerSecond.toFixed(0)} tokens/s (${r.tokensProcessed} tokens in ${r.seconds.toFixed(2)} s)`,
    ];
    process.stdout.write(lines.join("\n") + "\n");
    if (values.json) {
      process.stdout.write(JSON.stringify({
        model: dir, text: textFile, protocol: r.protocol, ctx: r.ctx, windows: r.windows, tokensScored: r.tokensScored,
        tokensTotal: totalTokens, ppl: r.ppl, nll: r.nll, seconds: r.seconds, tokensPerSecond: r.tokensPerSecond,
        device: gpuCtx !== null ? "gpu" : "cpu", backend: gpuCtx !== null ? "webgpu" : backend.name, threads: backend.threads, kernels,
      }) + "\n");
    }
    return 0;
  },
};

/**
 * --device: null for the CPU; a GPU device for gpu, or for auto when a hardware adapter
 * opens (auto never takes a software one, and says on stderr why it stays on the CPU).
 */
async function openDevice(device: DeviceChoice): Promise<GpuContext | null> {
  if (device === "cpu") return null;
  if (device === "gpu") return openGpu({ choice: "gpu" });
  try {
    return await openGpu({ choice: "auto" });
  } catch (e) {
    if (!(e instanceof GpuError) && !(e instanceof DependencyError)) throw e;
    process.stderr.write(`note: --device auto runs on the CPU: ${e.message.split("\n")[0]}\n`);
    return null;
  }
}

function countParams(cfg: import("../arch/config.ts").ModelConfig): number {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V, numLayers } = cfg;
  const perBlock = H * numHeads * headDim * 2 + 2 * H * numKvHeads * headDim + 3 * H * I + 2 * H;
  return numLayers * perBlock + V * H * (cfg.tieWordEmbeddings ? 1 : 2) + H;
}

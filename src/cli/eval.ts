/** `quantize-llm eval [model]`: perplexity with the protocol printed. */
import { relative } from "node:path";
import { withPackedActivations } from "../backend/backend.ts";
import { selectBackend } from "../backend/select.ts";
import { readModelConfig } from "../load/hf-folder.ts";
import { BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR, resolveModelArg } from "../load/paths.ts";
import { perplexity, perplexityAsync, PROTOCOLS, type Protocol } from "../metrics/perplexity.ts";
import type { KvDType } from "../nn/model.ts";
import { UsageError } from "../util/errors.ts";
import { Progress } from "../util/progress.ts";
import { readTextFile } from "../util/text-file.ts";
import { choiceFlag, intFlag, onePositional, parseFlags } from "./args.ts";
import type { Command } from "./command.ts";
import { DEVICE_USAGE, deviceFlag, loadOnDevice, WEIGHTS16_USAGE, weights16Flag } from "./device.ts";

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
${DEVICE_USAGE}${WEIGHTS16_USAGE}  --kv T                KV cache element type: f32 (default here: perplexities stay comparable with
                        earlier ones) | f16 (chat's and serve's CPU default; CPU only)
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
      weights: { type: "string" }, activations: { type: "string" }, device: { type: "string" }, weights16: { type: "string" }, kv: { type: "string" },
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

    const device = deviceFlag(values.device);
    const kv = choiceFlag<KvDType>("kv", values.kv, ["f32", "f16"], "f32");
    const t0 = performance.now();
    const loaded = await loadOnDevice(dir, device, backend, { weights, weights16: weights16Flag(values.weights16), activations });
    const { cfg, tokenizer } = loaded;
    for (const w of cfg.warnings) process.stderr.write(`warning: ${w}\n`);
    const loadSeconds = (performance.now() - t0) / 1000;
    const ctx = intFlag("ctx", values.ctx, Math.min(protocol === "gptq" ? 2048 : 512, cfg.maxPositionEmbeddings), 2);
    let tokens = tokenizer.encode(text, { addSpecial: true });
    const totalTokens = tokens.length;
    if (values["max-tokens"] !== undefined) tokens = tokens.slice(0, intFlag("max-tokens", values["max-tokens"], 1));

    const progress = new Progress("eval", { stream: process.stderr });
    const pplOpts = { protocol, ctx, bosId: tokenizer.bosId, kv, onWindow: (done: number, total: number, p: number) => progress.update(done, total, `ppl ${p.toFixed(3)}`) };
    const r = loaded.device === "gpu" ? await perplexityAsync(loaded.gpu, tokens, pplOpts) : perplexity(loaded.model, tokens, pplOpts);
    progress.done();

    const nParams = countParams(cfg);
    const { kernels } = loaded;
    if (loaded.device === "gpu") loaded.gpu.destroy();
    const shown = relative(process.cwd(), dir) || ".";
    const lines = [
      `model:      ${shown} (${cfg.modelType}, ${cfg.numLayers} layers, ${(nParams / 1e6).toFixed(2)}M parameters, loaded in ${loadSeconds.toFixed(2)} s)`,
      `text:       ${relative(process.cwd(), textFile)} (${text.length} chars, ${totalTokens} tokens${tokenizer.bosId !== null ? ", BOS once at the start" : ""})`,
      `protocol:   ${r.protocol}, ctx ${r.ctx}, ${r.windows} windows, ${r.tokensScored} tokens scored`,
      `kernels:    ${kernels}; KV cache ${kv}`,
      `perplexity: ${r.ppl.toFixed(4)}`,
      `speed:      ${r.tokensPerSecond.toFixed(0)} tokens/s (${r.tokensProcessed} tokens in ${r.seconds.toFixed(2)} s)`,
    ];
    process.stdout.write(lines.join("\n") + "\n");
    if (values.json) {
      process.stdout.write(JSON.stringify({
        model: dir, text: textFile, protocol: r.protocol, ctx: r.ctx, windows: r.windows, tokensScored: r.tokensScored,
        tokensTotal: totalTokens, ppl: r.ppl, nll: r.nll, seconds: r.seconds, tokensPerSecond: r.tokensPerSecond,
        device: loaded.device, backend: loaded.device === "gpu" ? "webgpu" : backend.name, threads: backend.threads, kernels, kv,
      }) + "\n");
    }
    return 0;
  },
};

function countParams(cfg: import("../arch/config.ts").ModelConfig): number {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V, numLayers } = cfg;
  const perBlock = H * numHeads * headDim * 2 + 2 * H * numKvHeads * headDim + 3 * H * I + 2 * H;
  return numLayers * perBlock + V * H * (cfg.tieWordEmbeddings ? 1 : 2) + H;
}

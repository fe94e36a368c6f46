/**
 * `quantize-llm int8 [model]`: LLM.int8() into a bitsandbytes 8-bit folder that
 * transformers loads with load_in_8bit, with the per-layer outlier report and the
 * perplexity before/after.
 */
import { existsSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { selectBackend } from "../backend/select.ts";
import { readModelConfig } from "../load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR, resolveModelArg } from "../load/paths.ts";
import { BNB_DEFAULT_THRESHOLD } from "../pack/bnb-int8.ts";
import { formatOutlierTable } from "../methods/int8-outliers.ts";
import { quantizeInt8, type Int8Event, type Int8Settings } from "../quantize/int8-pipeline.ts";
import { UsageError } from "../util/errors.ts";
import { Progress } from "../util/progress.ts";
import { choiceFlag, intFlag, onePositional, parseFlags } from "./args.ts";
import { evalPpl } from "./quantize.ts";
import type { Command } from "./command.ts";

const usage = `usage: quantize-llm int8 [model] [options]

LLM.int8(): per-row absmax int8 weights, activations quantized per token at run time, and
input features with |x| ≥ threshold computed in f32 (the mixed-precision decomposition).
Writes a bitsandbytes 8-bit folder (transformers: load_in_8bit). With no model, quantizes
the bundled model.

  -o, --out DIR           output folder (default ./<model>-int8)
  --threshold T           outlier threshold, llm_int8_threshold (default ${BNB_DEFAULT_THRESHOLD}; 0 = plain dynamic int8)
  --static-outliers       fix the outlier columns from calibration (int8-outliers.json) instead of
                          detecting them per batch at run time
  --skip-modules A,B      module names kept unquantized (llm_int8_skip_modules; lm_head is, unless --quantize-lm-head)
  --quantize-lm-head      quantize lm_head too: written as int8 with an explicit llm_int8_skip_modules (the given
                          list, else []) that leaves it out, as transformers/bitsandbytes need to convert it
  --calib-text FILE       text for the outlier report (default: the bundled model's calibration split)
  --calib-samples N       windows (default 32; 0 = no outlier report)
  --calib-seqlen N        tokens per window (default min(512, context))
  --seed N                calibration sampling seed (default 0)
  --overwrite             replace an existing output folder
  --max-shard-size N      shard size limit in MB (default 4096)
  --eval-text FILE        text for the perplexity before/after (default: the bundled model's held-out text)
  --eval-max-tokens N     score only the first N tokens of it
  --no-eval               skip the perplexity before/after
  --threads N, --backend auto|native|ref
  --json                  print one JSON summary as the last line of stdout
`;

export const int8Command: Command = {
  name: "int8",
  summary: "quantize with LLM.int8() into a bitsandbytes 8-bit folder (outlier features in f32)",
  usage,
  async run(argv) {
    const { values: v, positionals } = parseFlags("int8", argv, {
      out: { type: "string", short: "o" }, threshold: { type: "string" }, "static-outliers": { type: "boolean" },
      "skip-modules": { type: "string" }, "quantize-lm-head": { type: "boolean" }, "calib-text": { type: "string" }, "calib-samples": { type: "string" },
      "calib-seqlen": { type: "string" }, seed: { type: "string" }, overwrite: { type: "boolean" },
      "max-shard-size": { type: "string" }, "eval-text": { type: "string" }, "eval-max-tokens": { type: "string" },
      "no-eval": { type: "boolean" }, threads: { type: "string" }, backend: { type: "string" },
      json: { type: "boolean" }, help: { type: "boolean", short: "h" },
    });
    if (v.help) { process.stdout.write(usage); return 0; }
    const modelDir = resolveModelArg(onePositional("int8", positionals));
    const maxPos = readModelConfig(modelDir).maxPositionEmbeddings; // a bad model folder is reported first
    const threshold = v.threshold !== undefined ? Number(v.threshold) : BNB_DEFAULT_THRESHOLD;
    if (v.threshold !== undefined && (v.threshold.trim() === "" || !Number.isFinite(threshold))) {
      throw new UsageError("invalid value for --threshold", { field: "--threshold", expected: "a number ≥ 0 such as 6.0", found: JSON.stringify(v.threshold) });
    }
    const bundled = modelDir === BUNDLED_MODEL_DIR;
    const calibSamples = intFlag("calib-samples", v["calib-samples"], 32, 0);
    const calibText = v["calib-text"] !== undefined ? resolve(v["calib-text"]) : bundled ? BUNDLED_CALIB_TEXT : null;
    if (calibText !== null && calibSamples > 0 && !existsSync(calibText)) throw new UsageError("calibration text not found", { file: calibText, field: "--calib-text" });
    const skip = v["skip-modules"]?.split(",").map((s) => s.trim()).filter((s) => s !== "") ?? null;
    const settings: Int8Settings = {
      threshold, staticOutliers: v["static-outliers"] === true, skipModules: skip && skip.length ? skip : null,
      calibSamples: calibText === null && v["calib-samples"] === undefined ? 0 : calibSamples,
      calibSeqlen: intFlag("calib-seqlen", v["calib-seqlen"], Math.min(512, maxPos)),
      calibSeed: intFlag("seed", v.seed, 0, 0), calibText,
      ...(v["quantize-lm-head"] === true ? { quantizeLmHead: true } : {}),
    };
    const backend = selectBackend({
      backend: choiceFlag("backend", v.backend, ["auto", "native", "ref"] as const, "auto"),
      ...(v.threads !== undefined ? { threads: intFlag("threads", v.threads, 1) } : {}),
    });
    const outDir = resolve(v.out ?? `${basename(modelDir)}-int8`);
    const progress = new Progress("int8", { stream: process.stderr });
    const log = (e: Int8Event): void => {
      if (e.type === "calibrated") process.stderr.write(`calibration: ${e.samples} windows × ${e.seqlen} tokens from ${relative(process.cwd(), calibText ?? "")}\n`);
      if (e.type === "block") progress.update(e.block + 1, e.blocks, `block ${e.block + 1}/${e.blocks}`);
      if (e.type === "writing") { progress.done(); process.stderr.write("writing int8 weights...\n"); }
    };
    const result = await quantizeInt8({
      modelDir, outDir, settings, backend, overwrite: v.overwrite === true,
      maxShardBytes: intFlag("max-shard-size", v["max-shard-size"], 4096) * 2 ** 20, onEvent: log,
    });
    if (result.outliers.length) {
      process.stdout.write(`outlier features per layer input (|x| ≥ ${threshold} on the calibration text):\n${formatOutlierTable(result.outliers)}\n`);
    } else if (settings.calibSamples === 0) {
      process.stdout.write("no outlier report (no calibration text; pass --calib-text FILE)\n");
    }
    const shown = relative(process.cwd(), outDir) || ".";
    process.stdout.write(`\nwrote ${shown} (${result.files.join(", ")}, ${(result.totalSize / 2 ** 20).toFixed(1)} MiB) in ${result.seconds.toFixed(1)} s; report: ${relative(process.cwd(), join(outDir, "quant-report.json"))}\n`);
    if (settings.staticOutliers) {
      const n = result.outliers.reduce((s, r) => s + r.outlierFeatures * r.layers.length, 0);
      process.stdout.write(`static outlier columns: ${n} over ${result.outliers.reduce((s, r) => s + r.layers.length, 0)} layers (int8-outliers.json)\n`);
    }

    let before: number | null = null, after: number | null = null;
    const evalText = v["eval-text"] !== undefined ? resolve(v["eval-text"]) : bundled ? BUNDLED_EVAL_TEXT : undefined;
    if (v["no-eval"] !== true && evalText !== undefined) {
      const maxTokens = v["eval-max-tokens"] !== undefined ? intFlag("eval-max-tokens", v["eval-max-tokens"], 1) : undefined;
      before = await evalPpl(modelDir, evalText, backend, maxTokens);
      after = await evalPpl(outDir, evalText, backend, maxTokens);
      process.stdout.write(`perplexity (gptq protocol, ${relative(process.cwd(), evalText)}): before ${before.toFixed(4)}, after ${after.toFixed(4)} (${(((after / before) - 1) * 100).toFixed(3)}%)\n`);
    }
    if (v.json) {
      process.stdout.write(JSON.stringify({
        outDir, method: "int8", threshold, staticOutliers: settings.staticOutliers, seconds: result.seconds, bytes: result.totalSize,
        outlierFeatures: result.outliers.map((r) => ({ block: r.block, input: r.input, features: r.outlierFeatures, tokenShareAny: r.tokenShareAny })),
        pplBefore: before, pplAfter: after,
      }) + "\n");
    }
    return 0;
  },
};

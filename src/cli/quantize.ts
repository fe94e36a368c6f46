/**
 * `quantize-llm gptq|rtn [model]`: quantize a HF model into an HF-GPTQ checkpoint,
 * with a progress bar, a per-layer report, resume, and perplexity before/after.
 */
import { basename, relative, resolve } from "node:path";
import type { Backend } from "../backend/backend.ts";
import { selectBackend } from "../backend/select.ts";
import { loadModel, readModelConfig } from "../load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR, resolveModelArg } from "../load/paths.ts";
import { perplexity } from "../metrics/perplexity.ts";
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { InterruptedError, quantizeModel, type PipelineEvent } from "../quantize/pipeline.ts";
import { summarise, type LayerReport } from "../quantize/report.ts";
import { discardFailedRun } from "../quantize/journal.ts";
import { FORMAT_FLAGS, FORMATS, type FormatFlag } from "../quantize/formats/table.ts";
import { GROUP_GRIDS } from "../methods/gptq.ts";
import { AWQ_CLIP_SAMPLINGS } from "../methods/awq.ts";
import { CALIB_SAMPLINGS } from "../quantize/calibrate.ts";
import { AWQ_DEFAULTS, GROUP_SIZES, type Method, type QuantSettings } from "../quantize/settings.ts";
import { GPTQ_BITS } from "../pack/hf-gptq.ts";
import { GPTQMODEL_LM_HEAD, type LmHeadReport } from "../quantize/lm-head.ts";
import { UsageError } from "../util/errors.ts";
import { Progress } from "../util/progress.ts";
import { readTextFile } from "../util/text-file.ts";
import { checkOutputTarget } from "../util/output-target.ts";
import { refuseGgufInput, refuseQuantizedInput } from "./inputs.ts";
import { choiceFlag, groupSizeFlag, intChoiceFlag, intFlag, onePositional, parseFlags } from "./args.ts";
import type { Command } from "./command.ts";
import { deviceFlag, openDevice } from "./device.ts";
import { GpuGptq } from "../methods/gptq-webgpu.ts";

const COMMON_FLAGS = `  -o, --out DIR           output folder (default ./<model>-<method>-w<bits>g<group>[.gguf])
  --format F              hf (HF-GPTQ / AutoAWQ folder, default) | gguf (one .gguf for llama.cpp, written
                          from the quantizer's own grid: 4-bit g32 → Q4_0 (sym) / Q4_1 (asym), 8-bit sym g32 → Q8_0)
  --bits N                2, 3, 4 or 8 (default 4)
  --group-size N          32, 64, 128 or -1 for one group per row (default 128; 32 with --format gguf)
  --sym | --asym          symmetric (default) or asymmetric grid
  --checkpoint-format F   gptq (v1, symmetric only) | gptq_v2 (default: gptq for --sym, gptq_v2 for --asym)
  --quantize-lm-head      quantize lm_head too (GPTQModel's lm_head=True: quantize_config "lm_head": true and a
                          "dynamic" {"lm_head": {...}} entry with its grid); HF-GPTQ only (rtn, gptq, awq --then gptq)
  --lm-head-bits N        lm_head's bits (default 8, GPTQModel's default), 2, 3, 4 or 8
  --lm-head-group-size N  lm_head's group size (default 32, GPTQModel's default; -1 = one group per row)
  --resume                continue an interrupted run (same command line)
  --overwrite             replace an existing output folder
  --max-shard-size N      shard size limit in MB (default 4096)
  --eval-text FILE        text for the perplexity before/after (default: the bundled model's held-out text)
  --eval-max-tokens N     score only the first N tokens of it
  --no-eval               skip the perplexity before/after
  --threads N, --backend auto|native|ref
  --json                  print one JSON summary as the last line of stdout
`;

const GPTQ_FLAGS = `  --act-order             quantize columns by decreasing Hessian diagonal (desc_act)
  --static-groups         group grids from the original weights (with --act-order: contiguous g_idx)
  --damp X                fraction of mean(diag H) added to the diagonal (default 0.01; raised automatically
                          when the Cholesky factorisation fails, the value used is reported)
  --block-size N          lazy-update block size (default 128)
  --group-grid R          where a dynamic group's grid is read from: current (the fully updated weights at
                          the group start, default) | block-start (the lazy block's start snapshot, as
                          IST-DASLab gptq.py); they differ only when --group-size < --block-size
  --no-true-sequential    quantize all layers of a block from the same inputs
  --device D              where each linear's Hessian and lazy-batch sweep run: cpu (default) | gpu (WebGPU,
                          any adapter, software ones included) | auto (a hardware GPU adapter when there is
                          one, else the CPU); the rest of the pipeline stays on the CPU. The GPU's output equals
                          the CPU's within f32 rounding (docs: README "GPTQ on the GPU")
  --calib-text FILE       calibration text (default: the bundled model's calibration split)
  --calib-samples N       windows (default 128); with --calib-sampling records: records
  --calib-seqlen N        tokens per window (default min(512, context))
  --calib-sampling S      windows (random windows of the text tokenized once; default for gptq) |
                          records (llm-awq: shuffled lines, each with BOS, ≤ seqlen tokens, joined and cut;
                          default for awq)
  --seed N                calibration sampling seed (default 0)
`;

const AWQ_FLAGS = `  --then gptq             run GPTQ on the AWQ-scaled and clipped weights (writes HF-GPTQ; any bits)
  --device D              with --then gptq: where GPTQ's Hessians and sweeps run (cpu | gpu | auto, as for gptq)
  --duo-scaling           AutoAWQ's s = x^α / w^(1−α) instead of llm-awq's s = x^α (the default)
  --no-duo-scaling        llm-awq's s = x^α (the default)
  --no-clip               skip the clip search
  --clip-sampling S       clip-search tokens: stride (llm-awq: every ⌊T/512⌋-th, default) | random (512 seeded)
  --save-search FILE      also write the searched scales and clips (versioned JSON)
  --load-search FILE      re-apply a saved search instead of searching
  --calib-text FILE, --calib-samples N, --calib-seqlen N, --calib-sampling S, --seed N   as for gptq
  (AWQ alone writes AutoAWQ GEMM at 4 bits, and HF-GPTQ v2 (asymmetric) at 2/3/8 bits)
`;

function makeCommand(method: "rtn" | "gptq" | "awq", summary: string, extra: string): Command {
  const usage = `usage: quantize-llm ${method} [model] [options]\n\n${summary}. With no model, quantizes the bundled model.\n\n${COMMON_FLAGS}${extra}`;
  return {
    name: method,
    summary,
    usage,
    async run(argv) {
      const { values: v, positionals } = parseFlags(method, argv, {
        out: { type: "string", short: "o" }, bits: { type: "string" }, "group-size": { type: "string" },
        sym: { type: "boolean" }, asym: { type: "boolean" }, "checkpoint-format": { type: "string" },
        resume: { type: "boolean" }, overwrite: { type: "boolean" }, "max-shard-size": { type: "string" },
        "eval-text": { type: "string" }, "eval-max-tokens": { type: "string" }, "no-eval": { type: "boolean" },
        threads: { type: "string" }, backend: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" },
        "act-order": { type: "boolean" }, "static-groups": { type: "boolean" }, damp: { type: "string" },
        "block-size": { type: "string" }, "group-grid": { type: "string" }, "no-true-sequential": { type: "boolean" }, "true-sequential": { type: "boolean" },
        "calib-text": { type: "string" }, "calib-samples": { type: "string" }, "calib-seqlen": { type: "string" }, "calib-sampling": { type: "string" }, seed: { type: "string" },
        then: { type: "string" }, format: { type: "string" }, "no-duo-scaling": { type: "boolean" }, "duo-scaling": { type: "boolean" }, "no-clip": { type: "boolean" }, "clip-sampling": { type: "string" },
        "save-search": { type: "string" }, "load-search": { type: "string" },
        "quantize-lm-head": { type: "boolean" }, "lm-head-bits": { type: "string" }, "lm-head-group-size": { type: "string" },
        device: { type: "string" },
      });
      if (v.help) { process.stdout.write(usage); return 0; }
      if (method === "rtn") {
        for (const f of ["act-order", "static-groups", "damp", "block-size", "group-grid", "calib-text", "calib-samples", "calib-seqlen", "calib-sampling", "seed"] as const) {
          if (v[f] !== undefined) throw new UsageError(`--${f} does not apply to rtn`, { field: `--${f}`, hint: "round-to-nearest uses no calibration data; use quantize-llm gptq" });
        }
      }
      if (method !== "awq") {
        for (const f of ["then", "no-duo-scaling", "duo-scaling", "no-clip", "clip-sampling", "save-search", "load-search"] as const) {
          if (v[f] !== undefined) throw new UsageError(`--${f} applies to awq only`, { field: `--${f}`, hint: "use quantize-llm awq" });
        }
      }
      if (method === "awq") {
        for (const f of ["act-order", "static-groups", "damp", "block-size", "group-grid"] as const) {
          if (v[f] !== undefined && v.then !== "gptq") throw new UsageError(`--${f} needs --then gptq`, { field: `--${f}`, hint: "these are GPTQ options; add --then gptq to run GPTQ after AWQ" });
        }
        if (v.then !== undefined && v.then !== "gptq") throw new UsageError("invalid value for --then", { field: "--then", expected: "gptq", found: JSON.stringify(v.then) });
      }
      if (v["quantize-lm-head"] !== true) {
        for (const f of ["lm-head-bits", "lm-head-group-size"] as const) {
          if (v[f] !== undefined) throw new UsageError(`--${f} needs --quantize-lm-head`, { field: `--${f}`, hint: "add --quantize-lm-head to quantize lm_head (it is kept as stored otherwise)" });
        }
      }
      const fullMethod: Method = method === "awq" && v.then === "gptq" ? "awq+gptq" : method;
      if (v.sym && v.asym) throw new UsageError("--sym and --asym are mutually exclusive", { field: "--sym/--asym" });
      const modelDir = resolveModelArg(onePositional(method, positionals));
      refuseGgufInput(modelDir, method);
      const modelCfg = readModelConfig(modelDir); // a bad model folder is reported first
      refuseQuantizedInput(modelDir, modelCfg.raw, method);
      const maxPos = modelCfg.maxPositionEmbeddings;
      const bits = intChoiceFlag("bits", v.bits, GPTQ_BITS, 4, "unsupported bit width",
        "HF-GPTQ packs 2, 3, 4 and 8 bits (what transformers/vLLM kernels read): 4 is the usual choice, 3 smaller at some quality cost, 8 near-lossless");
      const flag = choiceFlag("format", v.format, Object.keys(FORMAT_FLAGS) as FormatFlag[], "hf");
      // --format gguf: the default group is 32, the one GGUF's Q4_0/Q4_1/Q8_0 blocks hold exactly (issue 10)
      const groupSize = groupSizeFlag(v["group-size"], flag === "gguf" ? 32 : 128, GROUP_SIZES);
      const sym = fullMethod === "awq" ? false : !v.asym; // AutoAWQ GEMM is always zero-point (asymmetric)
      const damp = v.damp !== undefined ? Number(v.damp) : 0.01;
      if (!(damp > 0 && damp < 1)) {
        throw new UsageError("damping out of range", {
          field: "--damp", expected: "0 < damp < 1 (typical: 0.01 to 0.1)", found: JSON.stringify(v.damp),
          hint: "damp is the fraction of mean(diag H) added to the Hessian's diagonal; 0.01 is the default, raise it (0.1) if a layer's Cholesky factorisation fails",
        });
      }
      const bundled = modelDir === BUNDLED_MODEL_DIR;
      const calibText = v["calib-text"] !== undefined ? resolve(v["calib-text"]) : bundled ? BUNDLED_CALIB_TEXT : undefined;
      if (method !== "rtn" && calibText === undefined) {
        throw new UsageError("no calibration text", {
          field: "--calib-text", expected: "a UTF-8 text file of general text (never your evaluation split)", found: "nothing",
          hint: "only the bundled model ships a calibration split; pass --calib-text FILE",
        });
      }
      if (calibText !== undefined) readTextFile(calibText, "--calib-text"); // a folder, binary or non-UTF-8 file: refused before any compute
      const evalText = v["eval-text"] !== undefined ? resolve(v["eval-text"]) : bundled ? BUNDLED_EVAL_TEXT : undefined;
      if (evalText !== undefined && v["no-eval"] !== true) readTextFile(evalText, "--eval-text");
      const backend = selectBackend({
        backend: choiceFlag("backend", v.backend, ["auto", "native", "ref"] as const, "auto"),
        ...(v.threads !== undefined ? { threads: intFlag("threads", v.threads, 1) } : {}),
      });
      const settings: QuantSettings = {
        method: fullMethod, bits, groupSize, sym,
        actOrder: v["act-order"] === true, staticGroups: v["static-groups"] === true, damp,
        blockSize: intFlag("block-size", v["block-size"], 128),
        ...(v["group-grid"] !== undefined ? { groupGrid: choiceFlag("group-grid", v["group-grid"], GROUP_GRIDS, "current") } : {}),
        trueSequential: v["no-true-sequential"] !== true,
        format: choiceFlag("checkpoint-format", v["checkpoint-format"], ["gptq", "gptq_v2"] as const, sym ? "gptq" : "gptq_v2"),
        calibSamples: method === "rtn" ? 0 : intFlag("calib-samples", v["calib-samples"], 128),
        calibSeqlen: method === "rtn" ? 0 : intFlag("calib-seqlen", v["calib-seqlen"], Math.min(512, maxPos)),
        calibSeed: method === "rtn" ? 0 : intFlag("seed", v.seed, 0, 0),
        calibText: calibText ?? "",
        ...(v["calib-sampling"] !== undefined ? { calibSampling: choiceFlag("calib-sampling", v["calib-sampling"], CALIB_SAMPLINGS, "windows") } : {}),
        ...(v["quantize-lm-head"] === true ? { lmHead: {
          bits: intChoiceFlag("lm-head-bits", v["lm-head-bits"], GPTQ_BITS, GPTQMODEL_LM_HEAD.bits, "unsupported lm_head bit width", "8 (GPTQModel's default) keeps lm_head near-lossless; 4 reads half the bytes"),
          groupSize: groupSizeFlag(v["lm-head-group-size"], GPTQMODEL_LM_HEAD.groupSize, GROUP_SIZES),
        } } : {}),
        ...(method === "awq" ? {
          duoScaling: v["duo-scaling"] === true ? true : v["no-duo-scaling"] === true ? false : AWQ_DEFAULTS.duoScaling, clip: v["no-clip"] !== true,
          ...(v["clip-sampling"] !== undefined ? { clipSampling: choiceFlag("clip-sampling", v["clip-sampling"], AWQ_CLIP_SAMPLINGS, AWQ_DEFAULTS.clipSampling) } : {}),
          loadSearch: v["load-search"] !== undefined ? resolve(v["load-search"]) : null,
        } : {}),
      };
      const format = FORMATS[FORMAT_FLAGS[flag](fullMethod, bits)];
      const stem = `${basename(modelDir)}-${fullMethod.replace("+", "-")}-w${bits}g${groupSize}${format.kind === "file" ? `.${format.id}` : ""}`;
      const outDir = resolve(v.out ?? stem);
      // The target, before any compute: its folder writable, an existing one of the right kind only with --overwrite.
      checkOutputTarget(outDir, format.kind, { flag: "-o", overwriteFlag: "--overwrite", overwrite: v.overwrite === true });

      const device = deviceFlag(v.device);
      if (device !== "cpu" && fullMethod !== "gptq" && fullMethod !== "awq+gptq") {
        throw new UsageError(`--device ${device} is for GPTQ only`, {
          field: "--device", expected: "cpu with rtn and awq (only GPTQ's Hessian and sweep have GPU kernels)", found: device,
          hint: "drop --device, or quantize with gptq (or awq --then gptq)",
        });
      }
      const gpuCtx = await openDevice(device);
      let gpu: GpuGptq | undefined;
      try {
        gpu = gpuCtx ? await GpuGptq.open(gpuCtx) : undefined;
      } catch (e) {
        gpuCtx?.device.destroy();
        throw e;
      }
      if (gpu) process.stderr.write(`GPTQ Hessians and sweeps on the GPU: ${gpu.description}\n`);

      smallYoungGeneration();
      const ac = new AbortController();
      let firstSigint = 0;
      const onSigint = (): void => {
        // A second SIGINT within 1 s is the same interrupt seen twice (npx: the terminal's and
        // bin/quantize-llm.js's forwarded one), not a second Ctrl-C.
        if (ac.signal.aborted) { if (performance.now() - firstSigint > 1000) process.exit(130); return; }
        firstSigint = performance.now();
        process.stderr.write("\ninterrupt: stopping (the running layer is cancelled; Ctrl-C again to quit at once)\n");
        ac.abort();
      };
      process.on("SIGINT", onSigint);
      const progress = new Progress(method, { stream: process.stderr });
      let computing = false; // set once the pipeline is past its checks (a refused resume keeps its journal)
      const log = (e: PipelineEvent): void => {
        if (e.type === "block-start" || e.type === "calibrated") computing = true;
        if (e.type === "calibrated") process.stderr.write(`calibration: ${e.samples} windows × ${e.seqlen} tokens from ${relative(process.cwd(), settings.calibText)}\n`);
        if (e.type === "awq-search") process.stderr.write(`block ${e.block + 1}: AWQ search ${e.seconds.toFixed(1)} s, α = ${e.alphas.join(", ")}\n`);
        if (e.type === "block-start") progress.update(e.block, e.blocks, `block ${e.block + 1}/${e.blocks}`);
        // QLLM_PROGRESS=layers: one unthrottled line as each linear layer starts, for scripts and tests
        // that act on the layer a run is in (test/interrupt/sigint.test.ts sends its SIGINT on one).
        if (e.type === "layer-start" && process.env["QLLM_PROGRESS"] === "layers") process.stderr.write(`block ${e.block + 1}: ${e.layer} started\n`);
        if (e.type === "block-done" && e.resumed) process.stderr.write(`block ${e.block + 1}/${e.blocks}: resumed from journal\n`);
        if (e.type === "block-done" && !e.resumed) progress.update(e.block + 1, e.blocks, `block ${e.block + 1} in ${e.seconds.toFixed(1)}s`);
      };
      let result;
      try {
        result = await quantizeModel({
          modelDir, outDir, settings, format: format.id, backend, resume: v.resume === true, overwrite: v.overwrite === true,
          ...(v["save-search"] !== undefined ? { saveSearch: resolve(v["save-search"]) } : {}),
          maxShardBytes: intFlag("max-shard-size", v["max-shard-size"], 4096) * 2 ** 20, onEvent: log, signal: ac.signal,
          ...(gpu ? { gpu } : {}),
        });
      } catch (e) {
        progress.done();
        if (e instanceof InterruptedError) { process.stderr.write(`error: ${e.message}\n`); return 130; }
        // Not interrupted: keep the journal only when --resume can use it (issue 10).
        if (!computing) throw e; // refused up front: an earlier run's journal stays as it was
        const kept = discardFailedRun(`${outDir}.partial`, e);
        if (kept) process.stderr.write(`note: the finished blocks are kept in ${relative(process.cwd(), kept)}: fix the cause and rerun with --resume (or --overwrite to discard them)\n`);
        throw e;
      } finally {
        process.off("SIGINT", onSigint);
        gpu?.destroy();
        gpuCtx?.device.destroy();
      }
      progress.done();
      process.stdout.write(layerTable(result.layers));
      if (result.lmHead !== undefined) process.stdout.write(lmHeadLine(result.lmHead));
      const sum = summarise(result.layers);
      const what = result.summary !== "" ? result.summary : result.files.join(", ");
      process.stdout.write(`\nwrote ${relative(process.cwd(), outDir) || "."} (${what}) in ${result.seconds.toFixed(1)} s; report: ${relative(process.cwd(), result.report)}\n`);
      if (sum.maxDamp !== null && sum.maxDamp > damp) process.stdout.write(`note: damping was raised to ${sum.maxDamp} for some layers (see the report)\n`);

      let before: number | null = null, after: number | null = null;
      if (v["no-eval"] !== true && evalText !== undefined) {
        const maxTokens = v["eval-max-tokens"] !== undefined ? intFlag("eval-max-tokens", v["eval-max-tokens"], 1) : undefined;
        before = await evalPpl(modelDir, evalText, backend, maxTokens);
        after = await evalPpl(outDir, evalText, backend, maxTokens);
        process.stdout.write(`perplexity (gptq protocol, ${relative(process.cwd(), evalText)}): before ${before.toFixed(4)}, after ${after.toFixed(4)} (${(((after / before) - 1) * 100).toFixed(2)}%)\n`);
      }
      if (v.json) {
        process.stdout.write(JSON.stringify({
          outDir, format: format.id, method: fullMethod, bits, groupSize, sym, actOrder: settings.actOrder, seconds: result.seconds,
          meanRelOutputError: sum.meanRelOutputError, maxDamp: sum.maxDamp, pplBefore: before, pplAfter: after,
          peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
        }) + "\n");
      }
      return 0;
    },
  };
}

/** Perplexity (gptq protocol) of a model folder or .gguf on a text file (also used by `int8`). */
/**
 * Keep V8's young generation at its initial size (1 MiB semi-spaces) for the rest of the process.
 * The quantizer's memory is typed arrays, reused block after block; what little it allocates on
 * the JS heap dies young. But tokenizing the calibration text (~110k tokens, the bundled split)
 * grows the young generation to its 2 × 16 MiB maximum, and V8 shrinks it only in a full
 * collection, which a run that makes no garbage never triggers: 31 MiB of RSS held to the end
 * (issue 8 item 4). Measured in-process on eval/memory-gptq.ts's 8-block model, no gc():
 * peak 409 MiB with the default growth, 375 MiB without; tokenizing the text takes the same
 * time either way (~0.4 s). Set at run time: V8 reads this flag when it next grows the space.
 */
function smallYoungGeneration(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
}

export async function evalPpl(dir: string, textFile: string, backend: Backend, maxTokens?: number): Promise<number> {
  const { tokenizer, model, cfg } = await loadModel(dir, backend);
  let tokens = tokenizer.encode(readTextFile(textFile, "--eval-text"), { addSpecial: true });
  if (maxTokens !== undefined) tokens = tokens.slice(0, maxTokens);
  return perplexity(model, tokens, { protocol: "gptq", ctx: Math.min(2048, cfg.maxPositionEmbeddings), bosId: tokenizer.bosId }).ppl;
}

/** Per-layer table; for big models only the 16 layers with the largest output error (all are in the JSON report). */
function layerTable(all: LayerReport[]): string {
  const MAX_ROWS = 64;
  const layers = all.length <= MAX_ROWS ? all
    : [...all].sort((a, b) => (b.relOutputError ?? b.relWeightError) - (a.relOutputError ?? a.relWeightError)).slice(0, 16);
  const title = all.length <= MAX_ROWS ? "" : `  (${all.length} layers; the 16 with the largest error:)\n`;
  const rows = layers.map((l) =>
    `  ${String(l.block).padStart(3)} ${l.layer.padEnd(5)} ${`${l.shape[0]}x${l.shape[1]}`.padEnd(11)} ` +
    `${l.loss === null ? "-".padStart(10) : l.loss.toExponential(3).padStart(10)} ` +
    `${l.relOutputError === null ? "-".padStart(10) : l.relOutputError.toExponential(3).padStart(10)} ` +
    `${l.relWeightError.toExponential(3).padStart(10)} ${l.damp === null ? "-".padStart(7) : String(l.damp).padStart(7)} ${l.seconds.toFixed(2).padStart(6)}s`);
  return title + [`  blk layer shape            loss  rel.out.err  rel.w.err    damp   time`, ...rows, ""].join("\n");
}

/** lm_head's row under the table (--quantize-lm-head), in the table's columns. */
function lmHeadLine(r: LmHeadReport): string {
  const e = (x: number | null): string => (x === null ? "-" : x.toExponential(3)).padStart(10);
  return `  ${"-".padStart(3)} ${"head".padEnd(5)} ${`${r.shape[0]}x${r.shape[1]}`.padEnd(11)} ${e(r.loss)} ${e(r.relOutputError)} ${e(r.relWeightError)} ` +
    `${(r.damp === null ? "-" : String(r.damp)).padStart(7)} ${r.seconds.toFixed(2).padStart(6)}s  lm_head ${r.bits}-bit g${r.groupSize}${r.untied ? " (from the tied embedding)" : ""}\n`;
}

export const gptqCommand = makeCommand("gptq", "quantize with GPTQ into an HF-GPTQ checkpoint", GPTQ_FLAGS);
export const rtnCommand = makeCommand("rtn", "quantize with round-to-nearest into an HF-GPTQ checkpoint", "");
export const awqCommand = makeCommand("awq", "quantize with AWQ into an AutoAWQ GEMM checkpoint (--then gptq: AWQ+GPTQ as HF-GPTQ)", AWQ_FLAGS);

/**
 * Evaluation speed: our engine vs llama.cpp (node-llama-cpp's prebuilt CPU build) on the SAME
 * weights (the model exported to an F32 GGUF), same threads, same token windows.
 *
 *   npx tsx eval/bench-eval.ts [--threads 2 | --threads 1,2] [--windows 4] [--reps 5] [--decode 64]
 *                              [--write] [--model DIR] [--text FILE] [--ctx 512]
 *
 * - prefill: windows of `ctx` tokens (llama.cpp perplexity protocol: BOS first), logits for
 *   EVERY position (what perplexity needs). llama.cpp is asked for one logit per position
 *   through node-llama-cpp, which makes it compute the full output row for each position.
 *   A second prefill row asks for the last position's logits only (llama.cpp's compute without
 *   node-llama-cpp's per-position overhead).
 * - decode: greedy generation of `decode` tokens after a 32-token prompt, one token per call.
 * Both engines use f32 weights, an f32 KV cache and no flash attention (the same arithmetic).
 * Engines alternate within each repetition; min and median over repetitions and the ratio are
 * printed for each thread count. `--write` also writes eval/reports/bench-eval.md.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";
import { exportGguf } from "../src/export/gguf.ts";
import { BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR, loadHfModel, Model, selectBackend, type ModelConfig } from "../src/index.ts";
import { perplexityWindows } from "../src/metrics/perplexity.ts";
import { argmax } from "../src/nn/generate.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const PROMPT_TOKENS = 32;

type EvalInput = Parameters<LlamaContextSequence["controlledEvaluate"]>[0];

interface Options { threads: number[]; windows: number; reps: number; decode: number; ctx: number; write: boolean; model: string; text: string }

function parse(): Options {
  const { values } = parseArgs({
    options: {
      threads: { type: "string" }, windows: { type: "string" }, reps: { type: "string" }, decode: { type: "string" },
      ctx: { type: "string" }, write: { type: "boolean" }, model: { type: "string" }, text: { type: "string" },
    },
    strict: true,
  });
  const int = (name: string, v: string | undefined, d: number): number => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
    return n;
  };
  return {
    threads: (values.threads ?? "2").split(",").map((t) => int("threads", t.trim(), 2)),
    windows: int("windows", values.windows, 4), reps: int("reps", values.reps, 5),
    decode: int("decode", values.decode, 64), ctx: int("ctx", values.ctx, 512), write: values.write === true,
    model: resolve(values.model ?? BUNDLED_MODEL_DIR), text: resolve(values.text ?? BUNDLED_EVAL_TEXT),
  };
}

function commit(): string {
  try {
    const sha = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain"], { cwd: ROOT, encoding: "utf8" }).trim() !== "";
    return dirty ? `${sha} + uncommitted changes` : sha;
  } catch {
    return "unknown";
  }
}

function nodeLlamaCppVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, "node_modules", "node-llama-cpp", "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };
const time = async (fn: () => unknown): Promise<number> => { const t0 = performance.now(); await fn(); return (performance.now() - t0) / 1000; };

interface Timings { ours: number[]; llama: number[] }
interface RunResult { threads: number; backend: string; prefill: Timings; prefillLast: Timings; decode: Timings; sameIds: boolean }

/** One thread count: both engines, `reps` repetitions, engines alternating. */
async function benchThreads(
  o: Options, n: number, cfg: ModelConfig, weights: Model["weights"], lmodel: LlamaModel, windows: number[][], prompt: number[],
): Promise<RunResult> {
  const backend = selectBackend({ backend: "auto", threads: n });
  const model = new Model(cfg, weights, backend);
  const V = cfg.vocabSize;
  const lctx = await lmodel.createContext({
    contextSize: o.ctx, batchSize: o.ctx, threads: { ideal: n, min: n }, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
  });
  const seq = lctx.getSequence();
  try {
    const cache = model.newCache(o.ctx);
    const oursPrefill = (win: number[], logits: "all" | "last"): void => { cache.reset(); model.forward(win, cache, { logits }); };
    const llamaPrefill = async (win: number[], logits: "all" | "last"): Promise<void> => {
      await seq.clearHistory();
      // "all": one requested logit per position, so llama.cpp computes every output row (node-llama-cpp
      // returns one value each); "last": only the last row.
      const last = win.length - 1;
      await seq.controlledEvaluate(win.map((t, i) => (logits === "all" || i === last
        ? [t as Token, { generateNext: { logits: { filter: { tokens: [(win[i + 1] ?? t) as Token] } } } }]
        : t as Token)) as EvalInput);
    };
    const oursDecode = (): { ids: number[]; seconds: number } => {
      const c = model.newCache(PROMPT_TOKENS + o.decode + 1);
      let logits = model.forward(prompt, c, { logits: "last" });
      const ids: number[] = [];
      const t0 = performance.now();
      for (let i = 0; i < o.decode; i++) {
        const id = argmax(logits, 0, V);
        ids.push(id);
        logits = model.forward([id], c, { logits: "last" });
      }
      return { ids, seconds: (performance.now() - t0) / 1000 };
    };
    const greedy = { generateNext: { token: true, options: { temperature: 0 } } };
    const llamaDecode = async (): Promise<{ ids: number[]; seconds: number }> => {
      await seq.clearHistory();
      let res = await seq.controlledEvaluate(prompt.map((t, i) => (i === prompt.length - 1 ? [t as Token, greedy] : (t as Token))) as EvalInput);
      const ids: number[] = [];
      const t0 = performance.now();
      for (let i = 0; i < o.decode; i++) {
        const id = res.at(-1)?.next.token;
        if (id === undefined || id === null) throw new Error("llama.cpp produced no token");
        ids.push(id);
        res = await seq.controlledEvaluate([[id, greedy]] as EvalInput);
      }
      return { ids, seconds: (performance.now() - t0) / 1000 };
    };

    oursPrefill(windows[0]!, "all"); // warm-up
    await llamaPrefill(windows[0]!, "all");
    const r: RunResult = {
      threads: n, backend: `${backend.name}, ${backend.threads} thread${backend.threads === 1 ? "" : "s"}`,
      prefill: { ours: [], llama: [] }, prefillLast: { ours: [], llama: [] }, decode: { ours: [], llama: [] }, sameIds: true,
    };
    for (let rep = 0; rep < o.reps; rep++) {
      r.prefill.ours.push(await time(() => { for (const w of windows) oursPrefill(w, "all"); }));
      r.prefill.llama.push(await time(async () => { for (const w of windows) await llamaPrefill(w, "all"); }));
      r.prefillLast.ours.push(await time(() => { for (const w of windows) oursPrefill(w, "last"); }));
      r.prefillLast.llama.push(await time(async () => { for (const w of windows) await llamaPrefill(w, "last"); }));
      const a = oursDecode();
      const b = await llamaDecode();
      r.decode.ours.push(a.seconds);
      r.decode.llama.push(b.seconds);
      r.sameIds &&= a.ids.length === b.ids.length && a.ids.every((x, i) => x === b.ids[i]);
    }
    process.stderr.write(`threads ${n} done\n`);
    return r;
  } finally {
    await lctx.dispose();
  }
}

async function main(): Promise<void> {
  const o = parse();
  const tmp = mkdtempSync(join(tmpdir(), "qllm-bench-"));
  try {
    const gguf = join(tmp, "model-f32.gguf");
    const exp = await exportGguf(o.model, gguf, { type: "f32" });
    const { cfg, tokenizer, model } = await loadHfModel(o.model, selectBackend({ backend: "auto", threads: 1 }));
    const tokens = tokenizer.encode(readFileSync(o.text, "utf8"), { addSpecial: true });
    const windows = perplexityWindows(tokens, "llama.cpp", o.ctx, tokenizer.bosId).windows.slice(0, o.windows);
    const prompt = tokens.slice(0, PROMPT_TOKENS);
    const nParams = cfg.vocabSize * cfg.hiddenSize * (cfg.tieWordEmbeddings ? 1 : 2) + cfg.hiddenSize
      + cfg.numLayers * (2 * cfg.hiddenSize + cfg.hiddenSize * cfg.headDim * (2 * cfg.numHeads + 2 * cfg.numKvHeads) + 3 * cfg.hiddenSize * cfg.intermediateSize);
    const load0 = loadavg()[0]!;

    const llama = await getLlama({
      gpu: false, build: "never", skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: Math.max(...o.threads),
    });
    const results: RunResult[] = [];
    try {
      const lmodel = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
      for (const n of o.threads) results.push(await benchThreads(o, n, cfg, model.weights, lmodel, windows, prompt));
      await lmodel.dispose();
    } finally {
      await llama.dispose();
    }

    const prefillTokens = windows.length * o.ctx;
    const f = (x: number): string => x >= 100 ? x.toFixed(0) : x.toFixed(1);
    const cell = (tok: number, secs: number[]): string => `${f(tok / median(secs))} (${f(tok / Math.min(...secs))})`;
    const ratio = (tok: number, t: Timings): string => ((tok / median(t.ours)) / (tok / median(t.llama))).toFixed(2);
    const lines = [
      "# Evaluation speed: quantize-llm vs llama.cpp",
      "",
      `- date: ${new Date().toISOString()}`,
      `- commit: ${commit()}`,
      `- machine: ${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} logical cores, load average ${load0.toFixed(2)} at start`,
      `- model: ${relative(ROOT, o.model) || o.model} (${cfg.modelType}, ${cfg.numLayers} layers, hidden ${cfg.hiddenSize}, ${cfg.numHeads}/${cfg.numKvHeads} heads, ffn ${cfg.intermediateSize}, vocab ${cfg.vocabSize}, ${(nParams / 1e6).toFixed(2)}M parameters)`,
      `- weights: f32 in both (ours from safetensors, llama.cpp from the exported GGUF, ${(exp.bytes / 2 ** 20).toFixed(1)} MiB); f32 KV cache, no flash attention in llama.cpp`,
      `- llama.cpp: node-llama-cpp ${nodeLlamaCppVersion()} prebuilt CPU binaries, driven through its JS API (\`controlledEvaluate\`)`,
      `- ${o.reps} repetitions per thread count after one warm-up window each, engines alternating; tokens/s shown as median (best)`,
      "",
    ];
    for (const r of results) {
      lines.push(
        `## ${r.threads} thread${r.threads === 1 ? "" : "s"} (ours: ${r.backend}; llama.cpp: ${r.threads}); greedy ids identical: ${r.sameIds ? "yes" : "NO"}`,
        "",
        "| benchmark | ours (tokens/s) | llama.cpp (tokens/s) | ours / llama.cpp |",
        "|---|---:|---:|---:|",
        `| prefill, ${windows.length} × ${o.ctx}-token windows, logits at every position | ${cell(prefillTokens, r.prefill.ours)} | ${cell(prefillTokens, r.prefill.llama)} | ${ratio(prefillTokens, r.prefill)} |`,
        `| prefill, ${windows.length} × ${o.ctx}-token windows, last position's logits only | ${cell(prefillTokens, r.prefillLast.ours)} | ${cell(prefillTokens, r.prefillLast.llama)} | ${ratio(prefillTokens, r.prefillLast)} |`,
        `| greedy decode, ${o.decode} tokens after a ${PROMPT_TOKENS}-token prompt | ${cell(o.decode, r.decode.ours)} | ${cell(o.decode, r.decode.llama)} | ${ratio(o.decode, r.decode)} |`,
        "",
        "Seconds per repetition (ours | llama.cpp):",
        ...([["prefill, all logits", r.prefill], ["prefill, last logits", r.prefillLast], ["decode", r.decode]] as const).map(([name, t]) =>
          `- ${name}: ${t.ours.map((x) => x.toFixed(3)).join(", ")} | ${t.llama.map((x) => x.toFixed(3)).join(", ")}`),
        "",
      );
    }
    lines.push(
      "Reading the rows: llama.cpp runs inside this Node process through node-llama-cpp, so every call is a",
      "JS → C++ round trip. \"Last position's logits only\" is the closest to llama.cpp's own prefill speed;",
      "\"logits at every position\" adds node-llama-cpp's per-position cost (what a perplexity run pays).",
      "Decode is one round trip per token: with as many ggml threads as cores, ggml's workers busy-wait",
      "between tokens and compete with the Node thread that schedules the next one, so on a 2-core machine",
      "llama.cpp's multi-threaded decode through node-llama-cpp can be far slower than its 1-thread decode;",
      "compare decode speed at 1 thread.",
      "",
    );
    process.stdout.write(lines.join("\n"));
    if (o.write) {
      const out = join(ROOT, "eval", "reports", "bench-eval.md");
      mkdirSync(dirname(out), { recursive: true });
      const cmd = `npx tsx eval/bench-eval.ts --threads ${o.threads.join(",")} --windows ${o.windows} --reps ${o.reps} --decode ${o.decode} --write`;
      writeFileSync(out, `${lines.join("\n")}\nReproduce: \`${cmd}\`\n`);
      process.stderr.write(`wrote ${relative(process.cwd(), out)}\n`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();

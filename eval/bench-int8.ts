/**
 * LLM.int8() speed, all ratios from one run:
 *   1. read-bandwidth probe (nb.readBandwidth, as eval/bench-quantized.ts: 512 MiB, pool threads)
 *   2. int8 GEMV (M = 1) cold — weights rotated over ≥ 256 MiB of distinct copies so they
 *      stream from DRAM — as GB/s of int8 codes and % of the probe; our f32 GEMV beside it
 *   3. the outlier path: static outlier columns at 0.1% / 1% of K, and the dynamic scan with
 *      that many features ≥ 6, against plain int8 (same weights, cold)
 *   4. decode tokens/s on a TinyLlama-shaped model (--model: an HF folder, e.g. the BF16
 *      folder of eval/gen-tinyllama.ts): ours f32, ours int8 (t = 0 and t = 6; t = 6 also with
 *      lm_head in int8, `int8 --quantize-lm-head`), and llama.cpp Q8_0 of the same weights
 *      (node-llama-cpp, same threads; its output.weight is Q8_0 too), int8 and llama.cpp interleaved
 *
 * The int8 folders and the Q8_0 GGUF of --model are made once under --work (untimed; do it
 * first under the shared lock, they take minutes):
 *   flock -s /tmp/qllm-cpu.lock npx tsx eval/bench-int8.ts --prepare [--model DIR]
 *   flock -x /tmp/qllm-cpu.lock npx tsx eval/bench-int8.ts --threads 2 [--model DIR] [--reps 5] [--decode 32] [--write]
 */
import { execSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel, type LlamaContextSequence, type Token } from "node-llama-cpp";
import { createNativeBackend } from "../src/backend/native.ts";
import type { Int8PackedWeight } from "../src/backend/native-int8.ts";
import { describeKernelPath } from "../src/load/kernel-path.ts";
import { exportQuantizedGguf } from "../src/export/gguf-quant.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { BUNDLED_EVAL_TEXT } from "../src/load/paths.ts";
import { argmax } from "../src/nn/generate.ts";
import { mulberry32 } from "../src/util/random.ts";
import type { Model } from "../src/nn/model.ts";
import { quantizeInt8 } from "../src/quantize/int8-pipeline.ts";

const { values } = parseArgs({ options: {
  threads: { type: "string" }, reps: { type: "string" }, decode: { type: "string" }, model: { type: "string" },
  work: { type: "string" }, write: { type: "boolean" }, "no-decode": { type: "boolean" }, "no-gemv": { type: "boolean" }, out: { type: "string" }, prepare: { type: "boolean" },
} });
const threads = Number(values.threads ?? 2), reps = Number(values.reps ?? 5), decodeTokens = Number(values.decode ?? 32);
const modelDir = resolve(values.model ?? "/tmp/qllm-tinyllama/bf16");
const workDir = resolve(values.work ?? "/tmp/qllm-int8-bench");
const nb = createNativeBackend({ threads });
const int8Dir = join(workDir, "int8-t6"), int8HeadDir = join(workDir, "int8-t6-lm-head"), gguf = join(workDir, "q8_0.gguf");
async function prepare(): Promise<void> {
  if (!existsSync(join(modelDir, "config.json"))) {
    throw new Error(`no model at ${modelDir}: generate one with \`npx tsx eval/gen-tinyllama.ts --only bf16\` (TinyLlama shapes, BF16) or pass --model DIR`);
  }
  mkdirSync(workDir, { recursive: true });
  if (!existsSync(int8Dir)) {
    await quantizeInt8({ modelDir, outDir: int8Dir, backend: nb, settings: { threshold: 6, staticOutliers: false, skipModules: null, calibSamples: 0, calibSeqlen: 16, calibSeed: 0, calibText: null } });
  }
  if (!existsSync(int8HeadDir)) {
    await quantizeInt8({ modelDir, outDir: int8HeadDir, backend: nb, settings: { threshold: 6, staticOutliers: false, skipModules: null, calibSamples: 0, calibSeqlen: 16, calibSeed: 0, calibText: null, quantizeLmHead: true } });
  }
  if (!existsSync(gguf)) await exportQuantizedGguf(modelDir, gguf, { type: "q8_0" });
}
if (values.prepare === true) {
  await prepare();
  console.log(`prepared ${int8Dir}, ${int8HeadDir} and ${gguf}`);
  process.exit(0);
}
const level = nb.int8.levels()[0]!;
const COLD_BYTES = 256 * 2 ** 20;
const lines: string[] = [];
const say = (s: string): void => { console.log(s); lines.push(s); };
const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]!; };

// ---------------------------------------------------------------- 1. probe
const passes = Array.from(nb.readBandwidth(512 * 2 ** 20, threads, 6));
const probe = median(passes);
say(`read-bandwidth probe (nb.readBandwidth, native/src/packed_probe.cc): ${probe.toFixed(1)} GB/s median of ${passes.length} passes over 512 MiB (${passes.map((v) => v.toFixed(1)).join(" ")}), ${threads} threads`);

// ---------------------------------------------------------------- 2 + 3. GEMV
function randomCodes(n: number, seed: number): Int8Array {
  const r = mulberry32(seed), a = new Int8Array(n);
  for (let i = 0; i < n; i += 4) { const v = (r() * 2 ** 32) >>> 0; a[i] = (v & 0xff) % 255 - 127; a[i + 1] = ((v >>> 8) & 0xff) % 255 - 127; a[i + 2] = ((v >>> 16) & 0xff) % 255 - 127; a[i + 3] = (v >>> 24) % 255 - 127; }
  return a;
}
function activations(K: number, hot: number, seed: number): Float32Array {
  const r = mulberry32(seed), x = Float32Array.from({ length: K }, () => r() * 2 - 1);
  for (let i = 0; i < hot; i++) x[Math.floor((i * K) / hot)] = 20;
  return x;
}
/** Seconds per call, median over reps, each rep one pass over every copy. */
function timeCold(copies: number, call: (i: number) => void): number {
  for (let i = 0; i < copies; i++) call(i); // warm-up: every buffer touched
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < copies; i++) call(i);
    t.push((performance.now() - t0) / 1000 / copies);
  }
  return median(t);
}

say("");
say("| GEMV (M = 1), cold | int8 µs | int8 GB/s | % of probe | f32 µs | f32 GB/s | int8 speed-up |");
say("|---|---:|---:|---:|---:|---:|---:|");
const outlierRows: string[] = [];
const GEMV_SHAPES = values["no-gemv"] === true ? [] : [[2048, 2048], [5632, 2048], [2048, 5632], [4096, 4096]] as const;
for (const [N, K] of GEMV_SHAPES) {
  const copies = Math.max(2, Math.ceil(COLD_BYTES / (N * K)));
  const SCB = Float32Array.from({ length: N }, (_, i) => 0.5 + (i % 7) / 7);
  const packs: Int8PackedWeight[] = [];
  for (let c = 0; c < copies; c++) packs.push(nb.int8.pack({ N, K, CB: randomCodes(N * K, c + 1), SCB }, { threshold: 0, staticCols: null }));
  const x = activations(K, 0, 9), y = new Float32Array(N);
  const tInt8 = timeCold(copies, (i) => nb.int8.matmul(x, packs[i]!, 1, undefined, y));
  // f32: as many distinct copies as fit the same ≥ 256 MiB budget.
  const fCopies = Math.max(2, Math.ceil(COLD_BYTES / (4 * N * K)));
  const fw = Array.from({ length: fCopies }, (_, c) => { const r = mulberry32(100 + c); return Float32Array.from({ length: N * K }, () => r() - 0.5); });
  const tF32 = timeCold(fCopies, (i) => nb.matmul(x, fw[i]!, 1, K, N, undefined, y));
  say(`| ${N}×${K} (${copies} int8 / ${fCopies} f32 copies) | ${(tInt8 * 1e6).toFixed(0)} | ${(N * K / tInt8 / 1e9).toFixed(1)} | ${((N * K / tInt8 / 1e9 / probe) * 100).toFixed(0)}% | ${(tF32 * 1e6).toFixed(0)} | ${(4 * N * K / tF32 / 1e9).toFixed(1)} | ${(tF32 / tInt8).toFixed(2)}× |`);
  if (N * K === 4096 * 4096 || N === 5632) {
    for (const share of [0.001, 0.01]) {
      const n = Math.max(1, Math.round(share * K));
      const cols = Int32Array.from({ length: n }, (_, i) => Math.floor((i * K) / n));
      const stat = packs.map((p) => nb.int8.pack({ N, K, CB: nb.int8.unpack(p), SCB }, { threshold: 6, staticCols: cols }));
      const tStatic = timeCold(copies, (i) => nb.int8.matmul(x, stat[i]!, 1, undefined, y));
      for (const w of stat) w.dispose();
      const dyn = packs.map((p) => nb.int8.pack({ N, K, CB: nb.int8.unpack(p), SCB }, { threshold: 6, staticCols: null }));
      const xh = activations(K, n, 11);
      const tDyn = timeCold(copies, (i) => nb.int8.matmul(xh, dyn[i]!, 1, undefined, y));
      for (const w of dyn) w.dispose();
      outlierRows.push(`| ${N}×${K} | ${(share * 100).toFixed(1)}% (${n} columns) | ${(tInt8 * 1e6).toFixed(0)} | ${(tStatic * 1e6).toFixed(0)} (${((tStatic / tInt8 - 1) * 100).toFixed(1)}%) | ${(tDyn * 1e6).toFixed(0)} (${((tDyn / tInt8 - 1) * 100).toFixed(1)}%) |`);
    }
  }
  for (const p of packs) p.dispose();
}
say("");
say("| outlier path, GEMV cold | outlier features | plain int8 µs | static columns µs (cost) | dynamic scan µs (cost) |");
say("|---|---|---:|---:|---:|");
for (const r of outlierRows) say(r);

// ---------------------------------------------------------------- 4. decode
interface Decoder { name: string; run: () => Promise<number> }
if (values["no-decode"] !== true) {
  await prepare();
  const text = readFileSync(BUNDLED_EVAL_TEXT, "utf8");
  const oursDecoder = (name: string, model: Model, prompt: number[]): Decoder => ({
    name, run: async () => {
      const c = model.newCache(prompt.length + decodeTokens + 1);
      let logits = model.forward(prompt, c, { logits: "last" });
      const t0 = performance.now();
      for (let i = 0; i < decodeTokens; i++) logits = model.forward([argmax(logits, 0, model.cfg.vocabSize)], c, { logits: "last" });
      return decodeTokens / ((performance.now() - t0) / 1000);
    },
  });
  const measure = async (ds: Decoder[]): Promise<Map<string, number[]>> => {
    const m = new Map(ds.map((d) => [d.name, [] as number[]]));
    for (const d of ds) await d.run(); // warm-up
    for (let r = 0; r < reps; r++) for (const d of ds) m.get(d.name)!.push(await d.run());
    return m;
  };
  const results = new Map<string, number[]>();
  const load0 = loadavg()[0]!;
  { // f32 first, alone (4.4 GB of f32 weights), then dropped: garbage V8 collects when it next needs memory (this section times decoding, not memory)
    const f32 = await loadModel(modelDir, nb, { weights: "f32" });
    const prompt = f32.tokenizer.encode(text, { addSpecial: true }).slice(0, 32);
    for (const [k, v] of await measure([oursDecoder("ours f32", f32.model, prompt)])) results.set(k, v);
  }
  // As eval/chat/serve load it: int8 linears on the LLM.int8() kernel, lm_head bf16 packed, embedding bf16 rows.
  const rt6 = await loadModel(int8Dir, nb);
  const rt0 = await loadModel(int8Dir, nb, { int8: { threshold: 0 } });
  const rt6h = await loadModel(int8HeadDir, nb); // lm_head on the LLM.int8() kernel too
  say(`ours int8: ${describeKernelPath(rt6.model)}`);
  say(`ours int8, int8 lm_head: ${describeKernelPath(rt6h.model)}`);
  const prompt = rt6.tokenizer.encode(text, { addSpecial: true }).slice(0, 32);
  const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: threads });
  const lmodel = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  const lctx = await lmodel.createContext({ contextSize: 256, batchSize: 64, threads: { ideal: threads, min: threads }, flashAttention: false });
  const seq: LlamaContextSequence = lctx.getSequence();
  const greedy = { generateNext: { token: true, options: { temperature: 0 } } };
  type EvalInput = Parameters<LlamaContextSequence["controlledEvaluate"]>[0];
  const llamaDecoder: Decoder = {
    name: "llama.cpp Q8_0", run: async () => {
      await seq.clearHistory();
      let res = await seq.controlledEvaluate(prompt.map((t, i) => (i === prompt.length - 1 ? [t as Token, greedy] : (t as Token))) as EvalInput);
      const t0 = performance.now();
      for (let i = 0; i < decodeTokens; i++) res = await seq.controlledEvaluate([[res.at(-1)!.next.token!, greedy]] as EvalInput);
      return decodeTokens / ((performance.now() - t0) / 1000);
    },
  };
  const HEAD = "ours int8 t=6, int8 lm_head";
  for (const [k, v] of await measure([oursDecoder("ours int8 t=6", rt6.model, prompt), llamaDecoder, oursDecoder(HEAD, rt6h.model, prompt), oursDecoder("ours int8 t=0", rt0.model, prompt)])) results.set(k, v);
  await lctx.dispose();
  await lmodel.dispose();
  const f32 = median(results.get("ours f32")!), i6 = median(results.get("ours int8 t=6")!), i0 = median(results.get("ours int8 t=0")!), lq = median(results.get("llama.cpp Q8_0")!);
  const i6h = median(results.get(HEAD)!);
  const cfg = rt6.cfg;
  say("");
  say(`decode on ${modelDir} (hidden ${cfg.hiddenSize}, ${cfg.numLayers} layers, ${cfg.numHeads}/${cfg.numKvHeads} heads, ffn ${cfg.intermediateSize}, vocab ${cfg.vocabSize}), ${decodeTokens} tokens after a 32-token prompt, ${threads} threads, median of ${reps}; load average ${load0.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}`);
  say("");
  say("| engine | tokens/s (median) | min–max | vs ours f32 | vs llama.cpp Q8_0 |");
  say("|---|---:|---:|---:|---:|");
  for (const [name, v] of results) say(`| ${name} | ${median(v).toFixed(2)} | ${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)} | ${(median(v) / f32).toFixed(2)}× | ${(median(v) / lq).toFixed(2)}× |`);
  say("");
  say(`int8 t=6 / f32 = ${(i6 / f32).toFixed(2)}× (target ≥ 1.8×); int8 t=6 / llama.cpp Q8_0 = ${(i6 / lq).toFixed(2)}× (target ≥ 1.2×); t=0 / t=6 = ${(i0 / i6).toFixed(2)}×`);
  say(`with lm_head in int8 (\`int8 --quantize-lm-head\`): ${(i6h / f32).toFixed(2)}× our f32, **${(i6h / lq).toFixed(2)}× llama.cpp Q8_0** (target ≥ 1.2×: ${i6h / lq >= 1.2 ? "met" : "not met"}), ${(i6h / i6).toFixed(2)}× the bf16-lm_head folder`);
  say("ours int8 t=6 / t=0 keep lm_head and the embedding in bf16 (bitsandbytes' default); the int8 lm_head row quantizes lm_head as LLM.int8() (CB/SCB, t=6); llama.cpp's Q8_0 file has output.weight and token_embd in Q8_0.");
}

let commit = "unknown";
try { commit = execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { /* not a git checkout */ }
if (values.write) {
  const thp = existsSync("/sys/kernel/mm/transparent_hugepage/enabled") ? readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8").trim() : "?";
  const flags = process.argv.slice(2).join(" ");
  writeFileSync(values.out ?? join("eval", "reports", "bench-int8.md"), [
    "# LLM.int8() speed", "",
    `\`flock -x /tmp/qllm-cpu.lock npx tsx eval/bench-int8.ts ${flags}\`, ${new Date().toISOString()}, commit ${commit}.`,
    `CPU: ${execSync("lscpu | grep 'Model name' | cut -d: -f2").toString().trim()}; int8 kernel level ${level} (levels here: ${nb.int8.levels().join(", ")}); THP: ${thp}; load average at the end ${loadavg().map((v) => v.toFixed(2)).join(" ")}.`,
    "", ...lines, "",
  ].join("\n"));
}

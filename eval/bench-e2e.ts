/**
 * End-to-end speed on the TinyLlama-shaped model (issue 9): prompt of --prompt tokens,
 * then --gen greedy tokens with end-of-sequence ignored, ours (library API: loadModel +
 * generate/engine.ts, as `chat --json` runs it) against llama.cpp (node-llama-cpp) on the
 * Q4_0 GGUF of the same weights, same threads, in ONE process, interleaved in rounds;
 * plus short read-bandwidth probes before and after every engine's timed round
 * (eval/bench-quantized/probe.ts), so each round's generation is stated as a share of the
 * bandwidth measured right around it (the host's moves within minutes; one probe per run
 * once read 18 GB/s and made a round "134% of probe"):
 *   generation GB/s = bytes of weights read per token (every linear + lm_head) × tokens/s;
 *   a second figure adds the KV-cache bytes each step reads (kvBytesPerToken).
 *
 *   /work/bin/bench npx tsx eval/bench-e2e.ts [--dir /tmp/qllm-tinyllama] [--threads 2]
 *         [--prompt 512] [--gen 128] [--reps 2] [--engines llama-q4_0,ours-q4_0,ours-gptq,ours-gptq-lm-head] [--kv f16|f32 (our KV cache; default the engine's, f16, as llama.cpp's)]
 *         [--out eval/reports/bench-e2e.md]
 *
 * Models: `npx tsx eval/gen-tinyllama.ts` (gptq-w4g128/, gptq-w4g128-lm-head/ — the same with
 * lm_head 8-bit g32, `--quantize-lm-head` — and q4_0.gguf: the same random weights). Prompt ids are seeded pseudo-random ids (random weights: text means nothing);
 * both engines get exactly the same ids, no BOS added.
 *
 * llama.cpp: prefill = one controlledEvaluate of the whole prompt (batch size = prompt,
 * so one ubatch), the first token sampled from its last logits; generation = --gen − 1
 * single-token evaluations, each greedy (temperature 0), timed as a whole. Ours: the same
 * split (engine.ts stats: prefillMs; decodeSteps = --gen − 1 single-token forwards).
 */
import { execSync } from "node:child_process";
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel, type LlamaContextSequence, type Token } from "node-llama-cpp";
import { createNativeBackend } from "../src/backend/native.ts";
import { DEFAULT_KV, generate, Session } from "../src/generate/engine.ts";
import { GREEDY } from "../src/generate/sampler.ts";
import type { KvDType } from "../src/nn/model.ts";
import { openGguf } from "../src/io/gguf.ts";
import { loadModel, type LoadedModel } from "../src/load/hf-folder.ts";
import { describeKernelPath } from "../src/load/kernel-path.ts";
import { isPackedWeight } from "../src/backend/backend.ts";
import { mulberry32 } from "../src/util/random.ts";
import { median, table } from "./bench-quantized/context.ts";
import { bracket, BRACKET_PASSES, pctCell, PROBE_AGREE, PROBE_BYTES, probeNotes, shortProbe, spread, summarize, type Bracketed, type RoundsSummary } from "./bench-quantized/probe.ts";

const ENGINES = ["llama-q4_0", "ours-q4_0", "ours-gptq", "ours-gptq-lm-head"] as const;
type EngineName = (typeof ENGINES)[number];

const { values: opts } = parseArgs({
  options: {
    dir: { type: "string", default: "/tmp/qllm-tinyllama" }, threads: { type: "string", default: "2" },
    prompt: { type: "string", default: "512" }, gen: { type: "string", default: "128" }, reps: { type: "string", default: "2" },
    engines: { type: "string", default: ENGINES.join(",") }, out: { type: "string", default: "eval/reports/bench-e2e.md" },
    kv: { type: "string", default: DEFAULT_KV },
  },
});
const dir = resolve(opts.dir), threads = Number(opts.threads), promptLen = Number(opts.prompt), genLen = Number(opts.gen), reps = Number(opts.reps);
const engines = opts.engines.split(",") as EngineName[];
if (opts.kv !== "f32" && opts.kv !== "f16") throw new Error(`--kv: f32 or f16 (our KV cache's element type), not ${opts.kv}`);
const kv: KvDType = opts.kv;
for (const e of engines) if (!ENGINES.includes(e)) throw new Error(`unknown engine ${e}; known: ${ENGINES.join(", ")}`);
const GGUF = join(dir, "q4_0.gguf"), GPTQ = join(dir, "gptq-w4g128"), GPTQ_HEAD = join(dir, "gptq-w4g128-lm-head");
const paths = { "ours-q4_0": GGUF, "ours-gptq": GPTQ, "ours-gptq-lm-head": GPTQ_HEAD } as const;
for (const p of [GGUF, ...engines.filter((e) => e !== "llama-q4_0").map((e) => paths[e])]) if (!existsSync(p)) throw new Error(`no ${p}: generate the models with \`npx tsx eval/gen-tinyllama.ts --out ${dir}\``);

const log = (l: string): void => { console.log(l); };
const load0 = loadavg(), started = new Date().toISOString();
const uptime = (): string => { try { return execSync("uptime", { encoding: "utf8" }).trim(); } catch { return loadavg().map((v) => v.toFixed(2)).join(" "); } };
log(uptime());

interface Run { prefillTps: number; decodeTps: number }
interface Engine {
  name: EngineName;
  label: string;
  /** Bytes of weights one generated token reads (every linear and lm_head; one embedding row is left out). */
  bytesPerToken: number;
  /** Weights per token (for bpw). */
  params: number;
  /** KV-cache bytes one generated token reads, averaged over the timed steps (kvBytesPerToken). */
  kvBytesPerToken: number;
  describe: string;
  run(prompt: readonly number[], gen?: number): Promise<Run>;
  close(): Promise<void>;
}

const nb = createNativeBackend({ threads });

/**
 * KV-cache bytes a decode step reads, averaged over the timed steps: step j (1 … gen − 1) attends
 * over promptLen + j keys, each a key and a value row of nKv·d elements per layer. llama.cpp's
 * cache is f16 by default (as ours); its reads are counted the same way (without flash attention
 * it may read a padded window: this is a floor for it).
 */
function kvBytesPerToken(layers: number, kvDim: number, elemBytes: number): number {
  const meanKeys = promptLen + genLen / 2;
  return layers * 2 * kvDim * elemBytes * meanKeys;
}

/** Ours: as `chat --json` runs a prompt (engine.ts generate on a Session), ids instead of text. */
async function oursEngine(name: EngineName, path: string): Promise<Engine> {
  const t0 = performance.now();
  const loaded: LoadedModel = await loadModel(path, nb, { weights: "packed" });
  const loadS = (performance.now() - t0) / 1000;
  const w = loaded.model.weights;
  const linears = [...w.blocks.flatMap((b) => Object.values(b.linears).map((l) => l.weight)), w.lmHead];
  let bytes = 0, params = 0;
  for (const lw of linears) {
    if (!isPackedWeight(lw)) throw new Error(`${path}: a linear is not packed`);
    bytes += lw.bytes;
    params += lw.N * lw.K;
  }
  const session = new Session(loaded.model, promptLen + genLen + 1, kv);
  return {
    name, label: `ours, ${path.endsWith(".gguf") ? "Q4_0 GGUF" : name === "ours-gptq-lm-head" ? "4-bit g128 HF-GPTQ folder, lm_head 8-bit g32" : "4-bit g128 HF-GPTQ folder"}`, bytesPerToken: bytes, params, kvBytesPerToken: kvBytesPerToken(loaded.model.cfg.numLayers, loaded.model.cfg.numKvHeads * loaded.model.cfg.headDim, kv === "f16" ? 2 : 4),
    describe: `${describeKernelPath(loaded.model)} (loaded in ${loadS.toFixed(2)} s)`,
    async run(prompt, gen = genLen) {
      session.reset();
      const r = await generate(session, loaded.tokenizer, { prompt, maxTokens: gen, sampler: GREEDY, stopIds: [], ignoreEos: true });
      if (r.ids.length !== gen) throw new Error(`ours generated ${r.ids.length} tokens, expected ${gen}`);
      const s = r.stats;
      return { prefillTps: (s.prefillTokens * 1000) / s.prefillMs, decodeTps: (s.decodeSteps * 1000) / s.decodeMs };
    },
    async close() { /* packed weights are freed by their finalizers */ },
  };
}

/** llama.cpp through node-llama-cpp: the prompt in one batch, then single-token greedy steps. */
async function llamaEngine(): Promise<Engine> {
  const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: threads });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: GGUF, gpuLayers: 0 });
  const loadS = (performance.now() - t0) / 1000;
  const ctx = await model.createContext({
    contextSize: promptLen + genLen + 64, batchSize: promptLen, threads: { ideal: threads, min: threads }, flashAttention: false,
  });
  const seq: LlamaContextSequence = ctx.getSequence();
  const greedy = { generateNext: { token: true, options: { temperature: 0 } } };
  type EvalInput = Parameters<LlamaContextSequence["controlledEvaluate"]>[0];
  // Bytes per token: the GGUF tensors of every linear and the output head (token_embd: one row per token).
  const g = openGguf(GGUF);
  const tensors = [...g.tensors.values()];
  g.close();
  let bytes = 0, params = 0;
  for (const t of tensors) {
    if (t.dims.length !== 2 || t.name === "token_embd.weight") continue;
    bytes += t.byteSize;
    params += t.dims[0]! * t.dims[1]!;
  }
  const kTensors = tensors.filter((t) => /^blk\.\d+\.attn_k\.weight$/.test(t.name)); // [H → nKv·d] per layer
  const kvDim = kTensors[0]?.dims[1] ?? 0;
  const types = [...new Set(tensors.filter((t) => t.dims.length === 2).map((t) => `${t.name.replace(/^blk\.\d+\./, "")} ${t.type.name}`))].join(", ");
  return {
    name: "llama-q4_0", label: "llama.cpp (node-llama-cpp), Q4_0 GGUF", bytesPerToken: bytes, params,
    kvBytesPerToken: kvBytesPerToken(kTensors.length, kvDim, 2), // f16: llama.cpp's default cache type
    describe: `node-llama-cpp ${nlcVersion()}, CPU, ${threads} threads, batch ${promptLen}, flash attention off; loaded in ${loadS.toFixed(2)} s; tensors: ${types}`,
    async run(prompt, gen = genLen) {
      await seq.clearHistory();
      const tp = performance.now();
      let res = await seq.controlledEvaluate(prompt.map((t, i) => (i === prompt.length - 1 ? [t as Token, greedy] : (t as Token))) as EvalInput);
      const prefillMs = performance.now() - tp;
      const td = performance.now();
      for (let i = 1; i < gen; i++) res = await seq.controlledEvaluate([[res.at(-1)!.next.token!, greedy]] as EvalInput);
      const decodeMs = performance.now() - td;
      return { prefillTps: (prompt.length * 1000) / prefillMs, decodeTps: ((gen - 1) * 1000) / decodeMs };
    },
    async close() { await ctx.dispose(); await model.dispose(); },
  };
}

function nlcVersion(): string {
  try { return (JSON.parse(readFileSync(join(import.meta.dirname, "..", "node_modules", "node-llama-cpp", "package.json"), "utf8")) as { version: string }).version; } catch { return "?"; }
}

// ---------------------------------------------------------------- run
const rand = mulberry32(512);
const all: Engine[] = [];
for (const e of engines) all.push(e === "llama-q4_0" ? await llamaEngine() : await oursEngine(e, paths[e]));
const V = 32000;
const prompt = Array.from({ length: promptLen }, () => 3 + Math.floor(rand() * (V - 3)));
const runs = new Map<EngineName, Run[]>(all.map((e) => [e.name, []]));
/** Each engine's rounds against the probes right before and after them. */
const brackets = new Map<EngineName, Bracketed[]>(all.map((e) => [e.name, []]));
/** The same rounds with the KV-cache reads counted too (weights + KV bytes per token). */
const bracketsKv = new Map<EngineName, Bracketed[]>(all.map((e) => [e.name, []]));
const probeLog = (gbs: number): number => { log(`probe ${gbs.toFixed(1)} GB/s`); return gbs; };
// Warm-up: the whole prompt once (first-use costs: llama.cpp's compute buffers for a batch this size, our forward buffers).
for (const e of all) { log(`warm-up ${e.name}`); await e.run(prompt, 4); }
// Probes in run order: probes[k] is taken right before the k-th timed round and right after the (k−1)-th.
const probes = [probeLog(shortProbe(nb, threads))];
for (let r = 0; r < reps; r++) {
  for (const e of all) {
    const x = await e.run(prompt);
    probes.push(probeLog(shortProbe(nb, threads)));
    runs.get(e.name)!.push(x);
    const b = bracket((e.bytesPerToken * x.decodeTps) / 1e9, probes.at(-2)!, probes.at(-1)!);
    brackets.get(e.name)!.push(b);
    bracketsKv.get(e.name)!.push(bracket(((e.bytesPerToken + e.kvBytesPerToken) * x.decodeTps) / 1e9, probes.at(-2)!, probes.at(-1)!));
    log(`round ${r + 1} ${e.name}: prefill ${x.prefillTps.toFixed(1)} tokens/s, decode ${x.decodeTps.toFixed(2)} tokens/s = ${b.pct.toFixed(0)}% of ${b.probe.toFixed(1)} GB/s${b.invalid === null ? "" : ` (not valid: ${b.invalid})`}`);
  }
}
for (const e of all) await e.close();

// ---------------------------------------------------------------- report
const med = (e: Engine, k: keyof Run): number => median(runs.get(e.name)!.map((x) => x[k]));
const ref = all.find((e) => e.name === "llama-q4_0");
const gbs = (e: Engine): number => (e.bytesPerToken * med(e, "decodeTps")) / 1e9;
const pctOf = (e: Engine): RoundsSummary => summarize(brackets.get(e.name)!);
const pctKvOf = (e: Engine): RoundsSummary => summarize(bracketsKv.get(e.name)!);
/** min–max of the probes around an engine's rounds */
const probeRange = (e: Engine): string => {
  const p = brackets.get(e.name)!.flatMap((b) => [b.before, b.after]);
  return `${Math.min(...p).toFixed(1)}–${Math.max(...p).toFixed(1)}`;
};
const rows = all.map((e) => {
  const vs = (k: keyof Run): string => (ref === undefined ? "–" : `${(med(e, k) / med(ref, k)).toFixed(2)}×`);
  return [
    e.label, ((8 * e.bytesPerToken) / e.params).toFixed(2), (e.bytesPerToken / 2 ** 20).toFixed(0),
    med(e, "prefillTps").toFixed(1), vs("prefillTps"), med(e, "decodeTps").toFixed(2), vs("decodeTps"),
    gbs(e).toFixed(1), probeRange(e), pctCell(pctOf(e)), (e.kvBytesPerToken / 2 ** 20).toFixed(1), pctCell(pctKvOf(e)),
  ];
});
const head = ["engine, weights", "bpw (linears + lm_head)", "MiB read / token", `prefill tokens/s (${promptLen})`, "vs llama.cpp", `decode tokens/s (${genLen})`, "vs llama.cpp", "decode GB/s", "probes around its rounds GB/s", "% of probe", "KV MiB read / token", "% of probe, weights + KV"];
const flags = process.argv.slice(2).join(" ");
const target = (): string[] => {
  if (ref === undefined) return [];
  const out: string[] = [];
  const oq = all.find((e) => e.name === "ours-q4_0"), og = all.find((e) => e.name === "ours-gptq"), oh = all.find((e) => e.name === "ours-gptq-lm-head");
  if (oq) {
    const p = med(oq, "prefillTps") / med(ref, "prefillTps"), d = pctOf(oq).pct;
    out.push(`- prompt, ours / llama.cpp on the same Q4_0 GGUF: **${p.toFixed(2)}×** (target ≥ 1.5×: ${p >= 1.5 ? "met" : "not met"})`);
    out.push(`- generation, ours on the Q4_0 GGUF: **${Number.isNaN(d) ? "no valid % of the probe (see the notes on the probes)" : `${d.toFixed(0)}% of the probe`}** (target ≥ 90%: ${Number.isNaN(d) ? "not judged" : d >= 90 ? "met" : "not met"}); ${pctCell(pctKvOf(oq))} with the KV-cache reads counted; ${(med(oq, "decodeTps") / med(ref, "decodeTps")).toFixed(2)}× llama.cpp`);
  }
  if (og) {
    const d = med(og, "decodeTps") / med(ref, "decodeTps");
    out.push(`- generation, ours on the 4-bit g128 folder (${((8 * og.bytesPerToken) / og.params).toFixed(2)} bpw over linears + lm_head) / llama.cpp Q4_0 (${((8 * ref.bytesPerToken) / ref.params).toFixed(2)} bpw): **${d.toFixed(2)}×** (target ≥ 1.25×: ${d >= 1.25 ? "met" : "not met"})`);
  }
  if (oh) {
    const d = med(oh, "decodeTps") / med(ref, "decodeTps");
    out.push(`- generation, ours on the 4-bit g128 folder with lm_head 8-bit g32 (\`--quantize-lm-head\`, ${((8 * oh.bytesPerToken) / oh.params).toFixed(2)} bpw) / llama.cpp Q4_0: **${d.toFixed(2)}×**${og ? `; ${(med(oh, "decodeTps") / med(og, "decodeTps")).toFixed(2)}× the bf16-lm_head folder` : ""}`);
  }
  out.push(`- llama.cpp generation: ${pctCell(pctOf(ref))} of the probe (${pctCell(pctKvOf(ref))} with its KV-cache reads)`);
  return out;
};
const sh = (cmd: string): string => { try { return execSync(cmd, { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { return "unknown"; } };
const report = [
  "# End to end: TinyLlama-shaped model, ours vs llama.cpp", "",
  "```", `/work/bin/bench npx tsx eval/bench-e2e.ts ${flags}`.trim(), "```", "",
  "| | |", "|---|---|",
  `| date | ${started} |`, `| commit | ${sh("git rev-parse --short HEAD")} |`,
  `| CPU | ${cpus()[0]?.model ?? "?"}, ${cpus().length} cores |`,
  `| threads | ${threads} (ours and llama.cpp) |`,
  `| models | ${dir}: gptq-w4g128/ (${(fileBytes(GPTQ) / 2 ** 20).toFixed(0)} MiB)${engines.includes("ours-gptq-lm-head") ? `, gptq-w4g128-lm-head/ (${(fileBytes(GPTQ_HEAD) / 2 ** 20).toFixed(0)} MiB)` : ""} and q4_0.gguf (${(fileBytes(GGUF) / 2 ** 20).toFixed(0)} MiB), same random weights (eval/gen-tinyllama.ts) |`,
  `| run | prompt ${promptLen} seeded random ids, then ${genLen} greedy tokens, EOS ignored; ${reps} rounds interleaved, medians |`,
  `| loadavg before / after | ${load0.map((v) => v.toFixed(2)).join(" ")} / ${loadavg().map((v) => v.toFixed(2)).join(" ")} |`,
  "",
  "## Streaming-read bandwidth probes", "",
  `Before the first timed round and after every round: ${BRACKET_PASSES} passes over ${(PROBE_BYTES / 2 ** 20).toFixed(0)} MiB allocated like packed weights (2 MiB-aligned, MADV_HUGEPAGE), ` +
    `${threads} threads, 4 streams each (native/src/packed_probe.cc), median of the passes. In run order (GB/s): ${probes.map((v) => v.toFixed(1)).join(", ")}; ` +
    `spread (max / min − 1) ${(100 * spread(probes)).toFixed(0)}%.`, "",
  "## Prompt and generation", "",
  table(head, rows), "",
  "decode GB/s = MiB read per token (the packed bytes of every linear and lm_head: what one decode step streams; KV-cache reads are not counted) × decode tokens/s. " +
    `The last two columns count them too: each step j = 1 … ${genLen - 1} reads a key and a value row per layer for ${promptLen} + j positions (mean ${promptLen + genLen / 2}), at the cache's element size (ours --kv ${kv}; llama.cpp f16, its default — without flash attention it may read a padded window, so its figure is a floor).`,
  "Prefill = the whole prompt in one call (llama.cpp: one batch of the prompt; ours: engine.ts chunks of 256); decode = single-token steps after the first generated token.",
  `% of probe = a round's decode GB/s / the mean of the probes right before and right after it; the median over the valid rounds, then (the range over all rounds). ` +
    `A round is not valid when its two probes disagree by more than ${(100 * PROBE_AGREE).toFixed(0)}% or it read more than 100% of them.`,
  "", ...probeNotes(probes, all.flatMap((e) => brackets.get(e.name)!.map((b, r) => ({ label: `round ${r + 1}, ${e.label}`, b })))),
  "", ...target(), "",
  "Engines:", ...all.map((e) => `- ${e.label}: ${e.describe}`), "",
].join("\n");
function fileBytes(p: string): number {
  const st = statSync(p);
  return st.isDirectory() ? statSync(join(p, "model.safetensors")).size : st.size;
}
log(`\n${report}`);
const tmp = `${opts.out}.tmp${process.pid}`;
writeFileSync(tmp, report);
renameSync(tmp, opts.out);
log(`wrote ${opts.out}; ${uptime()}`);

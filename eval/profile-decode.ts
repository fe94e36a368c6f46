/**
 * Where one decode step's time goes (issues 9 / 12): each matmul group vs everything else
 * (norms, RoPE, attention over the KV cache, residual adds, SwiGLU, embedding, lm_head,
 * argmax, JS overhead, GC), measured on the real model in one process.
 *
 *   /work/bin/bench npx tsx eval/profile-decode.ts --model /tmp/qllm-lmhead-int8bench/int8-t6-lm-head \
 *       [--model /tmp/qllm-tinyllama/q4_0.gguf] [--threads 2] [--steps 32] [--prompt 32] [--kv f32|f16] [--out eval/reports/profile-decode.md]
 *
 * How: the model runs on a timing proxy of the native backend (every matmul, matmulMany,
 * attention and swiglu call is timed with performance.now() at the Backend boundary, so a
 * call's time includes its TS argument checks and the pool wake-up), keyed by the weight's
 * shape (q/k/v, o, gate/up, down, lm_head). The step's wall time minus those is the time in
 * TypeScript between kernel calls (RMSNorm, RoPE, residual adds, embedding row, argmax,
 * glue); that remainder is split by timing each TS operation alone on the same shapes
 * (hot, many calls, × calls per step), and V8's GC pauses during the steps are read from a
 * PerformanceObserver. A second pass without the proxy gives the plain step time (the
 * proxy's own cost is the difference). Memory-bound calls are shown as GB/s of the packed
 * bytes they read against short read-bandwidth probes taken right before and right after
 * the timed pass the table comes from (eval/bench-quantized/probe.ts: the host's bandwidth
 * moves within minutes, so one probe at the start cannot stand for every model).
 */
import { execSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { PerformanceObserver } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { isPackedWeight, type Backend, type LinearWeight, type ManyPart } from "../src/backend/backend.ts";
import { createNativeBackend } from "../src/backend/native.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { describeKernelPath } from "../src/load/kernel-path.ts";
import { rmsNorm } from "../src/nn/block.ts";
import { argmax } from "../src/nn/generate.ts";
import { Model } from "../src/nn/model.ts";
import { mulberry32 } from "../src/util/random.ts";
import { bracket, pctOf, probeNotes, shortProbe, type Bracketed } from "./bench-quantized/probe.ts";

const { values } = parseArgs({ options: {
  model: { type: "string", multiple: true }, threads: { type: "string" }, steps: { type: "string" }, prompt: { type: "string" },
  out: { type: "string" }, kv: { type: "string" },
} });
const models = values.model ?? ["/tmp/qllm-lmhead-int8bench/int8-t6-lm-head", "/tmp/qllm-tinyllama/q4_0.gguf"];
const threads = Number(values.threads ?? 2), steps = Number(values.steps ?? 32), promptLen = Number(values.prompt ?? 32);
const kv = values.kv ?? "f32";
if (kv !== "f32" && kv !== "f16") throw new Error(`--kv: f32 or f16, not ${kv}`);
const nb = createNativeBackend({ threads });
const lines: string[] = [];
const say = (s: string): void => { console.log(s); lines.push(s); };
const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]!; };
const load0 = loadavg();

const passes = Array.from(nb.readBandwidth(512 * 2 ** 20, threads, 6));
say(`read-bandwidth probe at the start: ${median(passes).toFixed(1)} GB/s (median of ${passes.length} passes over 512 MiB, ${threads} threads; each model's % are against probes around its own timed pass)`);

/** Accumulated time and calls of one kind of backend call. */
interface Slot { ms: number; calls: number; bytes: number }

function timedBackend(b: Backend, names: Map<LinearWeight, string>, slots: Map<string, Slot>): Backend {
  const add = (key: string, ms: number, bytes: number): void => {
    const s = slots.get(key) ?? { ms: 0, calls: 0, bytes: 0 };
    s.ms += ms; s.calls++; s.bytes += bytes;
    slots.set(key, s);
  };
  const bytesOf = (w: LinearWeight): number => (isPackedWeight(w) ? w.bytes : w.byteLength);
  const wrap: Partial<Backend> = {
    matmul: (x, w, M, K, N, bias, out) => {
      const t0 = performance.now();
      const y = b.matmul(x, w, M, K, N, bias, out);
      add(`matmul ${names.get(w) ?? `${N}×${K}`}`, performance.now() - t0, bytesOf(w));
      return y;
    },
    attention: (q, k, v, shape, out) => {
      const t0 = performance.now();
      b.attention(q, k, v, shape, out);
      add("attention (native)", performance.now() - t0, 2 * k.BYTES_PER_ELEMENT * (shape.pos0 + shape.T) * shape.nKvHead * shape.headDim);
    },
  };
  if (b.swiglu !== undefined) {
    const sw = b.swiglu.bind(b);
    wrap.swiglu = (g, u, n) => { const t0 = performance.now(); sw(g, u, n); add("swiglu (native)", performance.now() - t0, 0); };
  }
  if (b.matmulMany !== undefined) {
    const mm = b.matmulMany.bind(b);
    wrap.matmulMany = (x: Float32Array, M: number, K: number, parts: readonly ManyPart[]) => {
      const t0 = performance.now();
      mm(x, M, K, parts);
      add(`matmul ${parts.map((p) => names.get(p.w) ?? "?").join("+")}`, performance.now() - t0, parts.reduce((a, p) => a + bytesOf(p.w), 0));
    };
  }
  return new Proxy(b, {
    get(target, prop) {
      if (prop in wrap) return wrap[prop as keyof Backend];
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Milliseconds per call of f, hot: median of 5 batches of n calls. */
function perCall(n: number, f: () => void): number {
  for (let i = 0; i < n; i++) f();
  const t: number[] = [];
  for (let r = 0; r < 5; r++) { const t0 = performance.now(); for (let i = 0; i < n; i++) f(); t.push((performance.now() - t0) / n); }
  return median(t);
}

let gcMs = 0, gcCount = 0;
const gcObs = new PerformanceObserver((list) => { for (const e of list.getEntries()) { gcMs += e.duration; gcCount++; } });
gcObs.observe({ entryTypes: ["gc"] });

for (const path of models) {
  const loaded = await loadModel(path, nb, { weights: "packed" });
  const { cfg } = loaded;
  const H = cfg.hiddenSize, V = cfg.vocabSize, L = cfg.numLayers, d = cfg.headDim;
  const names = new Map<LinearWeight, string>();
  for (const blk of loaded.model.weights.blocks) for (const [n, l] of Object.entries(blk.linears)) names.set(l.weight, n);
  names.set(loaded.model.weights.lmHead, "lm_head");
  const slots = new Map<string, Slot>();
  const timed = new Model(cfg, loaded.model.weights, timedBackend(nb, names, slots));
  const r = mulberry32(1);
  const prompt = Array.from({ length: promptLen }, () => Math.floor(r() * V));

  /** ms per decode step (argmax included) over `steps` steps after the prompt. */
  const decode = async (m: Model): Promise<number> => {
    const c = m.newCache(promptLen + steps + 1, kv);
    let logits = m.forward(prompt, c, { logits: "last" });
    await new Promise((res) => setImmediate(res)); // let queued GC observer entries of the prefill land
    slots.clear(); gcMs = 0; gcCount = 0;
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) logits = m.forward([argmax(logits, 0, V)], c, { logits: "last" });
    const ms = (performance.now() - t0) / steps;
    argmax(logits, 0, V);
    return ms;
  };
  await decode(loaded.model); // warm-up (JIT, pool, page tables)
  const plainRuns: number[] = [], timedRuns: number[] = [];
  let snap = new Map<string, Slot>(), gc = { ms: 0, count: 0 };
  // The table's timed pass (rep 1) between two short probes.
  let before = NaN, after = NaN;
  for (let rep = 0; rep < 3; rep++) {
    plainRuns.push(await decode(loaded.model));
    if (rep === 1) before = shortProbe(nb, threads);
    timedRuns.push(await decode(timed));
    await new Promise((res) => setImmediate(res));
    if (rep === 1) { snap = new Map([...slots].map(([k, v]) => [k, { ...v }])); gc = { ms: gcMs, count: gcCount }; after = shortProbe(nb, threads); }
  }
  const judged: { label: string; b: Bracketed }[] = [];
  const plain = median(plainRuns), timedStep = timedRuns[1]!;

  // The TS operations between kernel calls, alone on the same shapes (hot).
  const x = Float32Array.from({ length: H }, () => r() - 0.5), y = new Float32Array(H), wn = new Float32Array(H).fill(1);
  const q = Float32Array.from({ length: cfg.numHeads * d }, () => r() - 0.5), kk = Float32Array.from({ length: cfg.numKvHeads * d }, () => r() - 0.5);
  const logits = Float32Array.from({ length: V }, () => r());
  const emb = new Float32Array(H);
  const ts: [string, number, number][] = [
    ["RMSNorm (TS), 2 per layer + final", perCall(2000, () => rmsNorm(x, wn, 1, H, 1e-5, y)), 2 * L + 1],
    ["RoPE (TS), q and k per layer", perCall(2000, () => { timed.rope.apply(q, 1, cfg.numHeads, promptLen); timed.rope.apply(kk, 1, cfg.numKvHeads, promptLen); }), L],
    ["residual add (TS), 2 per layer", perCall(2000, () => { for (let i = 0; i < H; i++) y[i] = y[i]! + x[i]!; }), 2 * L],
    ["embedding row", perCall(2000, () => timed.embed([7]).length + emb.length), 1],
    ["argmax over the vocabulary (TS)", perCall(200, () => argmax(logits, 0, V)), 1],
  ];
  const kernelMs = [...snap.values()].reduce((a, s) => a + s.ms / steps, 0);
  const tsMs = ts.reduce((a, [, ms, n]) => a + ms * n, 0);
  const gcStep = gc.ms / steps;
  const rest = timedStep - kernelMs - tsMs - gcStep;

  say("");
  say(`## ${path}`);
  say("");
  say(`${describeKernelPath(loaded.model)}`);
  say("");
  say(`decode step: **${plain.toFixed(2)} ms** (${(1000 / plain).toFixed(2)} tokens/s; median of 3 × ${steps} steps after a ${promptLen}-token prompt, ${kv} KV cache); with the timing proxy ${timedStep.toFixed(2)} ms (its own cost ${(timedStep - plain).toFixed(2)} ms)`);
  say("");
  say(`probes around the timed pass: ${before.toFixed(1)} GB/s before, ${after.toFixed(1)} after (each the median of 3 passes over 512 MiB); % of probe = of their mean, ${((before + after) / 2).toFixed(1)} GB/s`);
  say("");
  say("| part | ms / step | share | calls / step | µs / call | GB/s read | % of probe |");
  say("|---|---:|---:|---:|---:|---:|---:|");
  /** A matmul reads its weights from DRAM, so its % is judged against the probes; the KV cache may sit in L3. */
  const row = (name: string, ms: number, calls: number, bytes: number): void => {
    const gbs = bytes > 0 && ms > 0 ? bytes / (ms / 1000) / 1e9 : NaN;
    const b = bracket(gbs, before, after);
    if (name.startsWith("matmul") && !Number.isNaN(gbs)) judged.push({ label: name, b });
    say(`| ${name} | ${ms.toFixed(3)} | ${((ms / timedStep) * 100).toFixed(1)}% | ${calls.toFixed(0)} | ${calls > 0 ? ((ms / calls) * 1000).toFixed(1) : "–"} | ${Number.isNaN(gbs) ? "–" : gbs.toFixed(1)} | ${Number.isNaN(gbs) ? "–" : name.startsWith("matmul") ? pctOf(b) : `${b.pct.toFixed(0)}%`} |`);
  };
  let matmulMs = 0, matmulBytes = 0, nativeCalls = 0;
  for (const [k, s] of [...snap].sort((a, b) => b[1].ms - a[1].ms)) {
    row(k, s.ms / steps, s.calls / steps, s.bytes / steps);
    nativeCalls += s.calls / steps;
    if (k.startsWith("matmul")) { matmulMs += s.ms / steps; matmulBytes += s.bytes / steps; }
  }
  for (const [name, ms, n] of ts) row(name, ms * n, n, 0);
  row(`GC pauses (${(gc.count / steps).toFixed(2)} per step)`, gcStep, gc.count / steps, 0);
  row("rest: JS glue, allocation, proxy", rest, 0, 0);
  say("");
  const inside = bracket(matmulBytes / (matmulMs / 1000) / 1e9, before, after), whole = bracket(matmulBytes / (plain / 1000) / 1e9, before, after);
  judged.push({ label: "all matmuls, inside the calls", b: inside });
  say(`matmuls: ${matmulMs.toFixed(2)} ms / step (${((matmulMs / timedStep) * 100).toFixed(0)}%), ${(matmulBytes / 2 ** 20).toFixed(0)} MiB read, ${inside.gbs.toFixed(1)} GB/s inside the calls = ${pctOf(inside)} of the probe; over the whole step ${whole.gbs.toFixed(1)} GB/s = ${pctOf(whole)}.`);
  say(`everything but the matmuls: ${(timedStep - matmulMs).toFixed(2)} ms / step (${(((timedStep - matmulMs) / timedStep) * 100).toFixed(0)}%); native calls per step ${nativeCalls.toFixed(0)} (each multi-threaded one wakes the pool).`);
  say("");
  for (const l of probeNotes([before, after], judged, "around the timed pass")) say(l);
  for (const w of [...names.keys()]) if (isPackedWeight(w)) w.dispose?.();
}
gcObs.disconnect();

let commit = "unknown";
try { commit = execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { /* not a git checkout */ }
if (values.out !== undefined) {
  const cpu = execSync("lscpu | grep 'Model name' | cut -d: -f2").toString().trim();
  writeFileSync(values.out, [
    "# One decode step, part by part", "",
    `\`/work/bin/bench npx tsx eval/profile-decode.ts ${process.argv.slice(2).join(" ")}\`, ${new Date().toISOString()}, commit ${commit}.`,
    `CPU: ${cpu}, ${threads} threads; kernel level ${nb.kernelLevel}, int8 level ${nb.int8.levels()[0]}; load average ${load0.map((v) => v.toFixed(2)).join(" ")} → ${loadavg().map((v) => v.toFixed(2)).join(" ")}.`,
    "",
    "Each kernel call is timed at the Backend boundary (TS checks and pool wake-up included); the TS operations are timed alone on the same shapes (hot) × calls per step; 'rest' is the step minus all of those.",
    "", ...lines, "",
  ].join("\n"));
}

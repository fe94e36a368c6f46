/**
 * A/B of two builds of the native addon on whole decode steps, in ONE process: the model is
 * loaded once per addon (each its own backend and pool), and the rounds alternate A, B, A, B …
 * (each round: a fresh cache, a prompt, then `steps` greedy decode steps timed), so the drift of
 * this host's bandwidth hits both sides alike. Prints the median ms per step, tokens/s per side
 * and the speed-up B / A per model.
 *
 *   cp native/build/Release/quantize_llm.node /tmp/a.node   # the build to compare against
 *   … change, npm run build:native …
 *   /work/bin/bench npx tsx eval/decode-ab.ts --a /tmp/a.node --b native/build/Release/quantize_llm.node \
 *         [--model /tmp/qllm-tinyllama/q4_0.gguf --model /tmp/qllm-tinyllama/gptq-w4g128] [--rounds 5] [--steps 16] [--prompt 32] [--threads 2] [--kv f32|f16]
 *
 * --hints-on a|b: that side passes the forward's prefetch hints on (NativeBackend.prefetchHints;
 * native/src/prefetch.h): with --a and --b the same file, an off/on A/B of the hints in one build.
 * --plan-off a|b: that side runs decode steps eagerly (Model.stepPlans false: 130+ native calls
 * with TS between them) instead of replaying the recorded step in one call (native-graph.ts):
 * with --a and --b the same file, an eager/plan A/B in one build.
 * --key-rows a|b: with --kv f16, that side's cache keeps its keys row-major instead of the backend's
 * layout (NativeBackend.keyBlocks: blocks of 32 positions; native/LAYOUTS.md "KV cache"): with --a
 * and --b the same file, a row-major / blocked keys A/B in one build. With two builds, each side's
 * f16 cache takes its own backend's layout (a build before toF16Keys: row-major).
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadAddon, NativeBackend } from "../src/backend/native.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { argmax } from "../src/nn/generate.ts";
import type { Model } from "../src/nn/model.ts";
import { mulberry32 } from "../src/util/random.ts";
import { median } from "./bench-quantized/context.ts";

const { values: opts } = parseArgs({
  options: {
    a: { type: "string" }, b: { type: "string" }, model: { type: "string", multiple: true },
    rounds: { type: "string", default: "5" }, steps: { type: "string", default: "16" }, prompt: { type: "string", default: "32" },
    threads: { type: "string", default: "2" }, kv: { type: "string", default: "f32" }, "hints-on": { type: "string" }, "plan-off": { type: "string" },
    "key-rows": { type: "string" },
  },
});
if (opts.a === undefined || opts.b === undefined) throw new Error("--a and --b: the two addon files (quantize_llm.node) to compare");
const models = opts.model ?? ["/tmp/qllm-tinyllama/q4_0.gguf", "/tmp/qllm-tinyllama/gptq-w4g128"];
const rounds = Number(opts.rounds), steps = Number(opts.steps), promptLen = Number(opts.prompt);
if (opts["hints-on"] !== undefined && opts["hints-on"] !== "a" && opts["hints-on"] !== "b") throw new Error("--hints-on: a or b");
if (opts.kv !== "f32" && opts.kv !== "f16") throw new Error("--kv: f32 or f16 (the KV cache's element type)");
if (opts["plan-off"] !== undefined && opts["plan-off"] !== "a" && opts["plan-off"] !== "b") throw new Error("--plan-off: a or b");
if (opts["key-rows"] !== undefined && (opts.kv !== "f16" || (opts["key-rows"] !== "a" && opts["key-rows"] !== "b"))) throw new Error("--key-rows: a or b, with --kv f16");
const sides = [opts.a, opts.b].map((f, i) => {
  const nb = new NativeBackend(loadAddon(resolve(f)));
  nb.setThreads(Number(opts.threads));
  if (opts["hints-on"] === "ab"[i]) nb.prefetchHints = true;
  return nb;
});
const keysOf = (i: number): string => (opts.kv !== "f16" ? "" : opts["key-rows"] === "ab"[i] || !sides[i]!.keyBlocks ? " (f16 keys row-major)" : " (f16 keys in blocks)");
const note = (side: "a" | "b"): string => `${opts["hints-on"] === side ? " (hints on)" : ""}${opts["plan-off"] === side ? " (eager steps)" : ""}${keysOf("ab".indexOf(side))}`;
console.log(`A = ${opts.a}${note("a")}, B = ${opts.b}${note("b")}; ${rounds} rounds A, B alternating, ${steps} steps after a ${promptLen}-token prompt, ${opts.threads} threads, ${opts.kv} KV cache`);

/** ms per greedy decode step over `steps` steps after the prompt, in a fresh cache. */
function decodeMs(m: Model, prompt: number[], V: number, side: number): number {
  const cap = promptLen + steps + 2;
  const c = opts["key-rows"] === "ab"[side] ? m.newCache(cap, "f16", false) : m.newCache(cap, opts.kv as "f32" | "f16");
  const out = new Float32Array(V); // [1, V] reused, as Session does (no 128 KB allocation per step)
  let logits = m.forward(prompt, c, { logits: "last", out });
  logits = m.forward([argmax(logits, 0, V)], c, { logits: "last", out }); // untimed: a plan side records its step here
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) logits = m.forward([argmax(logits, 0, V)], c, { logits: "last", out });
  return (performance.now() - t0) / steps;
}

for (const path of models) {
  const loaded = [];
  for (const nb of sides) loaded.push(await loadModel(path, nb, { weights: "packed" }));
  loaded.forEach((l, i) => { l.model.stepPlans = opts["plan-off"] !== "ab"[i]; });
  const V = loaded[0]!.cfg.vocabSize, r = mulberry32(1);
  const prompt = Array.from({ length: promptLen }, () => Math.floor(r() * V));
  loaded.forEach((l, s) => decodeMs(l.model, prompt, V, s)); // warm-up: JIT, pools, page tables
  const ms: number[][] = [[], []];
  for (let round = 0; round < rounds; round++) for (let s = 0; s < 2; s++) ms[s]!.push(decodeMs(loaded[s]!.model, prompt, V, s));
  const [a, b] = ms.map(median) as [number, number];
  console.log(`${path}: A ${a.toFixed(2)} ms/step (${(1000 / a).toFixed(2)} tok/s), B ${b.toFixed(2)} ms/step (${(1000 / b).toFixed(2)} tok/s), ` +
    `B/A speed-up ${(a / b).toFixed(3)}× (per round A ${ms[0]!.map((v) => v.toFixed(1)).join(" ")}; B ${ms[1]!.map((v) => v.toFixed(1)).join(" ")})`);
}

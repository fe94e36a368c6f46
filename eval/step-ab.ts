/**
 * A/B of two builds of the native addon on single decode steps, interleaved step by step in ONE
 * process (issue 9): each side has its model and f16/f32 cache; after the prompt the steps
 * alternate A, B, A, B …, and each pair's B/A time ratio cancels the host's bandwidth drift over
 * the ~60 ms of a pair (decode-ab alternates whole rounds of 16 steps, seconds apart).
 * The order inside a pair alternates, and each step is followed by 1 ms asleep (as the ~0.5 ms of TS
 * between two steps of a Session, long enough for the other side's workers to stop polling).
 * Prints per model the median ms per step per side and the median and quartiles of the pairs' A/B.
 *
 *   /work/bin/bench npx tsx eval/step-ab.ts --a /tmp/a.node --b native/build/Release/quantize_llm.node \
 *         [--model …] [--prompt 576] [--pairs 96] [--threads 2] [--kv f16|f32]
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadAddon, NativeBackend } from "../src/backend/native.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { argmax } from "../src/nn/generate.ts";
import { mulberry32 } from "../src/util/random.ts";
import { median } from "./bench-quantized/context.ts";

const { values: opts } = parseArgs({ options: {
  a: { type: "string" }, b: { type: "string" }, model: { type: "string", multiple: true }, prompt: { type: "string", default: "576" },
  pairs: { type: "string", default: "96" }, threads: { type: "string", default: "2" }, kv: { type: "string", default: "f16" },
} });
if (opts.a === undefined || opts.b === undefined) throw new Error("--a and --b: the two addon files (quantize_llm.node) to compare");
if (opts.kv !== "f32" && opts.kv !== "f16") throw new Error("--kv: f32 or f16");
const kv = opts.kv, promptLen = Number(opts.prompt), pairs = Number(opts.pairs);
const models = opts.model ?? ["/tmp/qllm-tinyllama/q4_0.gguf", "/tmp/qllm-tinyllama/gptq-w4g128"];
const sides = [opts.a, opts.b].map((f) => { const nb = new NativeBackend(loadAddon(resolve(f))); nb.setThreads(Number(opts.threads)); return nb; });
console.log(`A = ${opts.a}, B = ${opts.b}; ${pairs} step pairs A, B after a ${promptLen}-token prompt, ${opts.threads} threads, ${kv} KV cache`);
const pause = new Int32Array(new SharedArrayBuffer(4));
const q = (a: number[], f: number): number => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(f * (s.length - 1))]!; };
for (const path of models) {
  const ms = [];
  for (const nb of sides) ms.push((await loadModel(path, nb, { weights: "packed" })).model);
  const V = ms[0]!.cfg.vocabSize, r = mulberry32(1);
  const prompt = Array.from({ length: promptLen }, () => Math.floor(r() * V));
  const st = ms.map((m) => {
    const c = m.newCache(promptLen + pairs + 4, kv);
    const logits = m.forward(prompt, c, { logits: "last" });
    return { m, c, tok: argmax(logits, 0, V) };
  });
  const step = (s: (typeof st)[number]): number => {
    const t0 = performance.now();
    const logits = s.m.forward([s.tok], s.c, { logits: "last" });
    const t = performance.now() - t0;
    s.tok = argmax(logits, 0, V);
    Atomics.wait(pause, 0, 0, 1); // 1 ms asleep: the other side's workers stop polling (pool.cc kWorkerSpin) before its step
    return t;
  };
  for (const s of st) { step(s); step(s); } // the plan is recorded on the first step
  const a: number[] = [], b: number[] = [], ratio: number[] = [];
  for (let i = 0; i < pairs; i++) {
    let x: number, y: number;
    if (i % 2 === 0) { x = step(st[0]!); y = step(st[1]!); } else { y = step(st[1]!); x = step(st[0]!); }
    a.push(x); b.push(y); ratio.push(x / y);
  }
  console.log(`${path}: A ${median(a).toFixed(2)} ms/step, B ${median(b).toFixed(2)} ms/step; pairs' A/B (B's speed-up) median ${median(ratio).toFixed(3)}× ` +
    `(quartiles ${q(ratio, 0.25).toFixed(3)} … ${q(ratio, 0.75).toFixed(3)})`);
}

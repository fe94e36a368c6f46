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
 *         [--model …] [--prompt 576] [--pairs 96] [--threads 2] [--kv f16|f32] [--env-a NAME=VALUE] [--env-b NAME=VALUE]
 *
 * --env-a / --env-b: set in process.env before each of that side's steps (and removed before the other
 * side's), for a switch the addon reads every step: e.g. one build, --env-a QLLM_STEP_EXEC=ops (the
 * reference step executor, native/src/graph.cc) against the default. --a / --b default to the repo's build.
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
  "env-a": { type: "string" }, "env-b": { type: "string" },
} });
const BUILD = "native/build/Release/quantize_llm.node";
opts.a ??= BUILD;
opts.b ??= BUILD;
const envOf = (v: string | undefined): [string, string] | null => {
  if (v === undefined) return null;
  const i = v.indexOf("=");
  if (i <= 0) throw new Error(`--env-a/--env-b: NAME=VALUE, got ${v}`);
  return [v.slice(0, i), v.slice(i + 1)];
};
const envs = [envOf(opts["env-a"]), envOf(opts["env-b"])];
const setEnv = (side: number): void => {
  for (const e of envs) if (e !== null) delete process.env[e[0]];
  const e = envs[side];
  if (e) process.env[e[0]] = e[1];
};
if (opts.kv !== "f32" && opts.kv !== "f16") throw new Error("--kv: f32 or f16");
const kv = opts.kv, promptLen = Number(opts.prompt), pairs = Number(opts.pairs);
const models = opts.model ?? ["/tmp/qllm-tinyllama/q4_0.gguf", "/tmp/qllm-tinyllama/gptq-w4g128"];
const sides = [opts.a, opts.b].map((f) => { const nb = new NativeBackend(loadAddon(resolve(f))); nb.setThreads(Number(opts.threads)); return nb; });
console.log(`A = ${opts.a}${envs[0] ? ` with ${envs[0].join("=")}` : ""}, B = ${opts.b}${envs[1] ? ` with ${envs[1].join("=")}` : ""}; ${pairs} step pairs A, B after a ${promptLen}-token prompt, ${opts.threads} threads, ${kv} KV cache`);
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
    setEnv(st.indexOf(s));
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

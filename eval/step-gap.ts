/**
 * The time around a replayed decode step that is not its ops (issue 9): what Model.forward adds
 * to the plan's own call, and the native time between a JS call of plan.run and the step's first
 * op / after its last op. One model, one cache, every call at the same position (the KV row is
 * rewritten), so the steps are alike and only the wrappers differ.
 *
 *   QLLM_STEP_PROFILE=/tmp/g.bin /work/bin/bench npx tsx eval/step-gap.ts --run [--model …] [--reps 30]
 *   npx tsx eval/step-gap.ts --report /tmp/g.bin
 *
 * --run prints, alternating the three per rep (medians, µs): plan.run alone; Model.forward with
 * opts.out and opts.argmax (as Session calls it: the plan's native pick); Model.forward with
 * opts.out, then the TS argmax over the logits (the greedy sampler's scan before the pick), also
 * timed alone. Then it calls plan.run back to back and writes each call's JS hrtime entry/return to
 * <profile>.js.json; the addon writes the step records at exit (native/src/graph.cc). --report
 * pairs them: JS call → step start, step end → JS return, step end → next step start, and the
 * plan's argmax op (graph.h kArgmax).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { StepPlan } from "../src/backend/backend.ts";
import { createNativeBackend } from "../src/backend/native.ts";
import { OpKind } from "../src/backend/native-graph.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { argmax } from "../src/nn/generate.ts";
import { mulberry32 } from "../src/util/random.ts";

const { values: opts } = parseArgs({ options: {
  run: { type: "boolean" }, report: { type: "string" }, model: { type: "string", default: "/tmp/qllm-tinyllama/q4_0.gguf" },
  prompt: { type: "string", default: "576" }, reps: { type: "string", default: "30" }, threads: { type: "string", default: "2" },
} });
const med = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;

if (opts.run) {
  const profile = process.env.QLLM_STEP_PROFILE;
  if (!profile) throw new Error("QLLM_STEP_PROFILE: set it to the profile file (the addon reads it when it loads)");
  const nb = createNativeBackend({ threads: Number(opts.threads) });
  const { cfg, model: m } = await loadModel(opts.model, nb, { weights: "packed" });
  const V = cfg.vocabSize, reps = Number(opts.reps), r = mulberry32(1);
  const prompt = Array.from({ length: Number(opts.prompt) }, () => Math.floor(r() * V));
  const c = m.newCache(prompt.length + 4, "f16");
  let logits = m.forward(prompt, c, { logits: "last" });
  logits = m.forward([argmax(logits, 0, V)], c, { logits: "last" }); // records the plan
  const plan = m.stepPlanOf(c);
  if (typeof plan !== "object") throw new Error(`no step plan: ${String(plan)}`);
  const p = c.pos, out = new Float32Array(V), pick = Int32Array.of(argmax(logits, 0, V));
  const us = (t: number): number => (performance.now() - t) * 1000;
  const A: number[] = [], B: number[] = [], C: number[] = [], S: number[] = [];
  for (let i = 0; i < reps; i++) {
    let t = performance.now(); (plan as StepPlan).run(p); A.push(us(t));
    c.pos = p; t = performance.now(); m.forward([pick[0]!], c, { logits: "last", out, argmax: pick }); B.push(us(t));
    c.pos = p; t = performance.now(); m.forward([pick[0]!], c, { logits: "last", out });
    const t1 = performance.now(), id = argmax(out, 0, V);
    S.push(us(t1)); C.push(us(t));
    if (id !== pick[0]) throw new Error(`the plan's pick ${pick[0]} is not the TS argmax ${id}`);
    c.pos = p;
  }
  const a = med(A);
  console.log(`${opts.model}, ${prompt.length} positions, ${opts.threads} threads, ${reps} reps, medians (µs):`);
  console.log(`plan.run ${a.toFixed(0)}; Model.forward with out and the plan's pick ${med(B).toFixed(0)} (+${(med(B) - a).toFixed(0)}); Model.forward with out + TS argmax ${med(C).toFixed(0)} (+${(med(C) - a).toFixed(0)}; the scan alone ${med(S).toFixed(1)})`);
  const js: string[][] = [];
  for (let i = 0; i < reps; i++) { const t0 = process.hrtime.bigint(); (plan as StepPlan).run(p); js.push([String(t0), String(process.hrtime.bigint())]); }
  writeFileSync(`${profile}.js.json`, JSON.stringify(js));
  console.log(`back-to-back calls written to ${profile}.js.json; the step records at exit to ${profile}: npx tsx eval/step-gap.ts --report ${profile}`);
} else if (opts.report) {
  const js = (JSON.parse(readFileSync(`${opts.report}.js.json`, "utf8")) as string[][]).map(([a, b]) => [BigInt(a!), BigInt(b!)] as const);
  const buf = readFileSync(opts.report), dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const steps: [bigint, bigint][] = []; // graph.cc ProfileEvent: start, end u64; op u32 (0xffffffff: a whole step); kind u8
  const argmaxOp: number[] = [];
  for (let o = 0; o + 32 <= buf.length; o += 32) {
    const span = Number(dv.getBigUint64(o + 8, true) - dv.getBigUint64(o, true)) / 1e3;
    if (dv.getUint32(o + 16, true) === 0xffffffff) steps.push([dv.getBigUint64(o, true), dv.getBigUint64(o + 8, true)]);
    else if (dv.getUint8(o + 20) === OpKind.argmax) argmaxOp.push(span);
  }
  const last = steps.slice(-js.length);
  if (last.length !== js.length) throw new Error(`${opts.report}: ${steps.length} step records for ${js.length} calls`);
  const us = (d: bigint): number => Number(d) / 1e3;
  const pre = js.map(([t0], i) => us(last[i]![0] - t0)), post = js.map(([, t1], i) => us(t1 - last[i]![1]));
  const gap = last.slice(1).map((s, i) => us(s[0] - last[i]![1]));
  console.log(`${js.length} back-to-back plan.run calls, medians (µs): JS call → step start ${med(pre).toFixed(1)}; step end → JS return ${med(post).toFixed(1)}; step end → next step start ${med(gap).toFixed(1)}; step ${med(last.map(([s, e]) => us(e - s))).toFixed(0)}; argmax op ${argmaxOp.length > 0 ? med(argmaxOp).toFixed(1) : "none"}`);
} else {
  throw new Error("--run (with QLLM_STEP_PROFILE=<file>) or --report <file>");
}

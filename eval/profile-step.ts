/**
 * Per-op profile of the replayed decode step (issue 9: where the ~9% of a step outside the packed
 * matmuls goes, and how long the single-threaded ops and the gaps between ops leave DRAM idle).
 * Two modes:
 *
 *   QLLM_STEP_PROFILE=/tmp/p.bin /work/bin/bench npx tsx eval/profile-step.ts --run \
 *       [--model /tmp/qllm-tinyllama/q4_0.gguf] [--prompt 576] [--steps 16] [--threads 2] [--kv f16|f32] [--addon <file.node>]
 *   npx tsx eval/profile-step.ts --report /tmp/p.bin [--out eval/reports/step-profile.md]
 *
 * --run: the addon (native/src/graph.cc, off unless QLLM_STEP_PROFILE names a file when it loads)
 * times every op of every replayed step (the step plan, native-graph.ts) on the calling thread;
 * this program decodes `steps` greedy steps after the prompt (2 untimed first: the plan is
 * recorded on the first) and writes the decode loop's bounds, the probe and the per-layer weight
 * bytes to <file>.meta.json. The profile is written when the process exits.
 * --report: per op kind (matmuls by role: qkv, o, gate+up, down, lm_head; attention, rmsnorm, rope,
 * add, toF16, swiglu) µs per step and % of the step (medians over the steps), per-call medians,
 * the matmuls' GB/s against the probe; the gaps between ops inside the step (the executor's own
 * time: argument decoding, the clock reads), and the time between steps (TS: argmax, the logits copy).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { isPackedWeight, type LinearWeight } from "../src/backend/backend.ts";
import { createNativeBackend, loadAddon, NativeBackend } from "../src/backend/native.ts";
import { OpKind } from "../src/backend/native-graph.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { argmax } from "../src/nn/generate.ts";
import { mulberry32 } from "../src/util/random.ts";

const { values: opts } = parseArgs({ options: {
  run: { type: "boolean" }, report: { type: "string" }, model: { type: "string" }, prompt: { type: "string", default: "576" },
  steps: { type: "string", default: "16" }, threads: { type: "string", default: "2" }, kv: { type: "string", default: "f16" },
  out: { type: "string" }, addon: { type: "string" },
} });
const med = (a: number[]): number => { if (a.length === 0) return NaN; const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]!; };

interface Meta { model: string; prompt: number; threads: number; kv: string; probe: number; loop: [string, string]; H: number; I: number; V: number; bytes: Record<string, number> }

if (opts.run) {
  const path = process.env.QLLM_STEP_PROFILE;
  if (!path) throw new Error("QLLM_STEP_PROFILE: set it to the profile file (the addon reads it when it loads)");
  if (opts.kv !== "f16" && opts.kv !== "f32") throw new Error("--kv: f16 or f32");
  const threads = Number(opts.threads), model = opts.model ?? "/tmp/qllm-tinyllama/q4_0.gguf";
  const nb = opts.addon !== undefined ? new NativeBackend(loadAddon(resolve(opts.addon))) : createNativeBackend({ threads });
  nb.setThreads(threads);
  const probe = med(Array.from(nb.readBandwidth(512 * 2 ** 20, threads, 6)));
  const { cfg, model: m } = await loadModel(model, nb, { weights: "packed" });
  const promptLen = Number(opts.prompt), steps = Number(opts.steps), V = cfg.vocabSize, r = mulberry32(1);
  const prompt = Array.from({ length: promptLen }, () => Math.floor(r() * V));
  const c = m.newCache(promptLen + steps + 4, opts.kv);
  const out = new Float32Array(V); // [1, V] reused, as Session does (no 128 KB allocation per step)
  let logits = m.forward(prompt, c, { logits: "last", out });
  for (let i = 0; i < 2; i++) logits = m.forward([argmax(logits, 0, V)], c, { logits: "last", out }); // recording + warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) logits = m.forward([argmax(logits, 0, V)], c, { logits: "last", out });
  const t1 = process.hrtime.bigint();
  const bytes = (w: LinearWeight): number => (isPackedWeight(w) ? w.bytes : w.byteLength);
  const l = m.weights.blocks[0]!.linears;
  const meta: Meta = { model, prompt: promptLen, threads, kv: opts.kv, probe, loop: [String(t0), String(t1)], H: cfg.hiddenSize, I: cfg.intermediateSize, V,
    bytes: { qkv: bytes(l.q.weight) + bytes(l.k.weight) + bytes(l.v.weight), o: bytes(l.o.weight), "gate+up": bytes(l.gate.weight) + bytes(l.up.weight),
      down: bytes(l.down.weight), lm_head: bytes(m.weights.lmHead) } };
  writeFileSync(`${path}.meta.json`, JSON.stringify(meta));
  console.log(`probe ${probe.toFixed(1)} GB/s; ${(Number(t1 - t0) / 1e6 / steps).toFixed(2)} ms/step; meta in ${path}.meta.json; the profile is written at exit`);
} else if (opts.report !== undefined) {
  const buf = readFileSync(opts.report), meta = JSON.parse(readFileSync(`${opts.report}.meta.json`, "utf8")) as Meta;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  type Ev = { start: bigint; end: bigint; op: number; kind: number; parts: number; n: number; k: number };
  const evs: Ev[] = [];
  for (let o = 0; o + 32 <= buf.byteLength; o += 32) {
    evs.push({ start: dv.getBigUint64(o, true), end: dv.getBigUint64(o + 8, true), op: dv.getUint32(o + 16, true), kind: dv.getUint8(o + 20),
      parts: dv.getUint8(o + 21), n: dv.getUint32(o + 24, true), k: dv.getUint32(o + 28, true) });
  }
  const [l0, l1] = meta.loop.map(BigInt) as [bigint, bigint];
  // Steps: each step's op records precede its step record (one calling thread; steps do not overlap).
  const steps: { step: Ev; ops: Ev[] }[] = [];
  let ops: Ev[] = [];
  for (const e of evs) {
    if (e.op !== 0xffffffff) { ops.push(e); continue; }
    if (e.start >= l0 && e.end <= l1) steps.push({ step: e, ops });
    ops = [];
  }
  if (steps.length === 0) throw new Error(`${opts.report}: no replayed step inside the decode loop (was QLLM_STEP_PROFILE set, the plan on?)`);
  const kindName = Object.fromEntries(Object.entries(OpKind).map(([k, v]) => [v, k])) as Record<number, string>;
  /** The op's role: a matmul by its weight's shape and its place in the layer, else its kind. */
  const roles = (list: Ev[]): string[] => {
    let afterAttn = false;
    return list.map((e) => {
      if (e.kind === OpKind.attention || e.kind === OpKind.attentionF16 || e.kind === OpKind.attentionF16Blocks) { afterAttn = true; return "attention"; }
      if (e.kind !== OpKind.matmulPacked && e.kind !== OpKind.matmulParts) return kindName[e.kind]!;
      if (e.n === meta.V) return "lm_head";
      if (e.k === meta.I) return "down";
      if (e.parts === 3) return "qkv";
      if (e.parts === 2) return "gate+up";
      if (afterAttn) { afterAttn = false; return "o"; }
      return e.n === meta.I ? "gate+up" : "qkv";  // separate weights: q, k, v before attention, gate and up after o
    });
  };
  const ns = (a: bigint, b: bigint): number => Number(b - a);
  type Acc = { perStep: number[]; perCall: number[]; calls: number };
  const acc = new Map<string, Acc>();
  const stepNs: number[] = [], gapNs: number[] = [], between: number[] = [];
  const order = ["qkv", "o", "gate+up", "down", "lm_head", "attention", "rmsNorm", "rope", "add", "toF16", "toF16Keys", "swiglu", "argmax"];
  for (const [si, { step, ops: list }] of steps.entries()) {
    stepNs.push(ns(step.start, step.end));
    if (si > 0) between.push(ns(steps[si - 1]!.step.end, step.start));
    const sums = new Map<string, number>();
    const rs = roles(list);
    let inOps = 0;
    list.forEach((e, i) => {
      const d = ns(e.start, e.end), role = rs[i]!;
      inOps += d;
      sums.set(role, (sums.get(role) ?? 0) + d);
      const a = acc.get(role) ?? { perStep: [], perCall: [], calls: 0 };
      a.perCall.push(d);
      if (si === 0) a.calls++;
      acc.set(role, a);
    });
    for (const [role, s] of sums) acc.get(role)!.perStep.push(s);
    gapNs.push(ns(step.start, step.end) - inOps);
  }
  const stepMed = med(stepNs), us = (v: number): string => (v / 1000).toFixed(1), pct = (v: number): string => `${(100 * v / stepMed).toFixed(1)}%`;
  const lines = [
    `${meta.model}, prompt ${meta.prompt}, ${meta.kv} cache, ${meta.threads} threads; probe ${meta.probe.toFixed(1)} GB/s; ${steps.length} replayed steps of ${steps[0]!.ops.length} ops`,
    `step (runGraph, entry to return): median ${us(stepMed)} µs; between steps (TS: argmax, logits copy, plan.run checks): median ${us(med(between))} µs`, "",
    "µs per step and % of the step: medians over the steps (the sums of the rows need not add up to the step); per call: median over all calls; " +
    "GB/s: the role's weight bytes per step / its median time per step",
    "",
    "| op | calls/step | µs/step | % step | µs/call | GB/s | % probe |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ];
  const layers = meta.bytes ? steps[0]!.ops.filter((e, i) => roles(steps[0]!.ops)[i] === "o").length : 0;
  let matmulSum = 0, otherSum = 0;
  for (const role of [...order, ...[...acc.keys()].filter((k) => !order.includes(k))]) {
    const a = acc.get(role);
    if (a === undefined) continue;
    const perStep = med(a.perStep), b = meta.bytes[role];
    const isMatmul = b !== undefined;
    if (isMatmul) matmulSum += perStep; else otherSum += perStep;
    const gbs = isMatmul ? (b * (role === "lm_head" ? 1 : layers)) / perStep : NaN;
    lines.push(`| ${role} | ${a.calls} | ${us(perStep)} | ${pct(perStep)} | ${us(med(a.perCall))} | ${isMatmul ? gbs.toFixed(1) : ""} | ${isMatmul ? `${(100 * gbs / meta.probe).toFixed(0)}%` : ""} |`);
  }
  lines.push(`| all packed matmuls | | ${us(matmulSum)} | ${pct(matmulSum)} | | | |`);
  lines.push(`| all other ops | | ${us(otherSum)} | ${pct(otherSum)} | | | |`);
  lines.push(`| gaps between ops | | ${us(med(gapNs))} | ${pct(med(gapNs))} | ${us(med(gapNs) / steps[0]!.ops.length)} per op | | |`);
  console.log(lines.join("\n"));
  if (opts.out) writeFileSync(opts.out, lines.join("\n") + "\n");
} else throw new Error("--run (with QLLM_STEP_PROFILE set) or --report <profile file>");

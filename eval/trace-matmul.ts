/**
 * Per-thread trace of the packed decode matmul calls (issue 9: q+k+v and o read below the probe
 * inside the decode step, while the same matrices called back to back alone read more).
 * Two modes:
 *
 *   QLLM_MATMUL_TRACE=/tmp/t.bin /work/bin/bench npx tsx eval/trace-matmul.ts --run \
 *       [--model /tmp/qllm-tinyllama/q4_0.gguf] [--prompt 576] [--steps 16] [--threads 2]
 *   npx tsx eval/trace-matmul.ts --report /tmp/t.bin [--out eval/reports/….md]
 *
 * --run: the addon (native/src/packed_trace.h, off unless QLLM_MATMUL_TRACE names a file)
 * records every packed matmul call; this program runs 3 phases and writes their bounds
 * (process.hrtime.bigint(), the trace's clock) to <trace>.phases.json: "decode" (greedy
 * Session-style steps after the prompt, f16 KV cache), "seq" (each layer's q+k+v, o, gate+up
 * and down called alone in layer order, as /work/tasks/s11-seq.ts) and "repeat" (one layer's
 * q+k+v 200 times back to back). The trace is written when the process exits.
 * --report: per phase and per call kind (by N, K and parts), medians over the calls of the call's
 * time split into entry → quantized, quantized → first task start per thread, the span walk's
 * first 2 steps and the rest (µs per step, i.e. per row group of each of the 4 streams), task
 * end → the other thread's last task end (tail imbalance) and → return, and the GB/s; "steals":
 * per call, the mean number of times a thread's span started on the back of another share
 * (the decode split, native/src/packed.h SpanSplit; 0 in builds before it).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { isPackedWeight, type LinearWeight } from "../src/backend/backend.ts";
import { createNativeBackend } from "../src/backend/native.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { argmax } from "../src/nn/generate.ts";
import { mulberry32 } from "../src/util/random.ts";

const { values: opts } = parseArgs({ options: {
  run: { type: "boolean" }, report: { type: "string" }, model: { type: "string" }, prompt: { type: "string", default: "576" },
  steps: { type: "string", default: "16" }, threads: { type: "string", default: "2" }, out: { type: "string" },
} });
const med = (a: number[]): number => { if (a.length === 0) return NaN; const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]!; };

if (opts.run) {
  const path = process.env.QLLM_MATMUL_TRACE;
  if (!path) throw new Error("QLLM_MATMUL_TRACE: set it to the trace file (the addon reads it when it loads)");
  const nb = createNativeBackend({ threads: Number(opts.threads) });
  const probe = med(Array.from(nb.readBandwidth(512 * 2 ** 20, Number(opts.threads), 6)));
  const { cfg, model } = await loadModel(opts.model ?? "/tmp/qllm-tinyllama/q4_0.gguf", nb, { weights: "packed" });
  const phases: Record<string, [string, string]> = {};
  const mark = (name: string, f: () => void): void => { const t0 = process.hrtime.bigint(); f(); phases[name] = [String(t0), String(process.hrtime.bigint())]; };
  const promptLen = Number(opts.prompt), steps = Number(opts.steps), V = cfg.vocabSize, r = mulberry32(1);
  const prompt = Array.from({ length: promptLen }, () => Math.floor(r() * V));
  const c = model.newCache(promptLen + steps + 4, "f16");
  let logits = model.forward(prompt, c, { logits: "last" });
  for (let i = 0; i < 2; i++) logits = model.forward([argmax(logits, 0, V)], c, { logits: "last" }); // warm-up
  mark("decode", () => { for (let i = 0; i < steps; i++) logits = model.forward([argmax(logits, 0, V)], c, { logits: "last" }); });
  const H = cfg.hiddenSize, I = cfg.intermediateSize;
  const xI = new Float32Array(I).map(() => Math.random() - 0.5), xH = xI.slice(0, H);
  const outs = new Map<string, Float32Array>();
  const out = (k: string, n: number): Float32Array => { let a = outs.get(k); if (!a) { a = new Float32Array(n); outs.set(k, a); } return a; };
  const ops: (() => void)[] = [];
  const qkv: (() => void)[] = [];
  for (const b of model.weights.blocks) {
    const l = b.linears;
    const many = (name: string, ls: (typeof l.q)[], K: number): () => void => () =>
      nb.matmulMany!(K === H ? xH : xI, 1, K, ls.map((q, i) => ({ w: q.weight as LinearWeight, N: q.N, out: out(name + i, q.N) })));
    qkv.push(many("qkv", [l.q, l.k, l.v], H));
    ops.push(qkv.at(-1)!, many("o", [l.o], H), many("gu", [l.gate, l.up], H), many("down", [l.down], I));
  }
  for (const op of ops) op(); // warm-up
  mark("seq", () => { for (let k = 0; k < 4; k++) for (const op of ops) op(); });
  mark("repeat", () => { for (let k = 0; k < 200; k++) qkv[0]!(); });
  const bytes = (w: LinearWeight): number => (isPackedWeight(w) ? w.bytes : w.byteLength);
  const l0 = model.weights.blocks[0]!.linears;
  const shapes = { qkv: bytes(l0.q.weight) + bytes(l0.k.weight) + bytes(l0.v.weight), o: bytes(l0.o.weight),
    "gate+up": bytes(l0.gate.weight) + bytes(l0.up.weight), down: bytes(l0.down.weight) };
  writeFileSync(`${path}.phases.json`, JSON.stringify({ probe, phases, shapes, H, I }));
  console.log(`probe ${probe.toFixed(1)} GB/s; phases and shapes in ${path}.phases.json; the trace is written at exit`);
} else if (opts.report !== undefined) {
  const buf = readFileSync(opts.report), meta = JSON.parse(readFileSync(`${opts.report}.phases.json`, "utf8"));
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  type Ev = { ns: number; kind: number; tid: number; a: number; b: number };
  const evs: Ev[] = [];
  let t00: bigint | undefined;
  for (let o = 0; o + 16 <= buf.byteLength; o += 16) {
    const ns = dv.getBigUint64(o, true);
    t00 ??= ns;
    evs.push({ ns: Number(ns - t00), kind: dv.getUint8(o + 8), tid: dv.getUint8(o + 9), a: dv.getUint16(o + 10, true), b: dv.getUint32(o + 12, true) });
  }
  evs.sort((x, y) => x.ns - y.ns);
  const phaseOf = (ns: number): string | undefined => {
    for (const [name, [a, b]] of Object.entries(meta.phases as Record<string, [string, string]>))
      if (ns >= Number(BigInt(a) - t00!) && ns <= Number(BigInt(b) - t00!)) return name;
    return undefined;
  };
  const { H, I } = meta as { H: number; I: number };
  const kindOf = (N: number, K: number, parts: number): string | undefined =>
    parts === 3 && K === H ? "qkv" : parts === 1 && K === H && N === H ? "o" : parts === 2 && K === H ? "gate+up" : parts === 1 && K === I ? "down" : undefined;
  // Split into calls: kTraceCall … kTraceReturn (calls do not overlap: the pool runs one job at a time).
  type Row = Record<string, number>;
  const rows = new Map<string, Row[]>();
  let cur: Ev[] | undefined;
  for (const e of evs) {
    if (e.kind === 1) cur = [e];
    else if (cur) {
      cur.push(e);
      if (e.kind === 6) {
        const c0 = cur[0]!, kind = kindOf(c0.a, c0.b >> 4, c0.b & 15), ph = phaseOf(c0.ns);
        if (kind !== undefined && ph !== undefined) {
          const r: Row = { total: e.ns - c0.ns };
          r.quant = cur.find((x) => x.kind === 2)!.ns - c0.ns;
          const tids = [...new Set(cur.filter((x) => x.kind === 3).map((x) => x.tid))].sort();
          const lastEnd: number[] = [];
          for (const tid of [0, 1]) {
            const mine = cur.filter((x) => x.tid === tid && x.kind >= 3 && x.kind <= 5);
            const first = mine.find((x) => x.kind === 3), ends = mine.filter((x) => x.kind === 4);
            r[`start${tid}`] = first ? first.ns - c0.ns : NaN;
            lastEnd.push(ends.length ? ends.at(-1)!.ns - c0.ns : NaN);
            // The first task's span steps: steps 0-2 (the ramp) and 2-end (steady), µs per step.
            const steps = mine.filter((x) => x.kind === 5);
            const firstTaskEnd = ends[0]?.ns ?? Infinity;
            const s = steps.filter((x) => x.ns < firstTaskEnd);
            if (s.length > 4) {
              r[`ramp${tid}`] = (s[2]!.ns - s[0]!.ns) / 2;
              r[`steady${tid}`] = (firstTaskEnd - s[2]!.ns) / (s.length - 2);
            }
            r[`tasks${tid}`] = mine.filter((x) => x.kind === 3).length;
            r[`steals${tid}`] = cur.filter((x) => x.tid === tid && x.kind === 7).length;
          }
          r.tids = tids.length;
          r.imbalance = Math.abs(lastEnd[0]! - lastEnd[1]!);
          r.afterLast = e.ns - c0.ns - Math.max(lastEnd[0]!, lastEnd[1]!);
          const key = `${ph} ${kind}`;
          rows.set(key, [...(rows.get(key) ?? []), r]);
        }
        cur = undefined;
      }
    }
  }
  const shapes = meta.shapes as Record<string, number>;
  // Per phase: its wall time against the time inside the packed matmul calls (all of them, lm_head included).
  const inCalls = new Map<string, { ns: number; calls: number }>();
  let open: Ev | undefined;
  for (const e of evs) {
    if (e.kind === 1) open = e;
    else if (e.kind === 6 && open) {
      const ph = phaseOf(open.ns);
      if (ph !== undefined) { const s = inCalls.get(ph) ?? { ns: 0, calls: 0 }; s.ns += e.ns - open.ns; s.calls++; inCalls.set(ph, s); }
      open = undefined;
    }
  }
  const phaseLines = Object.entries(meta.phases as Record<string, [string, string]>).map(([name, [a, b]]) => {
    const wall = Number(BigInt(b) - BigInt(a)), s = inCalls.get(name) ?? { ns: 0, calls: 0 };
    return `- ${name}: ${(wall / 1e6).toFixed(2)} ms wall, ${s.calls} packed matmul calls, ${(s.ns / 1e6).toFixed(2)} ms inside them (${(100 * s.ns / wall).toFixed(1)}%), ` +
      `${((wall - s.ns) / s.calls / 1000).toFixed(1)} µs outside per call`;
  });
  const us = (ns: number): string => (ns / 1000).toFixed(1);
  const lines = [`probe ${meta.probe.toFixed(1)} GB/s; medians over the calls, µs from the call's entry (thread 0 = the caller, 1 = the worker);`,
    "ramp / steady: µs per span step (one row group of each of 4 streams) over the first task's steps 0-2 / 2-end", "",
    ...phaseLines, "",
    "| phase, call | calls | total | GB/s | % probe | quantized | start t0 | start t1 | ramp t0 | steady t0 | ramp t1 | steady t1 | tasks t0/t1 | steals t0/t1 | end imbalance | last end → return |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"];
  for (const [key, rs] of [...rows].sort()) {
    const m = (f: string): number => med(rs.map((r) => r[f]!).filter((v) => Number.isFinite(v)));
    const mean = (f: string): string => (rs.reduce((a, r) => a + r[f]!, 0) / rs.length).toFixed(2);
    const gbs = shapes[key.split(" ")[1]!]! / m("total");
    lines.push(`| ${key} | ${rs.length} | ${us(m("total"))} | ${gbs.toFixed(1)} | ${(100 * gbs / meta.probe).toFixed(0)}% | ${us(m("quant"))} | ${us(m("start0"))} | ${us(m("start1"))} | ` +
      `${us(m("ramp0"))} | ${us(m("steady0"))} | ${us(m("ramp1"))} | ${us(m("steady1"))} | ${m("tasks0")}/${m("tasks1")} | ${mean("steals0")}/${mean("steals1")} | ${us(m("imbalance"))} | ${us(m("afterLast"))} |`);
  }
  console.log(lines.join("\n"));
  if (opts.out) writeFileSync(opts.out, lines.join("\n") + "\n");
} else throw new Error("--run (with QLLM_MATMUL_TRACE set) or --report <trace file>");

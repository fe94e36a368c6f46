/**
 * GPTQ speed benchmark: one linear layer, Hessian and quantization timed
 * separately (min and median after a warm-up), next to the reference GPTQ
 * (IST-DASLab gptq.py, torch + OpenBLAS, 2 threads) measured on this machine
 * kind in BENCHMARKS.md, with the speed-up ratio. The reference cannot run here
 * (no torch), so its figures are the published ones: compare runs with the same
 * thread count and look at the "cores" column, which says how many cores this
 * run actually got (CPU time / wall time; other processes take the rest).
 *
 *   npx tsx eval/bench-gptq.ts [--threads 2] [--reps 5] [--quick] [--write]
 *
 * Setup as in BENCHMARKS.md: 2048 calibration rows, 4-bit, group 128, symmetric,
 * block 128, damp 0.01; layers 1024×1024 and 4096×4096 (and 4096×4096 with
 * act-order). Activations are correlated (shared factors, columns of different
 * scale, a few outlier columns), because isotropic ones make GPTQ overfit the
 * calibration rows; the held-out output error of GPTQ and RTN is printed as a
 * sanity check. The 1024 layer is also run once through the TS reference
 * (src/methods/gptq.ts) to show the codes agree (skipped with --quick).
 */
import { execSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createNativeBackend } from "../src/backend/native.ts";
import { defaultThreads } from "../src/backend/select.ts";
import { gptqQuantizeLinear, type GptqOptions, type GptqResult } from "../src/methods/gptq.ts";
import { gptqQuantizeLinearFast, HessianAccumulatorF32 } from "../src/methods/gptq-fast.ts";
import { HessianAccumulator } from "../src/methods/hessian.ts";
import { rtnQuantizeLinear } from "../src/methods/rtn.ts";
import { dequantize } from "../src/tensor/quantized.ts";
import { activations, weights } from "./data.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const T_CAL = 2048;
const T_HELD = 256;

/** BENCHMARKS.md, "Reference GPTQ on this machine" (seconds, 2 threads). */
const REFERENCE: Record<string, { hessian: number; quant: number; total: number }> = {
  "1024×1024": { hessian: 0.04, quant: 0.40, total: 0.44 },
  "4096×4096": { hessian: 0.41, quant: 3.89, total: 4.30 },
  "4096×4096, act-order": { hessian: 0.49, quant: 5.53, total: 6.02 },
};

const { values: args } = parseArgs({
  options: { threads: { type: "string" }, reps: { type: "string" }, quick: { type: "boolean" }, write: { type: "boolean" } },
});
const threads = args.threads !== undefined ? Number(args.threads) : defaultThreads();
const reps = args.reps !== undefined ? Number(args.reps) : args.quick ? 3 : 5;
const nb = createNativeBackend({ threads });

// ---------------------------------------------------------------- data (eval/data.ts)

/** ‖X·(W − Q)ᵀ‖² / ‖X·Wᵀ‖² on the native GEMM. */
function outputError(X: Float32Array, T: number, K: number, W: Float32Array, Q: Float32Array, N: number): number {
  const Y = nb.matmul(X, W, T, K, N), D = nb.matmul(X, Q, T, K, N);
  let num = 0, den = 0;
  for (let i = 0; i < Y.length; i++) { num += (Y[i]! - D[i]!) ** 2; den += Y[i]! ** 2; }
  return num / den;
}

// ---------------------------------------------------------------- timing

interface Timing { min: number; med: number; cores: number; reps: number }

/** One warm-up, then `n` timed repetitions of `f` (seconds); `setup` runs untimed before each. */
function time(n: number, f: () => void, setup: () => void = () => {}): Timing {
  setup();
  f();
  const ts: number[] = [];
  let cpu = 0, wall = 0;
  for (let i = 0; i < n; i++) {
    setup();
    const c0 = process.cpuUsage(), t0 = performance.now();
    f();
    const dt = (performance.now() - t0) / 1000, c = process.cpuUsage(c0);
    ts.push(dt);
    wall += dt;
    cpu += (c.user + c.system) / 1e6;
  }
  ts.sort((a, b) => a - b);
  return { min: ts[0]!, med: ts[ts.length >> 1]!, cores: cpu / wall, reps: n };
}

// ---------------------------------------------------------------- run

interface Row { layer: string; phase: string; t: Timing; ref: number | null }
const rows: Row[] = [];
const notes: string[] = [];

function runLayer(N: number, K: number, actOrder: boolean, validate: boolean): void {
  const layer = `${N}×${K}${actOrder ? ", act-order" : ""}`;
  process.stderr.write(`${layer}: generating data\n`);
  const W = weights(N, K, 1);
  const Xcal = activations(T_CAL, K, 2), Xheld = activations(T_HELD, K, 3);
  const ref = REFERENCE[layer]!;

  // Hessian H = (2/n)·XᵀX of the 2048 calibration rows (one sequence, as gptq.py's add_batch).
  let acc = new HessianAccumulatorF32(K);
  let H: Float32Array = new Float32Array(0);
  const tH = time(reps, () => { acc.add(nb, Xcal, T_CAL); H = acc.hessian(); }, () => { acc = new HessianAccumulatorF32(K); });
  rows.push({ layer, phase: "Hessian (syrk, f32)", t: tH, ref: ref.hessian });
  if (!actOrder) {
    let old = new HessianAccumulator(K, T_CAL);
    const tOld = time(Math.min(reps, 3), () => { old.add(nb, Xcal, T_CAL); old.hessian(); }, () => { old = new HessianAccumulator(K, T_CAL); });
    rows.push({ layer, phase: "  (for comparison: hessian.ts, transpose + matmul, f64 sum)", t: tOld, ref: null });
  }

  const o: GptqOptions = {
    weight: W, rows: N, cols: K, hessian: H, bits: 4, groupSize: 128, sym: true,
    actOrder, staticGroups: false, damp: 0.01, blockSize: 128,
  };
  let q: GptqResult | null = null;
  const tQ = time(reps, () => { q = gptqQuantizeLinearFast({ ...o, backend: nb }); });
  rows.push({ layer, phase: "quantization (gptqQuantizeLinearFast)", t: tQ, ref: ref.quant });

  // Where the quantization time goes: the two kernels alone, on the same (permuted) problem.
  const perm = actOrder ? Int32Array.from(Array.from({ length: K }, (_, i) => i).sort((a, b) => H[b * K + b]! - H[a * K + a]! || a - b)) : null;
  const hinv = new Float32Array(K * K);
  let mean = 0;
  for (let i = 0; i < K; i++) mean += H[i * K + i]! / K;
  const diag = Float64Array.from({ length: K }, (_, i) => { const c = perm ? perm[i]! : i; return H[c * K + c]! + 0.01 * mean; });
  const tHinv = time(reps, () => { nb.gptqHinv(H, K, perm, diag, hinv); });
  rows.push({ layer, phase: "  of which Hinv kernel (Cholesky + inverse)", t: tHinv, ref: null });
  const G = Math.ceil(K / 128);
  const out = { scales: new Float32Array(N * G), zeros: new Uint8Array(N * G), codes: new Uint8Array(N * K), dequantized: new Float32Array(N * K) };
  const tSweep = time(reps, () => {
    nb.gptqQuantize({ w: W, perm, dead: null, hinv, N, K, bits: 4, groupSize: 128, sym: true, colGroup: null, ...out, blockSize: 128 });
  });
  rows.push({ layer, phase: "  of which lazy-batch sweep kernel", t: tSweep, ref: null });
  rows.push({ layer, phase: "total (Hessian + quantization)", t: { min: tH.min + tQ.min, med: tH.med + tQ.med, cores: (tH.cores + tQ.cores) / 2, reps }, ref: ref.total });

  const result = q as unknown as GptqResult;
  const rtn = rtnQuantizeLinear({ weight: W, rows: N, cols: K, bits: 4, groupSize: 128, sym: true });
  const eG = outputError(Xheld, T_HELD, K, W, result.dequantized, N);
  const eR = outputError(Xheld, T_HELD, K, W, dequantize(rtn), N);
  notes.push(`${layer}: held-out relative output error GPTQ ${eG.toExponential(3)} vs RTN ${eR.toExponential(3)} (GPTQ/RTN = ${(eG / eR).toFixed(3)}); damp used ${result.dampUsed}; loss ${result.loss.toExponential(3)}`);

  if (validate) {
    process.stderr.write(`${layer}: TS reference (src/methods/gptq.ts) for validation\n`);
    const t0 = performance.now();
    const want = gptqQuantizeLinear(o);
    const refSeconds = (performance.now() - t0) / 1000;
    let same = 0;
    for (let i = 0; i < want.codes.length; i++) if (want.codes[i] === result.codes[i]) same++;
    const eRef = outputError(Xheld, T_HELD, K, W, want.dequantized, N);
    notes.push(
      `${layer}: against the TS reference (f64, ${refSeconds.toFixed(1)} s): ${((100 * same) / want.codes.length).toFixed(3)}% identical codes, ` +
        `held-out error ${eRef.toExponential(3)} (native/reference = ${(eG / eRef).toFixed(4)}), g_idx ${want.gIdx.every((v, i) => v === result.gIdx[i]) ? "identical" : "DIFFERENT"}`,
    );
  }
}

function gitCommit(): string {
  try {
    const sha = execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
    const dirty = execSync("git status --porcelain -- native src/methods/gptq-fast.ts src/backend", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
    return dirty ? `${sha} + uncommitted changes` : sha;
  } catch {
    return "unknown (not a git checkout)";
  }
}

let peak1 = 0, peakN = 0;
for (let i = 0; i < 10; i++) { peak1 = Math.max(peak1, nb.fmaPeak(1)); peakN = Math.max(peakN, nb.fmaPeak(threads)); }
runLayer(1024, 1024, false, !args.quick);
runLayer(4096, 4096, false, false);
runLayer(4096, 4096, true, false);

// ---------------------------------------------------------------- report

const f3 = (x: number): string => x.toFixed(3);
const lines = [
  "# GPTQ speed: quantize-llm native kernels vs the reference gptq.py",
  "",
  `- date: ${new Date().toISOString()}`,
  `- commit: ${gitCommit()}`,
  `- machine: ${os.cpus()[0]?.model ?? "unknown CPU"}, ${os.availableParallelism()} logical cores; node ${process.version}`,
  `- threads: ${nb.threads} (kernel level ${nb.kernelLevel}); FMA peak in this process: 1 thread ${peak1.toFixed(0)} GFLOP/s, ${threads} threads ${peakN.toFixed(0)} GFLOP/s`,
  `- setup: ${T_CAL} calibration rows, 4-bit, group 128, symmetric, block 128, damp 0.01; correlated activations; ${reps} repetitions after one warm-up`,
  "- reference: IST-DASLab gptq.py (torch 1.13 + OpenBLAS, 2 threads) as measured in BENCHMARKS.md — not re-run here",
  "- cores: CPU time / wall time of the timed repetitions (below the thread count = other processes took the rest)",
  "",
  "| layer | phase | ours min (s) | ours median (s) | cores | gptq.py (s) | speed-up (median) | speed-up (min) |",
  "|---|---|---:|---:|---:|---:|---:|---:|",
  ...rows.map((r) =>
    `| ${r.layer} | ${r.phase} | ${f3(r.t.min)} | ${f3(r.t.med)} | ${r.t.cores.toFixed(2)} | ${r.ref === null ? "" : r.ref.toFixed(2)} | ` +
      `${r.ref === null ? "" : `${(r.ref / r.t.med).toFixed(1)}×`} | ${r.ref === null ? "" : `${(r.ref / r.t.min).toFixed(1)}×`} |`),
  "",
  ...notes.map((n) => `- ${n}`),
  "",
];
process.stdout.write(lines.join("\n"));
if (args.write) {
  const out = join(ROOT, "eval", "reports", "bench-gptq.md");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${lines.join("\n")}\nReproduce: \`npx tsx eval/bench-gptq.ts --threads ${threads} --reps ${reps}${args.quick ? " --quick" : ""} --write\`\n`);
  process.stderr.write(`wrote ${out}\n`);
}

/**
 * Kernel benchmark: the native backend's matmul and attention, validated against
 * the plain-TS reference first, then timed (min and median after warm-up).
 *
 *   npx tsx eval/bench-kernels.ts [--threads N] [--level avx512|avx2|scalar] [--seconds S] [--quick]
 *
 * GFLOP/s = 2·M·K·N / time for matmul; 4·nHead·headDim·(visible query-key pairs)
 * for causal attention. "% peak" is against an FMA-only loop run by the same pool
 * in the same process (BENCHMARKS.md: report ratios measured in one run). For
 * M=1 the weight bytes read per second are printed twice: "hot" re-reads one
 * matrix (cache resident when it fits the 32 MiB L3), "cold" rotates through
 * ≥ 96 MB of copies so the weights stream from DRAM.
 */
import { execSync } from "node:child_process";
import os from "node:os";
import { parseArgs } from "node:util";
import type { AttentionShape } from "../src/backend/backend.ts";
import { createNativeBackend, type KernelLevel } from "../src/backend/native.ts";
import { refAttention, refMatmul } from "../src/backend/ref.ts";
import { defaultThreads } from "../src/backend/select.ts";

const MATMUL_M = [1, 64, 512];
const MATMUL_KN: [number, number][] = [[256, 768], [768, 256], [1024, 1024], [4096, 4096], [4096, 11008]];
const ATTENTION: AttentionShape[] = [
  { T: 512, pos0: 0, nHead: 8, nKvHead: 4, headDim: 32 },
  { T: 512, pos0: 0, nHead: 32, nKvHead: 32, headDim: 128 },
  { T: 512, pos0: 0, nHead: 32, nKvHead: 8, headDim: 128 },
  { T: 1, pos0: 4095, nHead: 32, nKvHead: 32, headDim: 128 },
  { T: 1, pos0: 4095, nHead: 32, nKvHead: 8, headDim: 128 },
];
const COLD_BYTES = 96e6;      // > 2 × L3: rotating copies of W for the DRAM-bound decode case
const REF_MAX_SECONDS = 2;    // time the reference only where one call takes less
const F32_EPS = 2 ** -23;

// ---------------------------------------------------------------- setup

const { values: opts } = parseArgs({
  options: {
    threads: { type: "string" }, level: { type: "string" }, seconds: { type: "string" }, quick: { type: "boolean" },
  },
});
const threads = opts.threads !== undefined ? Number(opts.threads) : defaultThreads();
const secondsPerCase = opts.seconds !== undefined ? Number(opts.seconds) : opts.quick ? 0.2 : 1;
const nb = createNativeBackend({ threads });
if (opts.level !== undefined) nb.setKernelLevel(opts.level as KernelLevel);

function gitCommit(): string {
  try {
    return execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
  } catch {
    return "unknown (not a git checkout)";
  }
}

/** Fast deterministic uniform [-1, 1) fill (xorshift32); Math.random is slow for 45M floats. */
function randomArray(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a[i] = s / 2147483648 - 1;
  }
  return a;
}

interface Timing {
  min: number;
  med: number;
  reps: number;
  /** Process CPU time / wall time over the timed repetitions: the cores this case really got. */
  cores: number;
}

/**
 * Warm-up, then repetitions until the time budget is spent (≥ minReps, ≤ 500);
 * milliseconds. A warm-up call slower than the budget counts as the only repetition.
 */
function time(f: () => void, budgetS = secondsPerCase, minReps = 3): Timing {
  const ts: number[] = [];
  const w0 = performance.now();
  do f(); while (performance.now() - w0 < 20);
  const warm = performance.now() - w0;
  if (warm > budgetS * 1000) return { min: warm, med: warm, reps: 1, cores: NaN };
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  while ((ts.length < minReps || performance.now() - t0 < budgetS * 1000) && ts.length < 500) {
    const a = performance.now();
    f();
    ts.push(performance.now() - a);
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  ts.sort((a, b) => a - b);
  return { min: ts[0]!, med: ts[ts.length >> 1]!, reps: ts.length, cores: (cpu.user + cpu.system) / 1000 / wall };
}

/** Best of a few bursts of the FMA probe on n pool threads. */
function fmaPeak(n: number): number {
  let best = 0;
  for (let i = 0; i < 15; i++) best = Math.max(best, nb.fmaPeak(n));
  return best;
}

const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "-");
const pad = (s: string | number, n: number) => String(s).padStart(n);

// ---------------------------------------------------------------- validation helpers

/** Worst |native − ref| / bound over the checked elements (≤ 1 passes). */
let worstRatio = 0;
let checks = 0;
function check(got: number, want: number, bound: number, what: string): void {
  const r = Math.abs(got - want) / bound;
  checks++;
  if (!(r <= 1)) throw new Error(`validation failed: ${what}: native ${got}, reference ${want}, bound ${bound}`);
  worstRatio = Math.max(worstRatio, r);
}

/** Rows 0 and M−1 of the native result against the reference, with the K·ε·Σ|x||w| bound. */
function validateMatmul(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias: Float32Array, y: Float32Array): void {
  for (const m of new Set([0, M - 1])) {
    const xr = x.subarray(m * K, (m + 1) * K);
    const want = refMatmul(xr, w, 1, K, N, bias);
    const scale = refMatmul(xr.map(Math.abs), w.map(Math.abs), 1, K, N);
    for (let n = 0; n < N; n++) {
      check(y[m * N + n]!, want[n]!, K * F32_EPS * scale[n]! + F32_EPS * Math.abs(bias[n]!) + 1e-30, `matmul ${M}×${K}×${N} [${m}, ${n}]`);
    }
  }
}

/** The last two query rows (the most keys) against the reference run on those rows alone. */
function validateAttention(q: Float32Array, k: Float32Array, v: Float32Array, s: AttentionShape, out: Float32Array): void {
  const rows = Math.min(2, s.T), width = s.nHead * s.headDim;
  const sub = { ...s, T: rows, pos0: s.pos0 + s.T - rows };
  const want = new Float32Array(rows * width);
  refAttention(q.subarray((s.T - rows) * width), k, v, sub, want);
  const qMax = 1, kMax = 1, d = s.headDim;
  const bound = d * F32_EPS * ((d * qMax * kMax) / Math.sqrt(d)) + (8 + s.pos0 + s.T) * F32_EPS;
  for (let i = 0; i < want.length; i++) check(out[(s.T - rows) * width + i]!, want[i]!, bound, `attention ${JSON.stringify(s)} [${i}]`);
}

// ---------------------------------------------------------------- run

const peak1Start = fmaPeak(1);
const peakNStart = threads > 1 ? fmaPeak(threads) : peak1Start;
const refRate = (() => {
  // Reference GFLOP/s, to decide which shapes it can be timed on.
  const [M, K, N] = [16, 256, 256];
  const x = randomArray(M * K, 1), w = randomArray(N * K, 2);
  const t = time(() => refMatmul(x, w, M, K, N), 0.2);
  return (2 * M * K * N) / t.min / 1e6;
})();

/**
 * GFLOP/s (best, median); the cores obtained; % of the nominal peak (threads × the
 * 1-thread FMA peak) and % of the peak of the cores actually obtained (median).
 */
function efficiency(flops: number, t: Timing): string {
  const best = flops / t.min / 1e6, med = flops / t.med / 1e6;
  const nominal = (100 * best) / (threads * peak1Start);
  const perCore = (100 * med) / (Math.min(t.cores, threads) * peak1Start);
  return `${pad(fmt(best), 8)} ${pad(fmt(med), 8)} ${pad(fmt(t.cores, 2), 5)} ${pad(fmt(nominal, 0) + "%", 6)} ${pad(fmt(perCore, 0) + "%", 6)}`;
}
const EFFICIENCY_HEAD = `${pad("GF/s", 8)} ${pad("GF/s med", 8)} ${pad("cores", 5)} ${pad("%peak", 6)} ${pad("%/core", 6)}`;

const matmulRows: string[] = [];
for (const [ki, [K, N]] of MATMUL_KN.entries()) {
  const w = randomArray(N * K, 10 + ki);
  const bias = randomArray(N, 20 + ki);
  for (const M of MATMUL_M) {
    if (opts.quick && M * K * N > 512 * 1024 * 1024) continue;
    const x = randomArray(M * K, 30 + M);
    const y = new Float32Array(M * N);
    nb.matmul(x, w, M, K, N, bias, y);
    validateMatmul(x, w, M, K, N, bias, y);
    const flops = 2 * M * K * N;
    const t = time(() => nb.matmul(x, w, M, K, N, undefined, y));
    let hot = "", cold = "";
    if (M === 1) {
      const bytes = 4 * K * N;
      hot = fmt(bytes / t.min / 1e6);
      const copies = Math.max(2, Math.ceil(COLD_BYTES / bytes));
      const ws = Array.from({ length: copies }, () => w.slice());
      let i = 0;
      const tc = time(() => nb.matmul(x, ws[i++ % copies]!, M, K, N, undefined, y));
      cold = fmt(bytes / tc.min / 1e6);
    }
    let refMs = "", speedup = "";
    if (flops / (refRate * 1e9) < REF_MAX_SECONDS) {
      const tr = time(() => refMatmul(x, w, M, K, N, undefined, y), Math.min(secondsPerCase, 1), 1);
      refMs = fmt(tr.min, 2);
      speedup = `${fmt(tr.min / t.min, 0)}×`;
    }
    matmulRows.push(
      `${pad(M, 5)} ${pad(K, 6)} ${pad(N, 6)} ${pad(fmt(t.min, 3), 9)} ${pad(fmt(t.med, 3), 9)} ${efficiency(flops, t)} ` +
        `${pad(hot, 8)} ${pad(cold, 8)} ${pad(refMs, 9)} ${pad(speedup, 8)}`,
    );
  }
}

const attentionRows: string[] = [];
for (const [i, s] of ATTENTION.entries()) {
  const { T, pos0, nHead, nKvHead, headDim: d } = s;
  const q = randomArray(T * nHead * d, 40 + i), k = randomArray((pos0 + T) * nKvHead * d, 50 + i);
  const v = randomArray((pos0 + T) * nKvHead * d, 60 + i), out = new Float32Array(T * nHead * d);
  nb.attention(q, k, v, s, out);
  validateAttention(q, k, v, s, out);
  const pairs = T * pos0 + (T * (T + 1)) / 2;
  const flops = 4 * nHead * d * pairs;
  const t = time(() => nb.attention(q, k, v, s, out));
  const kvBytes = 2 * 4 * (pos0 + T) * nKvHead * d;
  let refMs = "", speedup = "";
  if (flops / (refRate * 1e9) < REF_MAX_SECONDS) {
    const tr = time(() => refAttention(q, k, v, s, out), Math.min(secondsPerCase, 1), 1);
    refMs = fmt(tr.min, 2);
    speedup = `${fmt(tr.min / t.min, 0)}×`;
  }
  attentionRows.push(
    `${pad(T, 5)} ${pad(pos0, 5)} ${pad(`${nHead}/${nKvHead}`, 6)} ${pad(d, 4)} ${pad(fmt(t.min, 3), 9)} ${pad(fmt(t.med, 3), 9)} ` +
      `${efficiency(flops, t)} ${pad(fmt(kvBytes / t.min / 1e6), 8)} ${pad(refMs, 9)} ${pad(speedup, 8)}`,
  );
}

const peak1End = fmaPeak(1);
const peakNEnd = threads > 1 ? fmaPeak(threads) : peak1End;

// ---------------------------------------------------------------- report

const cpu = os.cpus()[0]?.model ?? "unknown CPU";
console.log(`quantize-llm kernel benchmark — ${new Date().toISOString()} — commit ${gitCommit()} — node ${process.version}`);
console.log(`${cpu}, ${os.availableParallelism()} CPUs; kernel level ${nb.kernelLevel} (available: ${nb.kernelLevels().join(", ")}); threads ${nb.threads}`);
console.log(
  `FMA peak, same process (start → end): 1 thread ${fmt(peak1Start)} → ${fmt(peak1End)} GFLOP/s, ` +
    `${threads} threads ${fmt(peakNStart)} → ${fmt(peakNEnd)} GFLOP/s (${fmt(peakNStart / peak1Start, 2)} → ${fmt(peakNEnd / peak1End, 2)} cores' worth)`,
);
console.log(`validation against the reference: ${checks} outputs, worst |error| / bound = ${worstRatio.toExponential(1)} (bound: K·ε·Σ|x·w|) — OK`);
console.log(`reference backend: ${fmt(refRate, 2)} GFLOP/s on 16×256×256 (timed below where one call takes < ${REF_MAX_SECONDS} s)`);
console.log("");
console.log(`cores = CPU time / wall time while timing (other processes on the machine take the rest);`);
console.log(`%peak = best GF/s / (${threads} × the 1-thread FMA peak); %/core = median GF/s / (cores × the 1-thread FMA peak)`);
console.log("");
console.log("matmul y[M,N] = x[M,K]·W[N,K]ᵀ — GFLOP/s = 2MKN/time; GB/s = weight bytes/time (M=1: hot = one matrix, cold = rotating ≥ 96 MB)");
console.log(`${pad("M", 5)} ${pad("K", 6)} ${pad("N", 6)} ${pad("min ms", 9)} ${pad("med ms", 9)} ${EFFICIENCY_HEAD} ${pad("GB/s hot", 8)} ${pad("GB/s cld", 8)} ${pad("ref ms", 9)} ${pad("speedup", 8)}`);
for (const r of matmulRows) console.log(r);
console.log("");
console.log("attention (causal GQA) — GFLOP/s = 4·nHead·headDim·(query-key pairs)/time; KV GB/s = cache bytes/time");
console.log(`${pad("T", 5)} ${pad("pos0", 5)} ${pad("heads", 6)} ${pad("hd", 4)} ${pad("min ms", 9)} ${pad("med ms", 9)} ${EFFICIENCY_HEAD} ${pad("KV GB/s", 8)} ${pad("ref ms", 9)} ${pad("speedup", 8)}`);
for (const r of attentionRows) console.log(r);

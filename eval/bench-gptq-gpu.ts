/**
 * GPU-assisted GPTQ (issue 13 item 4) against the CPU path, one linear layer, in one process:
 *
 *   Hessian   H = (2/n)·Σ xᵀx over --seqs sequences of --seqlen tokens: the native syrk on all
 *             cores (HessianAccumulatorF32) vs GpuHessianAccumulator (upload x, kernels/syrk.wgsl,
 *             H read back)
 *   Hinv      Cholesky(H⁻¹)ᵀ on the CPU (the native kernel): the same for both paths
 *   sweep     the lazy-batch quantization: the native kernel vs GpuGptq.quantize (upload W and
 *             Hinv, kernels/gptq.wgsl, codes and dequantized weights read back)
 *
 * and the agreement: the GPU sweep on the CPU's H against the CPU sweep (codes identical,
 * loss), and the whole GPU layer against the whole CPU layer (loss). 4-bit, group 128, sym,
 * block 128, damp 0.01 (bench-gptq.ts's setup); x is Gaussian, --distinct different
 * sequences fed in turn (generating 128 × 2048 × 4096 random values would take longer than
 * the benchmark; the arithmetic is the same).
 *
 *   npx tsx eval/bench-gptq-gpu.ts [--size auto|small|large] [--reps N] [--out FILE] [--json FILE]
 *
 * --size auto: large (N = K = 4096, 128 × 2048 tokens: the issue's shape) on a hardware adapter,
 * small (256 × 256, 4 × 128 tokens) on a software one, where it only shows that the path runs.
 * Wall times, median of --reps (default 1 large, 3 small), after a warm-up on a small layer.
 */
import { execSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import { createNativeBackend } from "../src/backend/native.ts";
import { openGpu } from "../src/backend/webgpu-device.ts";
import { gptqQuantizeLinearAsync, gptqQuantizeLinearFast, HessianAccumulatorF32 } from "../src/methods/gptq-fast.ts";
import type { GptqOptions, GptqResult } from "../src/methods/gptq.ts";
import { GpuGptq } from "../src/methods/gptq-webgpu.ts";
import { mulberry32 } from "../src/util/random.ts";
import { randn } from "../test/helpers/random-weights.ts";

const { values } = parseArgs({ options: {
  size: { type: "string", default: "auto" }, reps: { type: "string" }, out: { type: "string" }, json: { type: "string" },
} });

const ctx = await openGpu({ choice: "gpu" });
const info = ctx.info;
const large = values.size === "large" || (values.size === "auto" && !info.software);
const [N, K, SEQS, T, DISTINCT] = large ? [4096, 4096, 128, 2048, 4] : [256, 256, 4, 128, 2];
const reps = Number(values.reps ?? (large ? 1 : 3));
const threads = cpus().length;
const cpu = createNativeBackend({ threads });
const gpu = await GpuGptq.open(ctx);
const lines: string[] = [];
const say = (s = ""): void => { lines.push(s); process.stdout.write(`${s}\n`); };
const med = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
const secs = (t0: number): number => (performance.now() - t0) / 1000;

function gaussian(n: number, seed: number, scale: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => scale * randn(r));
}
const xs = Array.from({ length: DISTINCT }, (_, i) => gaussian(T * K, 10 + i, 1)); // [T, K] each
const W = gaussian(N * K, 3, 0.02); // [N, K]
const opts = (H: Float32Array): GptqOptions => ({
  weight: W, rows: N, cols: K, hessian: H, bits: 4, groupSize: 128, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
});

async function cpuHessian(): Promise<Float32Array> {
  const acc = new HessianAccumulatorF32(K);
  for (let s = 0; s < SEQS; s++) await acc.addAsync(cpu, xs[s % DISTINCT]!, T);
  return acc.hessian();
}
async function gpuHessian(): Promise<Float32Array> {
  const acc = await gpu.hessian(0, K, T);
  for (let s = 0; s < SEQS; s++) acc.add(xs[s % DISTINCT]!, T);
  return Float32Array.from(await acc.hessian());
}
function agreement(a: GptqResult, b: GptqResult): number {
  let same = 0;
  for (let i = 0; i < a.codes.length; i++) if (a.codes[i] === b.codes[i]) same++;
  return same / a.codes.length;
}

// Warm-up: pipelines, buffers, the native pool.
{
  const w = await GpuGptq.open(ctx);
  const acc = await w.hessian(0, 64, 16);
  acc.add(gaussian(16 * 64, 1, 1), 16);
  const h = await acc.hessian();
  await gptqQuantizeLinearAsync({ ...opts(h), weight: gaussian(32 * 64, 2, 0.02), rows: 32, cols: 64, groupSize: 32, backend: cpu, sweep: w });
  w.destroy();
}

const t = { cpuH: [] as number[], gpuH: [] as number[], hinv: [] as number[], cpuSweep: [] as number[], gpuSweep: [] as number[] };
let Hc: Float32Array = new Float32Array(0), Hg: Float32Array = new Float32Array(0);
let rc: GptqResult | null = null, rgSame: GptqResult | null = null, rg: GptqResult | null = null;
for (let r = 0; r < reps; r++) {
  let t0 = performance.now();
  Hc = await cpuHessian();
  t.cpuH.push(secs(t0));
  t0 = performance.now();
  Hg = await gpuHessian();
  t.gpuH.push(secs(t0));
  // Hinv alone (both paths run exactly this), then each full quantization; sweep = total − Hinv.
  const hinv = new Float32Array(K * K), diag = new Float64Array(K);
  let mean = 0;
  for (let i = 0; i < K; i++) mean += Hc[i * K + i]!;
  for (let i = 0; i < K; i++) diag[i] = Hc[i * K + i]! + 0.01 * (mean / K);
  t0 = performance.now();
  await cpu.gptqHinvAsync!(Hc, K, null, diag, hinv);
  const th = secs(t0);
  t.hinv.push(th);
  t0 = performance.now();
  rc = gptqQuantizeLinearFast({ ...opts(Hc), backend: cpu });
  t.cpuSweep.push(Math.max(0, secs(t0) - th)); // the sweep = the quantization minus its Hinv (≥ 0: on a tiny layer the two timings' noise exceeds the sweep)
  t0 = performance.now();
  rgSame = await gptqQuantizeLinearAsync({ ...opts(Hc), backend: cpu, sweep: gpu });
  t.gpuSweep.push(Math.max(0, secs(t0) - th));
  rg = await gptqQuantizeLinearAsync({ ...opts(Hg), backend: cpu, sweep: gpu });
}

let worstH = 0;
for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) worstH = Math.max(worstH, Math.abs(Hg[i * K + j]! - Hc[i * K + j]!) / Math.sqrt(Hc[i * K + i]! * Hc[j * K + j]!));
const [cH, gH, hv, cS, gS] = [med(t.cpuH), med(t.gpuH), med(t.hinv), med(t.cpuSweep), med(t.gpuSweep)];
const cpuTotal = cH + hv + cS, gpuTotal = gH + hv + gS;
const hessFlop = 2 * SEQS * T * K * K, sweepFlop = 2 * N * K * K / 2; // trailing updates ≈ N·K² multiply-adds

let commit = "?";
try { commit = execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { /* not a git checkout */ }
say("# GPTQ on the GPU vs the CPU: one linear layer (issue 13 item 4)");
say();
say(`Commit ${commit}, ${new Date().toISOString()}; host ${threads} × ${cpus()[0]?.model ?? "?"} (native kernels ${cpu.kernelLevel}, ${threads} threads), loadavg ${loadavg().map((l) => l.toFixed(2)).join(" ")}; ` +
  `adapter ${info.description || info.device}${info.software ? " (SOFTWARE)" : ""}.`);
say(`Reproduce: \`npx tsx eval/bench-gptq-gpu.ts${process.argv.slice(2).length ? " " + process.argv.slice(2).join(" ") : ""}\`.`);
say();
if (info.software) {
  say("**Software adapter: the GPU column runs on the CPU through a Vulkan emulation, on a small layer. It shows that the path runs; it says nothing about GPU speed.**");
  say();
}
say(`W [${N}, ${K}], 4-bit g128 sym, block 128, damp 0.01; Hessian from ${SEQS} × ${T} tokens (${(hessFlop / 1e12).toPrecision(3)} TFLOP); median of ${reps}; wall seconds. ` +
  "GPU times include the uploads (x; W and Hinv) and the read-backs (H; codes, dequantized weights, grids).");
say();
say("| step | CPU s | GPU s | GPU speed-up |");
say("|---|---:|---:|---:|");
say(`| Hessian Σ xᵀx | ${cH.toFixed(3)} (${(hessFlop / cH / 1e9).toFixed(0)} GFLOP/s) | ${gH.toFixed(3)} (${(hessFlop / gH / 1e9).toFixed(0)} GFLOP/s) | ${(cH / gH).toFixed(2)}× |`);
say(`| Hinv (CPU in both) | ${hv.toFixed(3)} | ${hv.toFixed(3)} | 1.00× |`);
const sweepCell = (x: number): string => (x < 1e-3 ? "< 0.001 (below the timing noise)" : `${x.toFixed(3)} (${(sweepFlop / x / 1e9).toFixed(0)} GFLOP/s)`);
say(`| lazy-batch sweep | ${sweepCell(cS)} | ${sweepCell(gS)} | ${cS < 1e-3 || gS < 1e-3 ? "–" : `${(cS / gS).toFixed(2)}×`} |`);
say(`| **layer** | **${cpuTotal.toFixed(3)}** | **${gpuTotal.toFixed(3)}** | **${(cpuTotal / gpuTotal).toFixed(2)}×** |`);
say();
const same = agreement(rgSame!, rc!), whole = agreement(rg!, rc!);
say(`Agreement: on the CPU's H, the GPU sweep's codes are ${(100 * same).toFixed(3)}% identical to the CPU's (loss ${rgSame!.loss.toExponential(4)} vs ${rc!.loss.toExponential(4)}); ` +
  `the GPU Hessian is within ${worstH.toExponential(2)} of the CPU's (relative to √(H_ii·H_jj)), and the whole GPU layer's codes are ${(100 * whole).toFixed(3)}% identical (loss ${rg!.loss.toExponential(4)}).`);
say();
say(info.software ? "Decision: pending the figure from a hardware GPU (eval/gpu-check.sh); the CPU path stays the default."
  : `Decision input: the GPU path is ${gpuTotal < cpuTotal ? "FASTER" : "SLOWER"} than the CPU on this layer (${(cpuTotal / gpuTotal).toFixed(2)}×).`);

const json = {
  commit, adapter: { description: info.description, device: info.device, software: info.software }, host: { threads, cpu: cpus()[0]?.model, kernels: cpu.kernelLevel },
  shape: { N, K, seqs: SEQS, seqlen: T }, reps, seconds: { cpuHessian: cH, gpuHessian: gH, hinv: hv, cpuSweep: cS, gpuSweep: gS, cpuLayer: cpuTotal, gpuLayer: gpuTotal },
  speedup: { hessian: cH / gH, sweep: cS / gS, layer: cpuTotal / gpuTotal },
  agreement: { sweepSameH: same, wholeLayer: whole, hessianMaxRelError: worstH, lossCpu: rc!.loss, lossGpuSameH: rgSame!.loss, lossGpu: rg!.loss },
};
if (values.out) writeFileSync(values.out, lines.join("\n") + "\n");
if (values.json) writeFileSync(values.json, JSON.stringify(json, null, 2) + "\n");
gpu.destroy();
ctx.device.destroy();

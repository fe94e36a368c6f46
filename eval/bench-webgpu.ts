/**
 * The WebGPU backend's speed, all figures from one run on one adapter:
 *   1. adapter: vendor, description, software or not, features (shader-f16, subgroups,
 *      chromium-experimental-subgroup-matrix and its f16 → f32 shapes), limits
 *   2. int4 GEMV (decode, M = 1): GB/s of the bytes it reads (codes + f16 scales/zeros + x)
 *   3. GEMM (prefill, M rows): GFLOP/s (2·M·N·K) for f16 and int4 weights, on the tiled
 *      workgroup-memory kernel and, where offered, on the subgroup-matrix kernel
 *   4. the subgroup-matrix GEMM against the reference (refMatmul on f16-rounded x and
 *      weights; error relative to Σ|x·w|), or "not offered" with what Dawn needs for it
 *   4b. GPTQ's Hessian (Σ xᵀx) on the GPU against the CPU's HessianAccumulatorF32 (all cores)
 *   5. end to end on --model (default: the bundled model): prefill and decode tokens/s
 *      through generate/engine.ts (what chat/serve run), GPU and our CPU engine, and
 *      llama.cpp (node-llama-cpp: CUDA, then Vulkan build, all layers offloaded) when
 *      --model is a .gguf and --llamacpp is not off; the GPU once per --kv cache type (default
 *      f16,f32: the default cache and the one before it), the CPU with the default (f16); each
 *      row names its cache type
 *
 *   npx tsx eval/bench-webgpu.ts [--model PATH] [--prompt N] [--gen N] [--reps N] [--kv f16,f32]
 *         [--size auto|small|large] [--llamacpp auto|cuda|vulkan|off] [--no-cpu]
 *         [--out eval/reports/bench-webgpu.md] [--json FILE]
 *
 * --size auto: large shapes (GEMV 28672×8192, GEMM 512×4096×4096) on a hardware adapter,
 * small ones on a software adapter (lavapipe), where the figures only show the path runs.
 * Kernel timings: R dispatches in one compute pass, one submit, wall time to
 * onSubmittedWorkDone / R, median of --reps (no timestamp queries: portable).
 */
import { execSync } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import { refMatmul } from "../src/backend/ref.ts";
import { selectBackend } from "../src/backend/select.ts";
import { DAWN_TOGGLES, openGpu, type GpuContext } from "../src/backend/webgpu-device.ts";
import { GpuKernels, UniformArena } from "../src/backend/webgpu-kernels.ts";
import { MatmulOp, matmulPipelines, uploadLinear, type MatmulPipelines } from "../src/backend/webgpu-ops.ts";
import { dequantizeGpuLayout, packF16Gpu, type GpuWeightLayout, type Q4Layout } from "../src/backend/webgpu-weights.ts";
import { generate, Session, type EngineModel } from "../src/generate/engine.ts";
import { HessianAccumulatorF32 } from "../src/methods/gptq-fast.ts";
import { GpuHessianAccumulator } from "../src/methods/gptq-webgpu.ts";
import { GREEDY } from "../src/generate/sampler.ts";
import type { KvDType } from "../src/nn/model.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { BUNDLED_MODEL_DIR } from "../src/load/paths.ts";
import { describeGpuPath, loadGpuModel } from "../src/load/webgpu-load.ts";
import { describeKernelPath } from "../src/load/kernel-path.ts";
import { f16ToF32, f32ToF16 } from "../src/tensor/dtype.ts";
import type { Detokenizer } from "../src/generate/text-stream.ts";
import { mulberry32 } from "../src/util/random.ts";

const { values } = parseArgs({ options: {
  model: { type: "string" }, prompt: { type: "string" }, gen: { type: "string" }, reps: { type: "string" },
  size: { type: "string", default: "auto" }, llamacpp: { type: "string", default: "auto" }, "no-cpu": { type: "boolean" },
  out: { type: "string" }, json: { type: "string" }, kv: { type: "string", default: "f16,f32" },
} });
const kvTypes = values.kv.split(",").map((t): KvDType => {
  if (t !== "f16" && t !== "f32") throw new Error(`--kv: expected f16, f32 or a comma list of them, found ${t}`);
  return t;
});
const modelPath = values.model ?? BUNDLED_MODEL_DIR;
const reps = Number(values.reps ?? 3);

const t00 = performance.now();
const ctx = await openGpu({ choice: "gpu" });
const info = ctx.info;
const large = values.size === "large" || (values.size === "auto" && !info.software);
const k = new GpuKernels(ctx);
const lines: string[] = [];
const json: Record<string, unknown> = { adapter: info, toggles: DAWN_TOGGLES };
const say = (s = ""): void => { lines.push(s); process.stdout.write(`${s}\n`); };
const med = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };

let commit = "?";
try { commit = execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { /* not a git checkout */ }
say("# WebGPU backend: adapter, kernels, end to end");
say();
say(`Commit ${commit}, ${new Date().toISOString()}, host ${cpus().length} × ${cpus()[0]?.model ?? "?"}, loadavg ${loadavg().map((l) => l.toFixed(2)).join(" ")}.`);
say(`Reproduce: \`npx tsx eval/bench-webgpu.ts${process.argv.slice(2).length ? " " + process.argv.slice(2).join(" ") : ""}\`.`);
say();
if (info.software) {
  say(`**Software adapter (${info.description || info.device}): every figure below runs on the CPU through a Vulkan ` +
    "emulation. It shows that the path runs end to end; it says nothing about GPU speed.**");
  say();
}

// 1. adapter ---------------------------------------------------------------------------
say("## Adapter");
say();
say("| | |");
say("|---|---|");
say(`| vendor / architecture / device | ${info.vendor || "?"} / ${info.architecture || "?"} / ${info.device || "?"} |`);
say(`| description | ${info.description || "?"} |`);
say(`| software adapter | ${info.software ? "yes (lavapipe/llvmpipe, SwiftShader or Dawn's fallback)" : "no"} |`);
say(`| shader-f16 | ${info.features.includes("shader-f16") ? "yes" : "no"} |`);
say(`| subgroups | ${info.subgroups ? `yes, size ${info.subgroupMinSize}–${info.subgroupMaxSize}` : "no (workgroup-memory reductions)"} |`);
const sgmWhy = info.subgroupMatrixFeature !== null
  ? `offered: ${info.subgroupMatrixFeature}, f16 → f32 shapes ${info.subgroupMatrixConfigs.map((c) => `${c.M}×${c.N}×${c.K}`).join(", ")}`
  : info.features.some((f) => f.includes("subgroup-matrix"))
    ? "the feature is listed but has no f16 → f32 shape: not used"
    : "not offered by this adapter (Dawn's Vulkan backend offers chromium-experimental-subgroup-matrix only with VK_KHR_cooperative_matrix for compute, " +
      "vulkanMemoryModel + DeviceScope, computeFullSubgroups, and the toggles use_vulkan_memory_model + allow_unsafe_apis, which openGpu sets)";
say(`| subgroup matrix (Tensor Cores) | ${sgmWhy} |`);
say(`| Dawn toggles set | ${DAWN_TOGGLES.join(", ")} |`);
say(`| maxBufferSize / maxStorageBufferBindingSize | ${(info.maxBufferSize / 2 ** 20).toFixed(0)} MiB / ${(info.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB |`);
say(`| all features | ${info.features.join(", ")} |`);
say();

// kernels ------------------------------------------------------------------------------
function randomQ4(N: number, K: number, groupSize: number, seed: number): Q4Layout {
  const rand = mulberry32(seed);
  const Kw = Math.ceil(K / 8), G = Math.ceil(K / groupSize), gw = groupSize / 8;
  const codes = new Uint32Array(N * Kw); // [N, Kw]
  for (let i = 0; i < codes.length; i++) codes[i] = (rand() * 2 ** 32) >>> 0;
  if (K % 8 !== 0) for (let n = 0; n < N; n++) codes[n * Kw + Kw - 1]! &= (1 << (4 * (K % 8))) - 1;
  const scales = Uint16Array.from({ length: N * G }, () => f32ToF16(0.002 + 0.01 * rand())); // [N, G]
  const zeros = Uint16Array.from({ length: N * G }, () => f32ToF16(Math.floor(rand() * 16))); // [N, G]
  return { format: "q4", N, K, Kw, G, gw, codes, scales, zeros, perm: null, exactGroups: N * G };
}
function randomF16(N: number, K: number, seed: number): GpuWeightLayout {
  const rand = mulberry32(seed);
  const Kw = Math.ceil(K / 8);
  const rows = new Uint16Array(N * Kw * 8); // [N, 8·Kw]
  for (let n = 0; n < N; n++) for (let c = 0; c < K; c++) rows[n * Kw * 8 + c] = f32ToF16((rand() - 0.5) * 0.05);
  return { format: "f16", N, K, Kw, rows };
}
const randomX = (n: number, seed: number): Float32Array => { const r = mulberry32(seed); return Float32Array.from({ length: n }, () => r() * 2 - 1); };

/** One matmul op on its own buffers; `run(R)` times R dispatches. */
async function matmulBench(layout: GpuWeightLayout, M: number, pipes: MatmulPipelines, x?: Float32Array) {
  const arena = new UniformArena(k.device, 1);
  const lin = uploadLinear(k, layout, "bench");
  const xb = k.buffer(x ?? randomX(M * layout.K, 7), "x"), yb = k.buffer(M * layout.N * 4, "y");
  const op = new MatmulOp(k, arena, pipes, null, lin, xb, yb, null, "bench");
  op.plan(arena, M, 0, false);
  arena.flush(k.device);
  const kernel = op.ops[0]!.plan!.pipeline === pipes.sgmat ? "subgroup-matrix" : op.ops[0]!.plan!.pipeline === pipes.gemv ? "gemv" : "tiled gemm";
  const run = async (R: number): Promise<number> => {
    const enc = k.device.createCommandEncoder();
    k.encode(enc, Array.from({ length: R }, () => op.ops[0]!));
    const t = performance.now();
    k.device.queue.submit([enc.finish()]);
    await k.device.queue.onSubmittedWorkDone();
    const err = ctx.takeError();
    if (err !== null) throw err;
    return (performance.now() - t) / 1000 / R;
  };
  const read = () => k.read(yb, M * layout.N * 4);
  const destroy = () => { for (const b of [...lin.buffers, xb, yb]) b.destroy(); };
  return { run, read, destroy, kernel, weightBytes: lin.bytes };
}

async function timeOp(b: Awaited<ReturnType<typeof matmulBench>>, targetS: number): Promise<number> {
  const one = await b.run(1); // warm-up (and a first estimate)
  const R = Math.max(1, Math.min(200, Math.round(targetS / Math.max(one, 1e-6))));
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) ts.push(await b.run(R));
  return med(ts);
}

const pipesQ4 = await matmulPipelines(k, "q4", true), pipesF16 = await matmulPipelines(k, "f16", true);
const plainQ4 = await matmulPipelines(k, "q4", false), plainF16 = await matmulPipelines(k, "f16", false);
const limit = Math.min(info.maxStorageBufferBindingSize, info.maxBufferSize);

// 2. GEMV ------------------------------------------------------------------------------
say("## int4 GEMV (decode, M = 1)");
say();
say("| N × K (group 128) | weight MiB | µs / call | GB/s |");
say("|---|---:|---:|---:|");
const gemvShapes: [number, number][] = large ? [[28672, 8192], [4096, 4096], [5632, 2048]] : [[1024, 1024], [256, 2048]];
const gemv: Record<string, unknown>[] = [];
for (let [N, K] of gemvShapes) {
  while (N * K / 2 > limit) N = Math.floor(N / 2);
  const b = await matmulBench(randomQ4(N, K, 128, N + K), 1, pipesQ4);
  const s = await timeOp(b, large ? 0.05 : 0.3);
  const bytes = b.weightBytes + 4 * (K + N);
  say(`| ${N} × ${K} | ${(b.weightBytes / 2 ** 20).toFixed(1)} | ${(s * 1e6).toFixed(1)} | ${(bytes / s / 1e9).toFixed(1)} |`);
  gemv.push({ N, K, seconds: s, gbPerS: bytes / s / 1e9, kernel: b.kernel });
  b.destroy();
}
json["gemv"] = gemv;
say();

// 3. GEMM ------------------------------------------------------------------------------
say("## GEMM (prefill)");
say();
say("| weights | M × N × K | kernel | ms / call | GFLOP/s |");
say("|---|---|---|---:|---:|");
const [GM, GN, GK] = large ? [512, 4096, 4096] : [64, 512, 512];
const gemm: Record<string, unknown>[] = [];
for (const [fmt, layout] of [["f16", randomF16(GN, GK, 3)], ["int4 g128", randomQ4(GN, GK, 128, 4)]] as const) {
  const variants = fmt === "f16" ? [plainF16, pipesF16] : [plainQ4, pipesQ4];
  for (const pipes of variants) {
    if (pipes === variants[1] && pipes.sgmat === null) continue;
    const b = await matmulBench(layout, GM, pipes);
    const s = await timeOp(b, large ? 0.1 : 0.3);
    const gflops = (2 * GM * GN * GK) / s / 1e9;
    say(`| ${fmt} | ${GM} × ${GN} × ${GK} | ${b.kernel} | ${(s * 1e3).toFixed(2)} | ${gflops.toFixed(1)} |`);
    gemm.push({ weights: fmt, M: GM, N: GN, K: GK, kernel: b.kernel, seconds: s, gflopsPerS: gflops });
    b.destroy();
  }
}
if (pipesQ4.sgmat === null) say(`| | | subgroup-matrix | — | not offered (see Adapter) |`);
json["gemm"] = gemm;
say();

// 4. subgroup-matrix GEMM vs the reference ----------------------------------------------
say("## Subgroup-matrix GEMM against the reference");
say();
/** Tolerance: f16 products are exact in f32; the rest is f32 accumulation in another order. */
const SGMAT_TOL = 1e-4;
const sgmatCheck: Record<string, unknown>[] = [];
if (k.sgmatErrors.size > 0) {
  say(`**The adapter offers subgroup matrices but the kernel did not build** (the tiled GEMM ran instead): ${[...k.sgmatErrors].map(([f, e]) => `${f}: ${e.replace(/\n/g, " ")}`).join("; ")}`);
} else if (pipesQ4.sgmat === null) {
  say(`Not run: subgroup matrices are ${sgmWhy}.`);
} else {
  say(`Reference: refMatmul on x and weights rounded to f16 (the kernel stages both as f16), error = max |y − ref| / Σ|x·w|; tolerance ${SGMAT_TOL}.`);
  say();
  say("| weights | M × N × K | kernel | max error | vs f32 x (f16 rounding of x) | result |");
  say("|---|---|---|---:|---:|---|");
  for (const [M, N, K] of [[17, 37, 200], [40, 70, 520], [64, 96, 1000]] as const) {
    for (const [fmt, layout, pipes] of [["f16", randomF16(N, K, M), pipesF16], ["int4 g8", randomQ4(N, K, 8, M + 1), pipesQ4]] as const) {
      const x = randomX(M * K, M * K);
      const x16 = x.map((v) => f16ToF32(f32ToF16(v)));
      const w = dequantizeGpuLayout(layout).map((v) => f16ToF32(f32ToF16(v)));
      const b = await matmulBench(layout, M, pipes, x);
      const y = await b.read();
      b.destroy();
      const err = (ref: Float32Array, xs: Float32Array): number => {
        let worst = 0;
        for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
          let s = 0;
          for (let c = 0; c < K; c++) s += Math.abs(xs[m * K + c]! * w[n * K + c]!);
          worst = Math.max(worst, Math.abs(y[m * N + n]! - ref[m * N + n]!) / Math.max(s, 1e-30));
        }
        return worst;
      };
      const e16 = err(refMatmul(x16, w, M, K, N), x16), e32 = err(refMatmul(x, w, M, K, N), x);
      const ok = e16 <= SGMAT_TOL;
      say(`| ${fmt} | ${M} × ${N} × ${K} | ${b.kernel} | ${e16.toExponential(2)} | ${e32.toExponential(2)} | ${ok ? "equal within tolerance" : "**DIFFERS**"} |`);
      sgmatCheck.push({ weights: fmt, M, N, K, kernel: b.kernel, maxError: e16, maxErrorVsF32x: e32, ok });
    }
  }
}
json["subgroupMatrix"] = { offered: info.subgroupMatrixFeature !== null, built: pipesQ4.sgmat !== null && pipesF16.sgmat !== null, buildErrors: Object.fromEntries(k.sgmatErrors), why: sgmWhy, check: sgmatCheck, tolerance: SGMAT_TOL };
say();

// 4b. GPTQ Hessian -----------------------------------------------------------------------
{
  const [HK, HT, HS] = large ? [4096, 2048, 4] : [256, 128, 2];
  say("## GPTQ Hessian H = (2/n)·Σ xᵀx (issue 13 item 4, first half)");
  say();
  const xs = Array.from({ length: HS }, (_, i) => randomX(HT * HK, 100 + i)); // [T, K] each
  const cpuB = selectBackend({ threads: cpus().length });
  const cpuTimes: number[] = [], gpuTimes: number[] = [];
  let hc: Float32Array = new Float32Array(0), hg: Float32Array = new Float32Array(0);
  for (let r = 0; r < reps; r++) {
    const c = new HessianAccumulatorF32(HK);
    let t = performance.now();
    for (const x of xs) c.add(cpuB, x, HT);
    cpuTimes.push((performance.now() - t) / 1000);
    hc = c.hessian();
    const g = await GpuHessianAccumulator.create(ctx, HK, HT);
    t = performance.now();
    for (const x of xs) g.add(x, HT);
    hg = await g.hessian();
    gpuTimes.push((performance.now() - t) / 1000);
    g.destroy();
  }
  let worst = 0;
  for (let i = 0; i < HK; i++) for (let j = 0; j < HK; j++) worst = Math.max(worst, Math.abs(hg[i * HK + j]! - hc[i * HK + j]!) / Math.sqrt(hc[i * HK + i]! * hc[j * HK + j]!));
  const flop = 2 * HT * HK * HK * HS;
  say(`${HS} sequences of x [${HT}, ${HK}] (2·T·K² = ${(flop / 1e9).toPrecision(3)} GFLOP in all), median of ${reps}; GPU time includes uploading x and reading H back; ` +
    `max |H_gpu − H_cpu| / √(H_ii·H_jj) = ${worst.toExponential(2)}.`);
  say();
  say("| engine | s | GFLOP/s | vs CPU |");
  say("|---|---:|---:|---:|");
  const cs = med(cpuTimes), gs = med(gpuTimes);
  say(`| CPU: HessianAccumulatorF32 on ${cpuB.name === "native" ? `native, ${cpus().length} threads` : cpuB.name} | ${cs.toFixed(3)} | ${(flop / cs / 1e9).toFixed(1)} | 1.00× |`);
  say(`| GPU: GpuHessianAccumulator (kernels/syrk.wgsl) | ${gs.toFixed(3)} | ${(flop / gs / 1e9).toFixed(1)} | ${(cs / gs).toFixed(2)}× |`);
  say();
  say("`gptq --device gpu` runs the Hessian and the lazy-batch sweep on the GPU (kernels/gptq.wgsl); the whole layer, GPU vs CPU: eval/bench-gptq-gpu.ts.");
  say();
  json["gptqHessian"] = { K: HK, T: HT, sequences: HS, cpuSeconds: cs, gpuSeconds: gs, speedup: cs / gs, maxError: worst };
}

// 5. end to end ------------------------------------------------------------------------
interface E2E { engine: string; path: string; loadS: number; prefillTps: number; decodeTps: number; prompt: number; gen: number; kv?: KvDType }
const e2e: E2E[] = [];
async function oursE2E(name: string, model: EngineModel, tok: Detokenizer, path: string, loadS: number, prompt: number[], gen: number, kv?: KvDType): Promise<void> {
  const session = new Session(model, Math.min(model.cfg.maxPositionEmbeddings, prompt.length + gen + 1), kv);
  const req = { prompt, maxTokens: gen, sampler: GREEDY, stopIds: [], ignoreEos: true };
  await generate(session, tok, { ...req, maxTokens: 2 }); // warm-up: first-use costs
  const pre: number[] = [], dec: number[] = [];
  for (let i = 0; i < reps; i++) {
    session.reset();
    const r = await generate(session, tok, req);
    pre.push((r.stats.prefillTokens * 1000) / r.stats.prefillMs);
    dec.push((r.stats.decodeSteps * 1000) / r.stats.decodeMs);
  }
  e2e.push({ engine: `${name}, KV ${session.kv}`, path: `${path}; KV cache ${session.kv}`, loadS, prefillTps: med(pre), decodeTps: med(dec), prompt: prompt.length, gen, kv: session.kv });
}

const tl = performance.now();
const g = await loadGpuModel(modelPath, ctx, { warn: () => {} });
const gLoad = (performance.now() - tl) / 1000;
const { cfg } = g;
const promptLen = Math.min(Number(values.prompt ?? (large ? 512 : 64)), cfg.maxPositionEmbeddings - 80);
const genLen = Math.min(Number(values.gen ?? (large ? 128 : 16)), cfg.maxPositionEmbeddings - promptLen - 1);
const rand = mulberry32(11);
const prompt = Array.from({ length: promptLen }, () => Math.floor(rand() * Math.min(cfg.vocabSize, 4096)));
for (const kv of kvTypes) await oursE2E("ours, WebGPU", g.gpu, g.tokenizer, describeGpuPath(ctx, g), gLoad, prompt, genLen, kv);
if (values["no-cpu"] !== true) {
  const tc = performance.now();
  const c = await loadModel(modelPath, selectBackend({ threads: cpus().length }), { warn: () => {} });
  await oursE2E("ours, CPU", c.model, c.tokenizer, describeKernelPath(c.model), (performance.now() - tc) / 1000, prompt, genLen);
}
if (modelPath.toLowerCase().endsWith(".gguf") && values.llamacpp !== "off") {
  const tried: string[] = [];
  for (const gpu of values.llamacpp === "auto" ? ["cuda", "vulkan"] as const : [values.llamacpp as "cuda" | "vulkan"]) {
    try {
      e2e.push(await llamaE2E(gpu, prompt, genLen));
      break;
    } catch (e) {
      tried.push(`${gpu}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  if (tried.length > 0) json["llamacppErrors"] = tried;
  for (const t of tried) say(`llama.cpp ${t}`);
}
json["e2e"] = e2e;

say(`## End to end: ${modelPath === BUNDLED_MODEL_DIR ? "the bundled model (qllm-tiny, 5M parameters: dispatch-bound, not bandwidth-bound)" : modelPath}`);
say();
say(`${cfg.numLayers} layers, hidden ${cfg.hiddenSize}, vocab ${cfg.vocabSize}; prompt ${promptLen} seeded random ids, then ${genLen} greedy tokens (EOS ignored), median of ${reps}; ` +
  "prefill = the prompt through generate/engine.ts (chunks of 256), decode = single-token steps (one logits read-back each on the GPU).");
say();
const ref = e2e.find((e) => e.engine.startsWith("llama.cpp")) ?? e2e.find((e) => e.engine.startsWith("ours, CPU"));
say(`| engine | load s | prefill tokens/s | decode tokens/s | decode vs ${ref?.engine ?? "—"} | path |`);
say("|---|---:|---:|---:|---:|---|");
for (const e of e2e) {
  say(`| ${e.engine} | ${e.loadS.toFixed(2)} | ${e.prefillTps.toFixed(1)} | ${e.decodeTps.toFixed(1)} | ${ref ? (e.decodeTps / ref.decodeTps).toFixed(2) + "×" : "—"} | ${e.path} |`);
}
say();
say(`Total ${((performance.now() - t00) / 1000).toFixed(0)} s.`);
ctx.device.destroy();

if (values.out) { const tmp = `${values.out}.tmp`; writeFileSync(tmp, lines.join("\n") + "\n"); renameSync(tmp, values.out); }
if (values.json) { const tmp = `${values.json}.tmp`; writeFileSync(tmp, JSON.stringify(json, null, 1) + "\n"); renameSync(tmp, values.json); }

/** llama.cpp through node-llama-cpp's prebuilt CUDA or Vulkan build, every layer on the GPU: prompt in one batch, then greedy single steps. */
async function llamaE2E(gpu: "cuda" | "vulkan", ids: number[], gen: number): Promise<E2E> {
  const nlc = await import("node-llama-cpp");
  const llama = await nlc.getLlama({ gpu, build: "never", skipDownload: true, progressLogs: false, logLevel: nlc.LlamaLogLevel.error });
  if (llama.gpu !== gpu) throw new Error(`node-llama-cpp loaded its ${String(llama.gpu)} build, not ${gpu}`);
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath, gpuLayers: "max" });
  const loadS = (performance.now() - t0) / 1000;
  const lctx = await model.createContext({ contextSize: ids.length + gen + 64, batchSize: ids.length, flashAttention: false });
  const seq = lctx.getSequence();
  type EvalInput = Parameters<typeof seq.controlledEvaluate>[0];
  const greedy = { generateNext: { token: true, options: { temperature: 0 } } };
  const once = async () => {
    await seq.clearHistory();
    const tp = performance.now();
    let res = await seq.controlledEvaluate(ids.map((t, i) => (i === ids.length - 1 ? [t, greedy] : t)) as EvalInput);
    const prefillMs = performance.now() - tp;
    const td = performance.now();
    for (let i = 1; i < gen; i++) res = await seq.controlledEvaluate([[res.at(-1)!.next.token!, greedy]] as EvalInput);
    return { pre: (ids.length * 1000) / prefillMs, dec: ((gen - 1) * 1000) / (performance.now() - td) };
  };
  await once();
  const runs = [];
  for (let i = 0; i < reps; i++) runs.push(await once());
  const devices = await llama.getGpuDeviceNames().catch(() => [] as string[]);
  await lctx.dispose(); await model.dispose(); await llama.dispose();
  return {
    engine: `llama.cpp ${gpu}`, path: `node-llama-cpp prebuilt ${gpu} build on ${devices.join(", ") || "?"}, all layers offloaded, batch ${ids.length}`,
    loadS, prefillTps: med(runs.map((r) => r.pre)), decodeTps: med(runs.map((r) => r.dec)), prompt: ids.length, gen,
  };
}

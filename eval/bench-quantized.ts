/**
 * Quantized matmul benchmark: this machine's streaming-read bandwidth (a probe of
 * our own), our packed int4 / int8 kernels, and llama.cpp's (the ggml that
 * node-llama-cpp ships) on the same weights with the same threads, in ONE process
 * run, interleaved A/B; prints and writes ratios of medians.
 *
 *   flock -x /tmp/qllm-cpu.lock npx tsx eval/bench-quantized.ts [--threads 2] [--reps 5]
 *         [--sections probe,gemv,gemm,smallm] [--out eval/reports/bench-quantized.md] [--gemv-shapes NxK,...]
 *
 * Sections are modules in eval/bench-quantized/ listed in SECTIONS (add one there);
 * the probe section runs first (the run's bandwidth, for the header); each GEMV and small-M case
 * reports its "% of probe" against probes taken right before and after it (bench-quantized/probe.ts).
 */
import { execSync } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import { createNativeBackend } from "../src/backend/native.ts";
import { createContext, type BenchContext } from "./bench-quantized/context.ts";
import { gemmSection, gemvSection, probeSection } from "./bench-quantized/matmul.ts";
import { smallMSection } from "./bench-quantized/smallm.ts";

const SECTIONS: Record<string, (ctx: BenchContext) => Promise<string>> = {
  probe: probeSection,
  gemv: gemvSection,
  gemm: gemmSection,
  smallm: smallMSection,
};

const { values: opts } = parseArgs({
  options: {
    threads: { type: "string", default: "2" }, reps: { type: "string", default: "5" },
    sections: { type: "string", default: Object.keys(SECTIONS).join(",") },
    out: { type: "string", default: "eval/reports/bench-quantized.md" },
    // the GEMV section's shapes as NxK,… (N rows = outputs, K = inputs), e.g. TinyLlama's decode matmuls:
    // 2560x2048 (q|k|v), 2048x2048 (o), 11264x2048 (gate|up), 2048x5632 (down)
    "gemv-shapes": { type: "string" },
  },
});
const threads = Number(opts.threads), reps = Number(opts.reps);
const names = opts.sections.split(",");
for (const n of names) if (!(n in SECTIONS)) throw new Error(`unknown section ${n}; known: ${Object.keys(SECTIONS).join(", ")}`);
if (!names.includes("probe") && names.some((n) => n !== "probe")) names.unshift("probe");

function sh(cmd: string): string {
  try { return execSync(cmd, { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { return "unknown"; }
}
function thp(): string {
  try { return /\[(\w+)\]/.exec(readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8"))?.[1] ?? "?"; } catch { return "n/a"; }
}
const flags = readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1] ?? "";
const simd = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni"].filter((f) => flags.split(" ").includes(f));

const nb = createNativeBackend({ threads });
const ctx = createContext(nb, threads, reps, (l) => console.log(l));
if (opts["gemv-shapes"] !== undefined) {
  ctx.gemvShapes = opts["gemv-shapes"].split(",").map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s.trim());
    if (m === null || Number(m[2]) % 32 !== 0) throw new Error(`--gemv-shapes: each shape is NxK with K a multiple of 32 (the Q4_0/Q8_0 block), not "${s}"`);
    return [Number(m[1]), Number(m[2])] as [number, number];
  });
}
const load0 = loadavg();
const started = new Date().toISOString();
const parts: string[] = [];
try {
  for (const n of names) parts.push(await SECTIONS[n]!(ctx));
} finally {
  await ctx.close();
}
const header = [
  "# Quantized matmul: ours vs llama.cpp, same weights, same threads",
  "",
  "```",
  `flock -x /tmp/qllm-cpu.lock npx tsx eval/bench-quantized.ts --threads ${threads} --reps ${reps} --sections ${names.join(",")}${opts["gemv-shapes"] !== undefined ? ` --gemv-shapes ${opts["gemv-shapes"]}` : ""}`,
  "```",
  "",
  `| | |`,
  `|---|---|`,
  `| date | ${started} |`,
  `| commit | ${sh("git rev-parse --short HEAD")} |`,
  `| CPU | ${cpus()[0]?.model ?? "?"}, ${cpus().length} cores; ${simd.join(" ")} |`,
  `| threads | ${threads} (ours and llama.cpp) |`,
  `| our kernel level | ${nb.kernelLevel} (packed kernels: ${nb.packedKernelLevel}) |`,
  `| llama.cpp | node-llama-cpp's prebuilt ggml, CPU variant libggml-cpu-${ctx.llamaVariant}.so (eval/bench-quantized/ggml-harness.c) |`,
  `| THP | ${thp()} |`,
  `| loadavg before / after | ${load0.map((v) => v.toFixed(2)).join(" ")} / ${loadavg().map((v) => v.toFixed(2)).join(" ")} |`,
  "",
  "Interleaved A/B: each round runs ours then llama.cpp on the same case; " +
    `${reps} rounds; medians over all calls; speed-up = llama.cpp median time / ours.`,
  "",
].join("\n");
const report = `${header}\n${parts.join("\n")}`;
const tmp = `${opts.out}.tmp${process.pid}`;
writeFileSync(tmp, report);
renameSync(tmp, opts.out);
console.log(`\nwrote ${opts.out}`);

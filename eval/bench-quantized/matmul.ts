/**
 * The per-matmul sections of bench-quantized: the read-bandwidth probe, int4 and
 * int8 GEMV with weights streamed from DRAM, and int4 GEMM (prefill), ours against
 * llama.cpp on the same weights with the same threads, interleaved A/B in rounds.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PackedWeight } from "../../src/backend/native.ts";
import type { BenchContext } from "./context.ts";
import { median, ratio, table } from "./context.ts";
import { bracket, pctOf, PROBE_BYTES, probeNotes, shortProbe, type Bracketed } from "./probe.ts";
import { randomWeights, writeGgmlBlocks } from "./weights.ts";

// Distinct weight bytes each GEMV case cycles through. 64 MB (2× the 32 MiB L3) is not
// enough on this Zen 3: its L3 is a victim cache and still served part of a 64 MB cycle
// (ours read 110–125% of the DRAM probe there, node-only, same day), so cycle 256 MB.
export const COLD_BYTES = 256e6;
export const GEMV_SHAPES: [number, number][] = [[4096, 4096], [11008, 4096], [4096, 11008]];  // [N, K]

export async function probeSection(ctx: BenchContext): Promise<string> {
  const passes = Array.from(ctx.nb.readBandwidth(PROBE_BYTES, ctx.threads, ctx.reps * 2));
  ctx.probeGBs = median(passes);
  ctx.log(`probe: ${passes.map((v) => v.toFixed(1)).join(" ")} GB/s → median ${ctx.probeGBs.toFixed(1)}`);
  return [
    "## Streaming-read bandwidth probe",
    "",
    `${(PROBE_BYTES / 2 ** 20).toFixed(0)} MiB allocated like packed weights (2 MiB-aligned, MADV_HUGEPAGE), ${ctx.threads} threads, ` +
      `4 streams each (native/src/packed_probe.cc): median **${ctx.probeGBs.toFixed(1)} GB/s** ` +
      `(min ${Math.min(...passes).toFixed(1)}, max ${Math.max(...passes).toFixed(1)}, ${passes.length} passes).`,
    "",
  ].join("\n");
}

interface Side {
  us: number[];
  bytes: number;
}

/**
 * Interleaved rounds: ours `calls` times, then llama.cpp `calls` times; per-call µs of each.
 * Each side starts its round with an untimed pass over every copy (the harness's `run`
 * does the same for llama.cpp), so neither is timed while waking from the other's turn.
 */
async function abRounds(ctx: BenchContext, ws: PackedWeight[], x: Float32Array, M: number, calls: number): Promise<[number[], number[]]> {
  const ours: number[] = [], llama: number[] = [];
  const out = new Float32Array(M * ws[0]!.N);
  for (let round = 0; round < ctx.reps; round++) {
    for (const w of ws) ctx.nb.matmulPacked(x, w, M, undefined, out);  // untimed warm-up: every copy touched
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      ctx.nb.matmulPacked(x, ws[i % ws.length]!, M, undefined, out);
      ours.push((performance.now() - t0) * 1000);
    }
    llama.push(...(await ctx.harness().then((h) => h.run(M, calls))));
  }
  return [ours, llama];
}

async function loadBoth(ctx: BenchContext, bits: 4 | 8, N: number, K: number, copies: number, dir: string): Promise<{ ws: PackedWeight[]; llamaBytes: number; buft: string }> {
  const w = randomWeights(bits, N, K, N * 31 + K + bits);
  const file = join(dir, `w${bits}-${N}x${K}.bin`);
  writeGgmlBlocks(w, bits, file);
  const [llamaBytes, buft] = await (await ctx.harness()).load(bits === 4 ? "q4_0" : "q8_0", N, K, copies, file);
  const ws: PackedWeight[] = [];
  for (let c = 0; c < copies; c++) {
    ws.push(bits === 4
      ? ctx.nb.packQ4({ codes: w.codes as Uint8Array, scales: w.scales, mins: null, N, K, groupSize: 32, perm: null })
      : ctx.nb.packQ8({ codes: w.codes as Int8Array, scales: w.scales, N, K, groupSize: 32, perm: null }));
  }
  return { ws, llamaBytes, buft };
}

export function xFor(M: number, K: number): Float32Array {
  const x = new Float32Array(M * K);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37) * 0.8;
  return x;
}

export async function gemvSection(ctx: BenchContext): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "qllm-bq-"));
  const rows: string[][] = [];
  const probes: number[] = [], judged: { label: string; b: Bracketed }[] = [];
  try {
    for (const bits of [4, 8] as const) {
      for (const [N, K] of ctx.gemvShapes ?? GEMV_SHAPES) {
        const bytes1 = (N * K * (bits === 4 ? 18 : 34)) / 32;
        const copies = Math.max(2, Math.ceil(COLD_BYTES / bytes1));
        const { ws, llamaBytes, buft } = await loadBoth(ctx, bits, N, K, copies, dir);
        // The probe drifts between runs and within one (14–62 GB/s seen on this VM), so each
        // case's % is against probes taken right before and right after that case.
        const before = shortProbe(ctx.nb, ctx.threads, 4);
        const [ours, llama] = await abRounds(ctx, ws, xFor(1, K), 1, copies * 4);
        const after = shortProbe(ctx.nb, ctx.threads, 4);
        const o: Side = { us: ours, bytes: ws[0]!.bytes }, l: Side = { us: llama, bytes: llamaBytes };
        const gbs = (s: Side): number => s.bytes / median(s.us) / 1e3;
        const name = bits === 4 ? "int4 g32 (Q4_0)" : "int8 g32 (Q8_0)";
        const bo = bracket(gbs(o), before, after), bl = bracket(gbs(l), before, after);
        probes.push(before, after);
        judged.push({ label: `${name} ${N}×${K}, ours`, b: bo }, { label: `${name} ${N}×${K}, llama.cpp`, b: bl });
        rows.push([
          name, `${N}×${K}`, String(copies),
          `${before.toFixed(1)} / ${after.toFixed(1)}`, `${gbs(o).toFixed(1)}`, pctOf(bo),
          `${gbs(l).toFixed(1)}`, pctOf(bl), buft,
          ratio(median(l.us), median(o.us)),
          `${median(o.us).toFixed(0)} / ${Math.min(...o.us).toFixed(0)}`, `${median(l.us).toFixed(0)} / ${Math.min(...l.us).toFixed(0)}`,
        ]);
        ctx.log(`gemv ${rows.at(-1)!.join(" | ")}`);
        for (const w of ws) w.dispose();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return [
    "## GEMV (decode, M = 1), weights streamed from DRAM",
    "",
    `Each case cycles through enough distinct copies of the matrix to exceed ${COLD_BYTES / 1e6} MB (the L3 is 32 MiB); ` +
      "GB/s = weight bytes of one matrix / median time of one call; % = of that case's probe: the mean of a probe right before and one right after the case " +
      "(each the median of 4 passes over 512 MiB; the probe drifts too much within a run for one figure to serve all cases), " +
      "not valid when those two disagree by more than 15% or the % exceeds 100. " +
      "Same weights on both sides (identical f16 scales and codes, 4.5 / 8.5 bits per weight).",
    "",
    table(["weights", "N×K", "copies", "probes before / after GB/s", "ours GB/s", "ours % probe", "llama.cpp GB/s", "llama % probe", "llama buffer", "speed-up", "ours µs med/min", "llama µs med/min"], rows),
    "",
    ...probeNotes(probes, judged, "in this section"),
    "",
  ].join("\n");
}

export async function gemmSection(ctx: BenchContext): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "qllm-bq-"));
  const rows: string[][] = [];
  try {
    const M = 512, N = 4096, K = 4096;
    const { ws, buft } = await loadBoth(ctx, 4, N, K, 1, dir);
    const [ours, llama] = await abRounds(ctx, ws, xFor(M, K), M, 1);
    const gf = (us: number[]): number => (2 * M * N * K) / median(us) / 1e3;
    rows.push(["int4 g32 (Q4_0)", `${M}×${K} · (${N}×${K})ᵀ`, gf(ours).toFixed(0), gf(llama).toFixed(0), buft, ratio(median(llama), median(ours)),
      `${(median(ours) / 1e3).toFixed(1)} / ${(Math.min(...ours) / 1e3).toFixed(1)}`, `${(median(llama) / 1e3).toFixed(1)} / ${(Math.min(...llama) / 1e3).toFixed(1)}`]);
    ctx.log(`gemm ${rows.at(-1)!.join(" | ")}`);
    for (const w of ws) w.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return [
    "## GEMM (prefill, M = 512)",
    "",
    "GFLOP/s = 2·M·N·K / median time; activations quantized to int8 inside the call on both sides.",
    "",
    table(["weights", "shape", "ours GFLOP/s", "llama.cpp GFLOP/s", "llama buffer", "speed-up", "ours ms med/min", "llama ms med/min"], rows),
    "",
  ].join("\n");
}

/**
 * The small-M section of bench-quantized: our packed matmul at M = 1, 2, 4, 8 (decode,
 * and a few decode streams batched) with the weights streamed from DRAM, in GB/s and %
 * of the read probe, for int4 g32 (Q4_0's plan), int4 g128 (GPTQ's) and int8 g32
 * (Q8_0's) on the GEMV shapes. Ours only: the M = 1 comparison with llama.cpp is the
 * gemv section's. W is read once per call at every M here (M ≤ 8 activation rows are a
 * few KiB), so GB/s = weight bytes / time is the figure to hold against the probe.
 */
import type { PackedWeight } from "../../src/backend/native.ts";
import type { BenchContext } from "./context.ts";
import { median, table } from "./context.ts";
import { COLD_BYTES, GEMV_SHAPES, xFor } from "./matmul.ts";
import { bracket, pctOf, probeNotes, shortProbe, type Bracketed } from "./probe.ts";
import { randomWeights } from "./weights.ts";

const SMALL_M = [1, 2, 4, 8];
const LAYOUTS: { name: string; bits: 4 | 8; g: number }[] = [
  { name: "int4 g32 (Q4_0)", bits: 4, g: 32 },
  { name: "int4 g128", bits: 4, g: 128 },
  { name: "int8 g32 (Q8_0)", bits: 8, g: 32 },
];

function packCopies(ctx: BenchContext, bits: 4 | 8, g: number, N: number, K: number): PackedWeight[] {
  const w = randomWeights(bits, N, K, N * 31 + K + bits + g, g);
  const pack = (): PackedWeight => bits === 4
    ? ctx.nb.packQ4({ codes: w.codes as Uint8Array, scales: w.scales, mins: null, N, K, groupSize: g, perm: null })
    : ctx.nb.packQ8({ codes: w.codes as Int8Array, scales: w.scales, N, K, groupSize: g, perm: null });
  const ws = [pack()];
  const copies = Math.max(2, Math.ceil(COLD_BYTES / ws[0]!.bytes));
  while (ws.length < copies) ws.push(pack());
  return ws;
}

export async function smallMSection(ctx: BenchContext): Promise<string> {
  const rows: string[][] = [];
  const probes: number[] = [], judged: { label: string; b: Bracketed }[] = [];
  for (const { name, bits, g } of LAYOUTS) {
    for (const [N, K] of GEMV_SHAPES) {
      const ws = packCopies(ctx, bits, g, N, K);
      const xs = SMALL_M.map((M) => xFor(M, K));
      const outs = SMALL_M.map((M) => new Float32Array(M * N));
      const us: number[][] = SMALL_M.map(() => []);
      const before = shortProbe(ctx.nb, ctx.threads, 4);
      // Rounds interleave the M values, so a drift of the host's bandwidth hits all of them alike.
      for (let round = 0; round < ctx.reps; round++) {
        SMALL_M.forEach((M, j) => {
          for (const w of ws) ctx.nb.matmulPacked(xs[j]!, w, M, undefined, outs[j]!);  // untimed: every copy touched
          for (let i = 0; i < ws.length * 2; i++) {
            const t0 = performance.now();
            ctx.nb.matmulPacked(xs[j]!, ws[i % ws.length]!, M, undefined, outs[j]!);
            us[j]!.push((performance.now() - t0) * 1000);
          }
        });
      }
      const after = shortProbe(ctx.nb, ctx.threads, 4);
      const bytes = ws[0]!.bytes;
      const bs = SMALL_M.map((_, j) => bracket(bytes / median(us[j]!) / 1e3, before, after));
      probes.push(before, after);
      judged.push(...bs.map((b, j) => ({ label: `${name} ${N}×${K}, M = ${SMALL_M[j]}`, b })));
      rows.push([
        name, `${N}×${K}`, String(ws.length), `${before.toFixed(1)} / ${after.toFixed(1)}`,
        ...bs.map((b) => `${b.gbs.toFixed(1)} (${pctOf(b)})`),
        us.map((u) => median(u).toFixed(0)).join(" / "),
      ]);
      ctx.log(`small-M ${rows.at(-1)!.join(" | ")}`);
      for (const w of ws) w.dispose();
    }
  }
  return [
    "## Small M (decode, M = 1, 2, 4, 8), weights streamed from DRAM: ours",
    "",
    `Each case cycles through enough distinct copies of the matrix to exceed ${COLD_BYTES / 1e6} MB; the rounds interleave the M values; ` +
      "GB/s = weight bytes of one matrix (codes, scales, padding) / median time of one call, which reads W once at every M here; " +
      "% = of the case's probe (the mean of a probe right before and one right after the case, each the median of 4 passes over 512 MiB; " +
      "not valid when those two disagree by more than 15% or the % exceeds 100).",
    "",
    table(["weights", "N×K", "copies", "probes before / after GB/s", ...SMALL_M.map((M) => `M = ${M} GB/s (% probe)`), "µs median M = 1 / 2 / 4 / 8"], rows),
    "",
    ...probeNotes(probes, judged, "in this section"),
    "",
  ].join("\n");
}

/**
 * A/B of two builds of the native addon on the packed matmul, in ONE process: both
 * addons are loaded side by side (each its own pool), and the rounds alternate A, B,
 * A, B … on the same case, so the drift of this host's bandwidth (up to 2× within
 * minutes) hits both alike. Weights are cold (each side cycles through > 256 MB of
 * distinct copies, as bench-quantized's gemv section); prints median µs per side and
 * the speed-up B / A per case.
 *
 *   cp native/build/Release/quantize_llm.node /tmp/a.node   # the build to compare against
 *   … change, npm run build:native …
 *   /work/bin/bench npx tsx eval/bench-quantized-ab.ts --a /tmp/a.node --b native/build/Release/quantize_llm.node \
 *         [--rounds 4] [--threads 2] [--M 1,2,4,8] [--layouts q4g32,q4g128,q8g32]
 *         [--level-a amx --level-b avx512] [--shapes 4096x4096,5632x2048]
 *
 * --level-a / --level-b force a kernel level on each side (else each addon's best); with
 * the same file for --a and --b that is an A/B of two levels of one build (both sides then
 * share one addon instance, and the level is set before each side's calls), e.g. the AMX
 * GEMM against the VNNI tiles at prefill size:
 *   … --a native/build/Release/quantize_llm.node --b native/build/Release/quantize_llm.node \
 *         --level-a avx512 --level-b amx --M 512 --shapes 4096x4096,5632x2048,2048x5632 --rounds 3
 * --shapes replaces the GEMV shapes (N×K).
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadAddon, NativeBackend, type KernelLevel, type PackedWeight } from "../src/backend/native.ts";
import { median } from "./bench-quantized/context.ts";
import { COLD_BYTES, GEMV_SHAPES, xFor } from "./bench-quantized/matmul.ts";
import { randomWeights } from "./bench-quantized/weights.ts";

const { values: opts } = parseArgs({
  options: {
    a: { type: "string" }, b: { type: "string" },
    rounds: { type: "string", default: "4" }, threads: { type: "string", default: "2" },
    M: { type: "string", default: "1" }, layouts: { type: "string", default: "q4g32,q4g128,q8g32" },
    "level-a": { type: "string" }, "level-b": { type: "string" }, shapes: { type: "string" },
  },
});
if (opts.a === undefined || opts.b === undefined) throw new Error("--a and --b: the two addon files (quantize_llm.node) to compare");
const threads = Number(opts.threads), rounds = Number(opts.rounds);
const Ms = opts.M.split(",").map(Number);
const LAYOUTS: Record<string, { bits: 4 | 8; g: number }> = { q4g32: { bits: 4, g: 32 }, q4g128: { bits: 4, g: 128 }, q8g32: { bits: 8, g: 32 } };
const sides = [opts.a, opts.b].map((f) => {
  const nb = new NativeBackend(loadAddon(resolve(f)));
  nb.setThreads(threads);
  return nb;
});
const levels = [opts["level-a"], opts["level-b"]] as (KernelLevel | undefined)[];
const setLevel = (s: number): void => { if (levels[s] !== undefined) sides[s]!.setKernelLevel(levels[s]!); };
const shapes: (readonly [number, number])[] = opts.shapes === undefined ? GEMV_SHAPES
  : opts.shapes.split(",").map((t) => t.split("x").map(Number) as [number, number]);
const describe = (s: number): string => { setLevel(s); return `${sides[s]!.kernelLevel}, packed ${sides[s]!.packedKernelLevel}`; };
console.log(`A = ${opts.a} (${describe(0)}), B = ${opts.b} (${describe(1)}); ${rounds} rounds A, B alternating, ${threads} threads`);

for (const name of opts.layouts.split(",")) {
  const lay = LAYOUTS[name];
  if (lay === undefined) throw new Error(`unknown layout ${name}; known: ${Object.keys(LAYOUTS).join(", ")}`);
  for (const [N, K] of shapes) {
    const w = randomWeights(lay.bits, N, K, N * 31 + K + lay.bits + lay.g, lay.g);
    const pack = (nb: NativeBackend): PackedWeight => lay.bits === 4
      ? nb.packQ4({ codes: w.codes as Uint8Array, scales: w.scales, mins: null, N, K, groupSize: lay.g, perm: null })
      : nb.packQ8({ codes: w.codes as Int8Array, scales: w.scales, N, K, groupSize: lay.g, perm: null });
    const ws = sides.map((nb) => {
      const first = pack(nb), list = [first];
      while (list.length < Math.max(2, Math.ceil(COLD_BYTES / first.bytes))) list.push(pack(nb));
      return list;
    });
    for (const M of Ms) {
      const x = xFor(M, K), out = new Float32Array(M * N);
      const us: number[][] = [[], []];
      for (let round = 0; round < rounds; round++) {
        for (let s = 0; s < 2; s++) {
          const nb = sides[s]!, list = ws[s]!;
          setLevel(s);
          for (const pw of list) nb.matmulPacked(x, pw, M, undefined, out);  // untimed: every copy touched
          for (let i = 0; i < list.length * 2; i++) {
            const t0 = performance.now();
            nb.matmulPacked(x, list[i % list.length]!, M, undefined, out);
            us[s]!.push((performance.now() - t0) * 1000);
          }
        }
      }
      const [a, b] = us.map(median) as [number, number];
      const gbs = (t: number): string => (ws[0]![0]!.bytes / t / 1e3).toFixed(1);
      const rate = (t: number): string => M > 8 ? `${((2 * M * N * K) / t / 1e3).toFixed(0)} GFLOP/s` : `${gbs(t)} GB/s`;
      console.log(`${name} ${N}×${K} M=${M}: A ${a.toFixed(0)} µs (${rate(a)}), B ${b.toFixed(0)} µs (${rate(b)}), B/A speed-up ${(a / b).toFixed(3)}×`);
    }
    for (const list of ws) for (const pw of list) pw.dispose();
  }
}

/**
 * A/B of two builds of the native addon on decode attention (issue 9), in ONE process: both
 * addons loaded side by side (each its own pool), rounds alternating A, B, A, B … on the
 * same shape, so this host's bandwidth drift hits both alike. One call = one layer's decode
 * step: T = 1 query after `keys − 1` cached positions, TinyLlama's 32 heads / 4 kv heads,
 * d 64 by default. The K and V caches are cold: each side cycles through > 256 MB of
 * distinct copies (the decode step's matmuls evict them the same way). Checks A and B
 * against each other (they must agree to the attention tests' tolerance), prints median µs
 * per call per side, the KV bytes' GB/s and the speed-up A / B. `--b-kv f16` (`--a-kv f16`): side B
 * (A) reads the same cache rounded to f16 (the f16 KvCache, half the bytes); with one side f16,
 * |A − B| is the rounding's.
 *
 *   cp native/build/Release/quantize_llm.node /tmp/a.node   # the build to compare against
 *   … change, npm run build:native …
 *   /work/bin/bench npx tsx eval/bench-attention-ab.ts --a /tmp/a.node --b native/build/Release/quantize_llm.node \
 *         [--keys 576,128,2048] [--rounds 5] [--threads 2] [--heads 32] [--kv-heads 4] [--d 64] [--hot] [--a-kv f16] [--b-kv f16]
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadAddon, NativeBackend } from "../src/backend/native.ts";
import type { KvRows } from "../src/backend/backend.ts";
import { f32ToF16 } from "../src/tensor/dtype.ts";
import { mulberry32 } from "../src/util/random.ts";

const { values: opts } = parseArgs({
  options: {
    a: { type: "string" }, b: { type: "string" }, keys: { type: "string", default: "576" },
    rounds: { type: "string", default: "5" }, threads: { type: "string", default: "2" },
    heads: { type: "string", default: "32" }, "kv-heads": { type: "string", default: "4" }, d: { type: "string", default: "64" },
    hot: { type: "boolean", default: false }, "a-kv": { type: "string", default: "f32" }, "b-kv": { type: "string", default: "f32" },
  },
});
if (opts.a === undefined || opts.b === undefined) throw new Error("--a and --b: the two addon files (quantize_llm.node) to compare");
const threads = Number(opts.threads), rounds = Number(opts.rounds);
const nHead = Number(opts.heads), nKvHead = Number(opts["kv-heads"]), d = Number(opts.d);
const COLD_BYTES = 256 * 2 ** 20;
const f16 = [opts["a-kv"], opts["b-kv"]].map((kv, s) => {
  if (kv !== "f32" && kv !== "f16") throw new Error(`--${"ab"[s]}-kv: f32 or f16, not ${kv}`);
  return kv === "f16";
});
const sides = [opts.a, opts.b].map((f) => {
  const nb = new NativeBackend(loadAddon(resolve(f)));
  nb.setThreads(threads);
  return nb;
});
const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]!; };
console.log(`A = ${opts.a} (${sides[0]!.kernelLevel}), B = ${opts.b} (${sides[1]!.kernelLevel}); ${rounds} rounds A, B alternating, ${threads} threads, ${nHead} heads / ${nKvHead} kv heads, d ${d}, cache ${opts.hot ? "hot" : "cold"}, caches A ${opts["a-kv"]}, B ${opts["b-kv"]}`);
console.log("| keys | A µs | B µs | A GB/s | B GB/s | A / B | max |A − B| |");
console.log("|---:|---:|---:|---:|---:|---:|---:|");

for (const S of opts.keys.split(",").map(Number)) {
  const shape = { T: 1, pos0: S - 1, nHead, nKvHead, headDim: d };
  const kvLen = S * nKvHead * d, kvBytes = f16.map((h) => 2 * (h ? 2 : 4) * kvLen);
  const r = mulberry32(S);
  const fill = (n: number, s: number): Float32Array => Float32Array.from({ length: n }, () => (r() - 0.5) * s);
  const q = fill(nHead * d, 2);
  const k0 = fill(kvLen, 2), v0 = fill(kvLen, 2);
  const rows = (a: Float32Array, s: number): KvRows => (f16[s] ? Uint16Array.from(a, (x) => f32ToF16(x)) : a.slice());
  const caches = sides.map((_, s) => Array.from({ length: opts.hot ? 1 : Math.max(2, Math.ceil(COLD_BYTES / kvBytes[s]!)) }, () => ({ k: rows(k0, s), v: rows(v0, s) })));
  const outs = sides.map(() => new Float32Array(nHead * d));
  for (let s = 0; s < 2; s++) sides[s]!.attention(q, caches[s]![0]!.k, caches[s]![0]!.v, shape, outs[s]!);
  let diff = 0;
  for (let i = 0; i < outs[0]!.length; i++) diff = Math.max(diff, Math.abs(outs[0]![i]! - outs[1]![i]!));
  const us: number[][] = [[], []];
  for (let round = 0; round < rounds; round++) {
    for (let s = 0; s < 2; s++) {
      const nb = sides[s]!, list = caches[s]!, out = outs[s]!;
      const n = Math.max(list.length * 2, 200);
      const t0 = performance.now();
      for (let i = 0; i < n; i++) { const c = list[i % list.length]!; nb.attention(q, c.k, c.v, shape, out); }
      us[s]!.push(((performance.now() - t0) / n) * 1000);
    }
  }
  const [a, b] = [median(us[0]!), median(us[1]!)];
  console.log(`| ${S} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(kvBytes[0]! / a / 1e3).toFixed(1)} | ${(kvBytes[1]! / b / 1e3).toFixed(1)} | ${(a / b).toFixed(2)} | ${diff.toExponential(1)} |`);
}

/**
 * Decode attention against the memory roof (issue 9): one call = one layer's decode step (T = 1,
 * `keys − 1` cached positions; TinyLlama's 32 heads / 4 kv heads, d 64 by default) through
 * NativeBackend.attention, for an f16 and an f32 cache, with the cache
 *   hot   one layer's K, V (the same rows every call: L2 / L3 resident),
 *   22    `--layers` distinct layers' caches cycled (a whole step's KV: L3 at these sizes),
 *   cold  distinct copies cycled through > 256 MB (DRAM; in a decode step the weights evict them).
 * Prints µs per call, the GB/s of the KV bytes read, that as % of the packed-weight read probe
 * (readBandwidth, taken before and after each case), µs per step (× layers) and, over all
 * cases, the addon's one-thread FMA peak against the call's FLOPs.
 *
 * --kv f16: each build's f16 cache in its backend's layout (NativeBackend.keyBlocks: keys in blocks of
 * 32 positions when the addon has toF16Keys, row-major before; native/LAYOUTS.md "KV cache"), so
 * that an A/B of a build before the blocked keys and one after compares the two layouts; f16-rows
 * forces row-major keys on every build, f16-blocks blocked keys (an older build refuses them).
 *
 * Several builds (`--addon a.node --addon b.node`): each loaded in this process with its own
 * pool, the rounds alternating between them on the same shape and rows (this host's bandwidth
 * drifts), a column per build and the ratio first / last; the outputs must agree to twice
 * the attention tests' tolerance (attentionTol in test/backend.test.ts: each within it of the reference).
 *
 *   /work/bin/bench npx tsx eval/bench-attention.ts [--addon native/build/Release/quantize_llm.node] [--addon /tmp/b.node]
 *         [--keys 64,576,1024,2048] [--kv f16,f16-rows,f16-blocks,f32] [--residency hot,22,cold] [--rounds 5] [--threads 2] [--layers 22]
 *         [--heads 32] [--kv-heads 4] [--d 64]
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadAddon, NativeBackend } from "../src/backend/native.ts";
import { KEY_BLOCK, type KvRows } from "../src/backend/backend.ts";
import { f32ToF16 } from "../src/tensor/dtype.ts";
import { mulberry32 } from "../src/util/random.ts";
import { median } from "./bench-quantized/context.ts";
import { shortProbe } from "./bench-quantized/probe.ts";

const { values: opts } = parseArgs({
  options: {
    addon: { type: "string", multiple: true }, keys: { type: "string", default: "64,576,1024,2048" },
    kv: { type: "string", default: "f16,f32" }, residency: { type: "string", default: "hot,22,cold" },
    rounds: { type: "string", default: "5" }, threads: { type: "string", default: "2" }, layers: { type: "string", default: "22" },
    heads: { type: "string", default: "32" }, "kv-heads": { type: "string", default: "4" }, d: { type: "string", default: "64" },
  },
});
/** test/backend.test.ts attentionTol: |native − reference| per element for q, k in [−qMax, qMax], [−kMax, kMax], |v| ≤ 1. */
const F32_EPS = 2 ** -23;
const attentionTol = (d: number, qMax: number, kMax: number, nKeys: number): number =>
  d * F32_EPS * ((d * qMax * kMax) / Math.sqrt(d)) + (8 + nKeys) * F32_EPS;
const COLD_BYTES = 256 * 2 ** 20;
const files = opts.addon ?? ["native/build/Release/quantize_llm.node"];
const threads = Number(opts.threads), rounds = Number(opts.rounds), layers = Number(opts.layers);
const nHead = Number(opts.heads), nKvHead = Number(opts["kv-heads"]), d = Number(opts.d);
const kvs = opts.kv.split(","), residencies = opts.residency.split(",");
for (const kv of kvs) if (!["f16", "f16-rows", "f16-blocks", "f32"].includes(kv)) throw new Error(`--kv: f16, f16-rows, f16-blocks or f32, not ${kv}`);
for (const r of residencies) if (r !== "hot" && r !== "cold" && r !== String(layers)) throw new Error(`--residency: hot, ${layers} or cold, not ${r}`);
const sides = files.map((f) => {
  const nb = new NativeBackend(loadAddon(resolve(f)));
  nb.setThreads(threads);
  return nb;
});
const peak1 = sides[0]!.fmaPeak(1);
console.log(`builds: ${files.map((f, i) => `${"ABCD"[i]} = ${f} (${sides[i]!.kernelLevel}, f16 keys ${sides[i]!.keyBlocks ? "in blocks" : "row-major"})`).join(", ")}; ${rounds} rounds${sides.length > 1 ? " alternating" : ""}, ${threads} threads, ${nHead} heads / ${nKvHead} kv heads, d ${d}; FMA peak ${peak1.toFixed(0)} GFLOP/s on 1 thread`);
const tag = (i: number): string => (sides.length > 1 ? ` ${"ABCD"[i]}` : "");
const cols = sides.map((_, i) => `µs${tag(i)} | GB/s${tag(i)} | % probe${tag(i)} | ms/step${tag(i)}`).join(" | ");
console.log(`| kv | keys | cache | ${cols}${sides.length > 1 ? " | A / last | max diff" : ""} | probe GB/s | GFLOP/s${tag(0)} |`);
console.log(`|---|---:|---|${sides.map(() => "---:|---:|---:|---:|").join("")}${sides.length > 1 ? "---:|---:|" : ""}---:|---:|`);

for (const kv of kvs) {
  for (const S of opts.keys.split(",").map(Number)) {
    const shape = { T: 1, pos0: S - 1, nHead, nKvHead, headDim: d };
    const kvLen = S * nKvHead * d, kvBytes = 2 * (kv === "f32" ? 4 : 2) * kvLen;
    const flops = 4 * nHead * d * S;
    const r = mulberry32(S);
    const fill = (n: number, s: number): Float32Array => Float32Array.from({ length: n }, () => (r() - 0.5) * s);
    const q = fill(nHead * d, 2);
    const rows = (a: Float32Array): KvRows => (kv === "f32" ? a.slice() : Uint16Array.from(a, (x) => f32ToF16(x)));
    /** the keys [S, nKv·d] in blocks of 32 positions (AttentionShape.keyBlocks) */
    const blocked = (a: Float32Array): Uint16Array => {
      const row = nKvHead * d, b = new Uint16Array(Math.ceil(S / KEY_BLOCK) * KEY_BLOCK * row);
      for (let p = 0; p < S; p++) for (let e = 0; e < row; e++) b[Math.floor(p / KEY_BLOCK) * row * KEY_BLOCK + e * KEY_BLOCK + (p % KEY_BLOCK)] = f32ToF16(a[p * row + e]!);
      return b;
    };
    // per build: its keys' layout (--kv f16: the backend's)
    const layoutOf = sides.map((nb) => (kv === "f16-blocks" || (kv === "f16" && nb.keyBlocks) ? "blocks" : "rows"));
    const k0 = fill(kvLen, 2), v0 = fill(kvLen, 2);
    for (const res of residencies) {
      const copies = res === "hot" ? 1 : res === "cold" ? Math.max(layers, Math.ceil(COLD_BYTES / kvBytes)) : layers;
      const layouts = new Set(layoutOf);
      const caches = Array.from({ length: copies }, () => {
        const v = rows(v0);
        return { v, rows: layouts.has("rows") ? rows(k0) : null, blocks: layouts.has("blocks") ? blocked(k0) : null };
      });
      const shapes = layoutOf.map((l) => ({ ...shape, keyBlocks: l === "blocks" }));
      const kOf = (c: (typeof caches)[number], s: number): KvRows => (layoutOf[s] === "blocks" ? c.blocks! : c.rows!);
      const outs = sides.map(() => new Float32Array(nHead * d));
      sides.forEach((nb, s) => nb.attention(q, kOf(caches[0]!, s), caches[0]!.v, shapes[s]!, outs[s]!));
      let diff = 0;
      for (const o of outs) for (let i = 0; i < o.length; i++) diff = Math.max(diff, Math.abs(o[i]! - outs[0]![i]!));
      if (diff > 2 * attentionTol(d, 1, 1, S)) throw new Error(`kv ${kv} keys ${S}: the builds differ by ${diff} (more than the tolerance)`);
      const before = shortProbe(sides[0]!, threads);
      const us: number[][] = sides.map(() => []);
      const n = Math.max(copies * 2, Math.ceil(20000 / (1 + S / 64)));
      for (let round = 0; round < rounds; round++) {
        sides.forEach((nb, s) => {
          const sh = shapes[s]!;
          for (let i = 0; i < copies; i++) { const c = caches[i]!; nb.attention(q, kOf(c, s), c.v, sh, outs[s]!); } // warm the walk
          const t0 = performance.now();
          for (let i = 0; i < n; i++) { const c = caches[i % copies]!; nb.attention(q, kOf(c, s), c.v, sh, outs[s]!); }
          us[s]!.push(((performance.now() - t0) / n) * 1000);
        });
      }
      const after = shortProbe(sides[0]!, threads);
      const probe = (before + after) / 2;
      const med = us.map(median);
      const cells = med.map((u) => `${u.toFixed(1)} | ${(kvBytes / u / 1e3).toFixed(1)} | ${((100 * kvBytes) / u / 1e3 / probe).toFixed(0)}% | ${((u * layers) / 1000).toFixed(2)}`);
      const ab = sides.length > 1 ? ` | ${(med[0]! / med[med.length - 1]!).toFixed(2)} | ${diff.toExponential(1)}` : "";
      const kvName = kv === "f16" ? `f16 (${layoutOf.map((l) => (l === "blocks" ? "b" : "r")).join("/")})` : kv;
      console.log(`| ${kvName} | ${S} | ${res === "hot" ? "hot" : res === "cold" ? `cold (${copies})` : `${copies} layers`} | ${cells.join(" | ")}${ab} | ${before.toFixed(1)}–${after.toFixed(1)} | ${(flops / med[0]! / 1e3).toFixed(0)} |`);
    }
  }
}

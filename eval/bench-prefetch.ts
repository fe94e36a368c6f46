/**
 * The decode step's parts with and without the attention call's prefetch hint (issue 9;
 * native/src/prefetch.h), in ONE process, rounds alternating off / on: after a prompt of
 * --prompt tokens, each round runs every layer's decode-step sequence
 *   attention (hint: o, gate, up) → o → gate+up → down
 * on the model's own weights (22 layers: ~600 MB streamed per round, so each layer's weights
 * come cold from DRAM) and times each part per layer (median over rounds, µs).
 *
 *   /work/bin/bench npx tsx eval/bench-prefetch.ts [--model /tmp/qllm-tinyllama/q4_0.gguf] [--prompt 576] [--rounds 9] [--kv f32|f16]
 */
import { parseArgs } from "node:util";
import type { Backend } from "../src/backend/backend.ts";
import { createNativeBackend } from "../src/backend/native.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { mulberry32 } from "../src/util/random.ts";
import { median } from "./bench-quantized/context.ts";

const { values: opts } = parseArgs({
  options: {
    model: { type: "string", default: "/tmp/qllm-tinyllama/q4_0.gguf" }, prompt: { type: "string", default: "576" },
    rounds: { type: "string", default: "9" }, threads: { type: "string", default: "2" }, kv: { type: "string", default: "f32" },
  },
});
const nb = createNativeBackend({ threads: Number(opts.threads) });
nb.prefetchHints = true; // the hinted rounds pass hints, the others none
const be: Backend = nb;
const { cfg, model } = await loadModel(opts.model, nb, { weights: "packed" });
const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: d, vocabSize: V } = cfg;
const P = Number(opts.prompt), rounds = Number(opts.rounds);
const r = mulberry32(1);
if (opts.kv !== "f32" && opts.kv !== "f16") throw new Error("--kv: f32 or f16");
const cache = model.newCache(P + 1, opts.kv);
model.forward(Array.from({ length: P }, () => Math.floor(r() * V)), cache, { logits: "none" });
const q = new Float32Array(nH * d).map(() => r() - 0.5), att = new Float32Array(nH * d);
const xH = new Float32Array(H).map(() => r() - 0.5), ao = new Float32Array(H), g = new Float32Array(I), u = new Float32Array(I), dn = new Float32Array(H);
const shape = { T: 1, pos0: P - 1, nHead: nH, nKvHead: nKv, headDim: d };
const names = ["attention", "o", "gate+up", "down", "layer"] as const;
/** µs per layer of each part, one round over all layers. */
function round(hints: boolean): number[] {
  const t = names.map(() => 0);
  for (const b of model.weights.blocks) {
    const l = b.linears, c = cache.layers[model.weights.blocks.indexOf(b)]!;
    const t0 = performance.now();
    be.attention(q, c.k, c.v, shape, att, hints ? [l.o.weight, l.gate.weight, l.up.weight] : undefined);
    const t1 = performance.now();
    be.matmul(att, l.o.weight, 1, nH * d, H, undefined, ao);
    const t2 = performance.now();
    be.matmulMany!(xH, 1, H, [{ w: l.gate.weight, N: I, out: g }, { w: l.up.weight, N: I, out: u }]);
    const t3 = performance.now();
    be.matmul(g, l.down.weight, 1, I, H, undefined, dn);
    const t4 = performance.now();
    [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0].forEach((v, i) => (t[i]! += v));
  }
  return t.map((v) => (1000 * v) / model.weights.blocks.length);
}
round(false); round(true); // warm-up
const res: number[][][] = [[], []];
for (let i = 0; i < rounds; i++) for (const h of [0, 1]) res[h]!.push(round(h === 1));
console.log(`${opts.model}, ${P} positions, ${opts.kv} cache, ${opts.threads} threads, ${rounds} rounds alternating; µs per layer (median):`);
for (let p = 0; p < names.length; p++) {
  const off = median(res[0]!.map((x) => x[p]!)), on = median(res[1]!.map((x) => x[p]!));
  console.log(`  ${names[p]!.padEnd(10)} off ${off.toFixed(1).padStart(7)}  on ${on.toFixed(1).padStart(7)}  on/off ${(on / off).toFixed(3)}`);
}

/**
 * A/B of the two ways a 16-bit (BF16/F16) linear can run on the native backend (issue 10),
 * in ONE process, rounds alternating copy, view, copy, view …:
 *
 *   copy  pack16: the matrix copied into the interleaved bf16x16 / f16x16 layout (fresh memory)
 *   view  mapFile + view16: the rows as stored in the safetensors file, read in place from a
 *         read-only mapping (native/LAYOUTS.md "Row-major views")
 *
 * 1. matmul at each M on the model's own tensors, by shape (TinyLlama: 2048², 5632×2048,
 *    2048×5632, 32000×2048), cold: each side cycles through its distinct tensors of that
 *    shape (q and o of every layer, gate and up, down, lm_head and the embedding), > 256 MB
 *    where the model has them; median µs per call, GB/s of weight bytes, speed-up view/copy;
 * 2. decode tokens/s of the whole model loaded both ways (--weights16 map / copy), after
 *    an 8-token prompt, median of the rounds.
 *
 *   /work/bin/bench node --import tsx eval/bench-rows16.ts [--model /tmp/qllm-tinyllama/bf16]
 *       [--threads 2] [--rounds 3] [--M 1,8,64,512] [--steps 16] [--no-decode]
 */
import { parseArgs } from "node:util";
import type { LinearWeight } from "../src/backend/backend.ts";
import { createNativeBackend, type PackedWeight } from "../src/backend/native.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { argmax } from "../src/nn/generate.ts";
import type { Model } from "../src/nn/model.ts";
import { median } from "./bench-quantized/context.ts";
import { COLD_BYTES, xFor } from "./bench-quantized/matmul.ts";

const { values: opts } = parseArgs({
  options: {
    model: { type: "string", default: "/tmp/qllm-tinyllama/bf16" }, threads: { type: "string", default: "2" },
    rounds: { type: "string", default: "3" }, M: { type: "string", default: "1,8,64,512" }, steps: { type: "string", default: "16" },
    "no-decode": { type: "boolean" },
  },
});
const threads = Number(opts.threads), rounds = Number(opts.rounds), steps = Number(opts.steps);
const Ms = opts.M.split(",").map(Number);
const nb = createNativeBackend({ threads });
console.log(`${opts.model}: ${nb.packedKernelLevel} packed kernels, ${threads} threads, ${rounds} rounds copy/view alternating`);

// ---------------------------------------------------------------- 1. matmul by shape and M
const ckpt = await openCheckpoint(opts.model);
const byShape = new Map<string, string[]>();
for (const name of ckpt.names()) {
  const { shape, dtype } = ckpt.info(name);
  if (shape.length !== 2 || (dtype !== "BF16" && dtype !== "F16")) continue;
  const key = `${shape[0]}×${shape[1]}`;
  byShape.set(key, [...(byShape.get(key) ?? []), name]);
}
const maps = new Map<string, ReturnType<typeof nb.mapFile>>();
for (const [key, names] of byShape) {
  const { shape, dtype } = ckpt.info(names[0]!);
  const N = shape[0]!, K = shape[1]!;
  const dt = dtype === "F16" ? "f16" as const : "bf16" as const;
  const take = names.slice(0, Math.max(2, Math.ceil(COLD_BYTES / (2 * N * K))));
  const views: PackedWeight[] = [], copies: PackedWeight[] = [];
  for (const name of take) {
    const at = ckpt.locate(name);
    if (!maps.has(at.path)) maps.set(at.path, nb.mapFile(at.path));
    const file = maps.get(at.path);
    if (file === null || file === undefined) throw new Error(`cannot map ${at.path}`);
    views.push(nb.view16({ file, offset: at.begin, dtype: dt, N, K }));
    copies.push(nb.pack16({ data: new Uint16Array(ckpt.readRawSync(name).buffer), dtype: dt, N, K }));
  }
  const sides = [copies, views];
  for (const M of Ms) {
    const x = xFor(M, K), out = new Float32Array(M * N);
    const calls = M >= 64 ? take.length : 2 * take.length;  // prefill shapes are compute-bound: one pass
    const us: number[][] = [[], []];
    for (let round = 0; round < rounds; round++) {
      for (let s = 0; s < 2; s++) {
        const list = sides[s]!;
        if (M < 64) for (const w of list) nb.matmulPacked(x, w, M, undefined, out);  // untimed: every copy touched
        for (let i = 0; i < calls; i++) {
          const t0 = performance.now();
          nb.matmulPacked(x, list[i % list.length]!, M, undefined, out);
          us[s]!.push((performance.now() - t0) * 1000);
        }
      }
    }
    const [c, v] = us.map(median) as [number, number];
    const gbs = (t: number): string => ((2 * N * K) / t / 1e3).toFixed(1);
    const gflops = (t: number): string => ((2 * M * N * K) / t / 1e3).toFixed(0);
    console.log(`${key} (${take.length} tensors, ${((take.length * 2 * N * K) / 1e6).toFixed(0)} MB) M=${M}: copy ${c.toFixed(0)} µs (${gbs(c)} GB/s, ${gflops(c)} GFLOP/s), ` +
      `view ${v.toFixed(0)} µs (${gbs(v)} GB/s, ${gflops(v)} GFLOP/s), view/copy speed-up ${(c / v).toFixed(3)}×`);
  }
  for (const w of [...views, ...copies]) w.dispose();
}
for (const f of maps.values()) f?.release();
await ckpt.close();

// ---------------------------------------------------------------- 2. decode tokens/s, both ways
if (opts["no-decode"] !== true) {
  const models: Model[] = [];
  for (const weights16 of ["copy", "map"] as const) {
    const t0 = performance.now();
    const m = await loadModel(opts.model, nb, { warn: () => {}, weights16 });
    console.log(`loadModel --weights16 ${weights16}: ${((performance.now() - t0) / 1000).toFixed(2)} s, lm_head ${(m.model.weights.lmHead as LinearWeight & { layout?: string }).layout}`);
    models.push(m.model);
  }
  const V = models[0]!.cfg.vocabSize;
  const prompt = [1, 450, 4996, 17354, 1701, 432, 17204, 975];
  const decode = (m: Model): number => {
    const c = m.newCache(prompt.length + steps + 1);
    let logits = m.forward(prompt, c, { logits: "last" });
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) logits = m.forward([argmax(logits, 0, V)], c, { logits: "last" });
    return (performance.now() - t0) / steps;
  };
  for (const m of models) decode(m);  // warm-up: JIT, pool, page tables
  const ms: number[][] = [[], []];
  for (let round = 0; round < rounds; round++) for (let s = 0; s < 2; s++) ms[s]!.push(decode(models[s]!));
  const [c, v] = ms.map(median) as [number, number];
  console.log(`decode (${steps} steps after ${prompt.length} tokens, median of ${rounds}): copy ${c.toFixed(1)} ms/token (${(1000 / c).toFixed(2)} tokens/s), ` +
    `map ${v.toFixed(1)} ms/token (${(1000 / v).toFixed(2)} tokens/s), map/copy speed-up ${(c / v).toFixed(3)}×`);
  console.log(`  per round: copy ${ms[0]!.map((t) => t.toFixed(1)).join(", ")}; map ${ms[1]!.map((t) => t.toFixed(1)).join(", ")} ms/token`);
}

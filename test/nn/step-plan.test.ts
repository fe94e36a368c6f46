/**
 * Recorded decode steps (Backend.recordStep, native-graph.ts, native/src/graph.h): a replayed
 * step runs the same kernels in the same order as the eager native forward, so its logits and
 * the KV rows it writes must be bit-identical to the eager forward's, step after step, for the
 * bundled model's 16-bit weights, a GPTQ 4-bit act-order folder and a Q4_0 GGUF, with f16 and
 * f32 caches, also when the pool is resized between steps. Where a step cannot be replayed (taps, a wrapped backend) the forward runs eagerly.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withPackedActivations, type LinearWeight } from "../../src/backend/backend.ts";
import { createNativeBackend } from "../../src/backend/native.ts";
import { exportQuantizedGguf } from "../../src/export/gguf-quant.ts";
import { loadModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { argmax } from "../../src/nn/generate.ts";
import { Model, type KvDType } from "../../src/nn/model.ts";
import type { ModelWeights } from "../../src/nn/weights.ts";
import { quantizeModel } from "../../src/quantize/pipeline.ts";
import { randomWeights, tinyConfig } from "../helpers/random-weights.ts";
import { randPerm, randScales, rng } from "../kernels/packed-ref.ts";

const HAS_WEIGHTS = existsSync(join(BUNDLED_MODEL_DIR, "model.safetensors"));
const PROMPT = [1, 15, 27, 3, 99, 4, 8];
const STEPS = 6;

/** Greedy steps after the prompt: each step's logits and the cache after the last; `threads(i)` sets the pool's size before step i. */
/** "f16-rows": an f16 cache with row-major keys (the native backend's f16 default stores them in blocks, KvCache keyBlocks). */
/** picks: each step's opts.argmax (a replayed step's from the plan's native argmax op). */
function decode(model: Model, kv: KvDType | "f16-rows", plans: boolean, threads?: (i: number) => void): { logits: Float32Array[]; picks: number[]; cache: ReturnType<Model["newCache"]> } {
  model.stepPlans = plans;
  const cache = kv === "f16-rows" ? model.newCache(PROMPT.length + STEPS + 4, "f16", false) : model.newCache(PROMPT.length + STEPS + 4, kv);
  let l = model.forward(PROMPT, cache, { logits: "last" });
  const logits: Float32Array[] = [], picks: number[] = [], id = Int32Array.of(-1);
  for (let i = 0; i < STEPS; i++) {
    threads?.(i);
    id[0] = -1;
    l = model.forward([argmax(l, 0, model.cfg.vocabSize)], cache, { logits: "last", argmax: id });
    logits.push(l);
    picks.push(id[0]!);
  }
  return { logits, picks, cache };
}

function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = a.length === b.length ? 0 : 1;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) n++;
  return n;
}

describe.skipIf(!HAS_WEIGHTS)("a replayed decode step equals the eager native forward bit for bit", () => {
  const nb = createNativeBackend({ threads: 2 });
  let tmp: string;
  const sources: Record<string, string> = { "16-bit": BUNDLED_MODEL_DIR };

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "qllm-step-plan-"));
    sources["gptq act-order"] = join(tmp, "gptq");
    await quantizeModel({
      modelDir: BUNDLED_MODEL_DIR, outDir: sources["gptq act-order"], backend: nb,
      settings: {
        method: "gptq", bits: 4, groupSize: 32, sym: true, actOrder: true, staticGroups: false, damp: 0.01, blockSize: 128,
        trueSequential: true, format: "gptq", calibSamples: 2, calibSeqlen: 32, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT,
      },
    });
    sources["gguf q4_0"] = join(tmp, "q4_0.gguf");
    await exportQuantizedGguf(BUNDLED_MODEL_DIR, sources["gguf q4_0"], { type: "q4_0" });
  }, 300_000);
  afterAll(() => { if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true }); });

  for (const name of ["16-bit", "gptq act-order", "gguf q4_0"]) {
    it.each(["f16", "f16-rows", "f32"] as const)(`${name}, %s cache`, async (kv) => {
      const { model } = await loadModel(sources[name]!, nb, { weights: "packed" });
      const eager = decode(model, kv, false);
      const plan = decode(model, kv, true);
      const p = model.stepPlanOf(plan.cache);
      expect(typeof p === "object" ? p.ops : p).toBeGreaterThan(0); // recorded, not a reason string
      expect(model.stepPlanOf(eager.cache)).toBeUndefined();
      plan.logits.forEach((l, i) => expect(differing(l, eager.logits[i]!)).toBe(0));
      // the plan's argmax op (Backend.argmax, recorded last) picks what the TS scan of its logits does (Model.forward opts.argmax)
      expect(nb.argmax).toBeDefined();
      expect(plan.picks).toEqual(plan.logits.map((l) => argmax(l)));
      expect(eager.picks).toEqual(plan.picks);
      plan.cache.layers.forEach((L, i) => {
        expect(differing(L.k, eager.cache.layers[i]!.k)).toBe(0);
        expect(differing(L.v, eager.cache.layers[i]!.v)).toBe(0);
      });
      // a different step's logits do differ (the comparison can fail)
      expect(differing(plan.logits[0]!, plan.logits[1]!)).toBeGreaterThan(0);
    }, 60_000);
  }

  // The replay holds the pool for the step and publishes prefetch hints built for the pool's size
  // (native/src/graph.cc): a pool resized between steps gets them rebuilt, with the same results.
  it("a plan replayed across pool resizes (2, 3, 1, 2 threads) equals the eager steps at the same sizes", async () => {
    const { model } = await loadModel(sources["gguf q4_0"]!, nb, { weights: "packed" });
    const sizes = [2, 3, 1, 2, 3, 2];
    try {
      const eager = decode(model, "f16", false, (i) => nb.setThreads(sizes[i]!));
      const plan = decode(model, "f16", true, (i) => nb.setThreads(sizes[i]!));
      expect(typeof model.stepPlanOf(plan.cache)).toBe("object");
      plan.logits.forEach((l, i) => expect(differing(l, eager.logits[i]!)).toBe(0));
      plan.cache.layers.forEach((L, i) => expect(differing(L.k, eager.cache.layers[i]!.k) + differing(L.v, eager.cache.layers[i]!.v)).toBe(0));
    } finally {
      nb.setThreads(2);
    }
  }, 60_000);

  // opts.out (a decode loop's reused logits buffer, generate/engine.ts Session): the plan and the
  // eager forward write the same logits into it and return it; a wrong length is a UsageError.
  it("forward writes its logits into opts.out, on the plan and eagerly, and checks its length", async () => {
    const { model } = await loadModel(sources["gguf q4_0"]!, nb, { weights: "packed" });
    const V = model.cfg.vocabSize;
    for (const plans of [true, false]) {
      const want = decode(model, "f16", plans);
      model.stepPlans = plans;
      const cache = model.newCache(PROMPT.length + STEPS + 4, "f16");
      const all = new Float32Array(PROMPT.length * V).fill(NaN);
      const got = model.forward(PROMPT, cache, { logits: "all", out: all });
      expect(got).toBe(all);
      const out = new Float32Array(V).fill(NaN);
      let l: Float32Array = all.slice((PROMPT.length - 1) * V);
      for (let i = 0; i < STEPS; i++) {
        const r = model.forward([argmax(l, 0, V)], cache, { logits: "last", out });
        expect(r).toBe(out);
        expect(differing(r, want.logits[i]!)).toBe(0);
        l = r;
      }
      expect(typeof model.stepPlanOf(cache)).toBe(plans ? "object" : "undefined");
      expect(() => model.forward([1], cache, { logits: "last", out: new Float32Array(V - 1) })).toThrow(/opts\.out.*wrong length/);
    }
  }, 60_000);

  it("taps and wrapped backends run eagerly (no plan), with the same results", async () => {
    const { model } = await loadModel(BUNDLED_MODEL_DIR, nb, { weights: "packed" });
    const want = decode(model, "f16", false);
    const wrapped = new Model(model.cfg, model.weights, withPackedActivations(nb, "int8"));
    const got = decode(wrapped, "f16", true);
    expect(model.stepPlanOf(want.cache)).toBeUndefined();
    expect(wrapped.stepPlanOf(got.cache)).toBe("a wrapped backend");
    got.logits.forEach((l, i) => expect(differing(l, want.logits[i]!)).toBe(0));
    model.stepPlans = true;
    const cache = model.newCache(16, "f16");
    model.forward(PROMPT, cache, { logits: "none" });
    let taps = 0;
    model.forward([5], cache, { logits: "last", tap: () => { taps++; } });
    expect(taps).toBeGreaterThan(0);
    expect(model.stepPlanOf(cache)).toBeUndefined();
  }, 60_000);
});

// The step executors (native/src/graph.h): QLLM_STEP_EXEC=ops hands each parallel op to the held pool
// under its locks (the reference); atomic by atomics alone; joint (the default) also runs a decode matmul
// as one job whose tasks each quantize x (packed_matmul.cc). The bundled
// model's matmuls are too small for the pool; this one's run on it (qkv, o, gate|up, down: 2·K·N ≥ 2e6),
// with an act-order permutation on q|k|v and down (the gather in the split) and 33 blocks of x on down
// (an odd count over 2 and 3 threads).
describe("the step executors on a model whose decode matmuls run on the pool", () => {
  const nb = createNativeBackend({ threads: 2 });
  const cfg = tinyConfig({ hidden_size: 1024, intermediate_size: 1056, num_attention_heads: 8, num_key_value_heads: 4, num_hidden_layers: 2, vocab_size: 256, max_position_embeddings: 64 });
  let seed = 20;
  const q4 = (N: number, K: number, perm: Int32Array | null): LinearWeight => {
    const r = rng(seed++);
    return nb.packQ4({ codes: Uint8Array.from({ length: N * K }, () => Math.floor(r() * 16)), scales: randScales(N * (K / 32), r, true), mins: null, N, K, groupSize: 32, perm });
  };
  const f32 = randomWeights(cfg, 9);
  const blocks = f32.blocks.map((b) => {
    const permH = randPerm(cfg.hiddenSize, rng(seed++)), permI = randPerm(cfg.intermediateSize, rng(seed++));
    const l = Object.fromEntries(Object.entries(b.linears).map(([n, x]) =>
      [n, { ...x, weight: q4(x.N, x.K, n === "q" || n === "k" || n === "v" ? permH : n === "down" ? permI : null) }])) as Record<keyof typeof b.linears, { weight: LinearWeight; N: number; K: number }>;
    const qkv = nb.fuse([l.q.weight, l.k.weight, l.v.weight])!, gu = nb.fuse([l.gate.weight, l.up.weight])!;
    [l.q.weight, l.k.weight, l.v.weight, l.gate.weight, l.up.weight] = [qkv[0]!, qkv[1]!, qkv[2]!, gu[0]!, gu[1]!];
    return { ...b, linears: l };
  });
  const lmHead = q4(cfg.vocabSize, cfg.hiddenSize, null);
  const model = new Model(cfg, { ...f32, blocks, lmHead } as ModelWeights<LinearWeight>, nb);
  const withExec = <T>(exec: string | undefined, f: () => T): T => {
    const was = process.env.QLLM_STEP_EXEC;
    if (exec === undefined) delete process.env.QLLM_STEP_EXEC; else process.env.QLLM_STEP_EXEC = exec;
    try { return f(); } finally { if (was === undefined) delete process.env.QLLM_STEP_EXEC; else process.env.QLLM_STEP_EXEC = was; }
  };

  it.each([[1], [2], [3]])("%i threads: plans (joint, atomic, ops) and eager steps are bit-identical", (threads) => {
    nb.setThreads(threads);
    try {
      const eager = decode(model, "f16", false);
      const fast = withExec(undefined, () => decode(model, "f16", true));
      const atomic = withExec("atomic", () => decode(model, "f16", true));
      const ops = withExec("ops", () => decode(model, "f16", true));
      expect(model.stepPlanOf(fast.cache)).toMatchObject({ ops: expect.any(Number) });
      for (const run of [fast, atomic, ops]) {
        run.logits.forEach((l, i) => expect(differing(l, eager.logits[i]!)).toBe(0));
        run.cache.layers.forEach((L, i) => expect(differing(L.k, eager.cache.layers[i]!.k) + differing(L.v, eager.cache.layers[i]!.v)).toBe(0));
      }
      expect(differing(fast.logits[0]!, fast.logits[1]!)).toBeGreaterThan(0);
    } finally {
      nb.setThreads(2);
    }
  }, 60_000);

  it("switching executor (ops, atomic, joint) and pool size between steps (2, 3, 1, 2, 3, 2 threads) equals the eager steps", () => {
    const sizes = [2, 3, 1, 2, 3, 2];
    try {
      const eager = decode(model, "f32", false, (i) => nb.setThreads(sizes[i]!));
      const plan = decode(model, "f32", true, (i) => {
        nb.setThreads(sizes[i]!);
        if (i % 3 === 2) delete process.env.QLLM_STEP_EXEC; else process.env.QLLM_STEP_EXEC = i % 3 === 0 ? "ops" : "atomic";
      });
      plan.logits.forEach((l, i) => expect(differing(l, eager.logits[i]!)).toBe(0));
      plan.cache.layers.forEach((L, i) => expect(differing(L.k, eager.cache.layers[i]!.k) + differing(L.v, eager.cache.layers[i]!.v)).toBe(0));
    } finally {
      delete process.env.QLLM_STEP_EXEC;
      nb.setThreads(2);
    }
  }, 60_000);
});

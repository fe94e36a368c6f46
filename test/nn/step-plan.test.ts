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
import { withPackedActivations } from "../../src/backend/backend.ts";
import { createNativeBackend } from "../../src/backend/native.ts";
import { exportQuantizedGguf } from "../../src/export/gguf-quant.ts";
import { loadModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { argmax } from "../../src/nn/generate.ts";
import { Model, type KvDType } from "../../src/nn/model.ts";
import { quantizeModel } from "../../src/quantize/pipeline.ts";

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

/**
 * 16-bit safetensors folders on the native backend, both ways (LoadOptions.weights16):
 * "map" (default) runs every linear as a row-major view of the mapped file, "copy" packs it
 * into the interleaved f16x16 / bf16x16 layout. Same logits within the f32 summation bound
 * (the row streams add k in lanes), same greedy tokens, the layouts named in the kernel path;
 * a tied head is a view of the embedding's bytes; the ref backend ignores the option.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LinearWeight } from "../../src/backend/backend.ts";
import { createNativeBackend } from "../../src/backend/native.ts";
import { refBackend } from "../../src/backend/ref.ts";
import { loadModel, type LoadedModel } from "../../src/load/hf-folder.ts";
import { describeKernelPath } from "../../src/load/kernel-path.ts";
import { generate } from "../../src/nn/generate.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

/** Relative to the largest |logit|: K·ε-sized summation differences over a few layers. */
const LOGIT_REL_TOL = 1e-4;

const layoutOf = (w: LinearWeight): string => (w as { layout?: string }).layout ?? "f32";

describe.each([
  { dtype: "BF16" as const, tie: false },
  { dtype: "F16" as const, tie: true },
])("$dtype folder (tied head: $tie), weights16 map vs copy", ({ dtype, tie }) => {
  const nb = createNativeBackend({ threads: 2 });
  let tiny: TinyModel;
  let map: LoadedModel, copy: LoadedModel;
  const low = dtype.toLowerCase();
  beforeAll(async () => {
    tiny = await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 176, layers: 2, heads: 4, kvHeads: 2, dtype, tieEmbeddings: tie, seed: 3 });
    map = await loadModel(tiny.dir, nb, { warn: () => {} });
    copy = await loadModel(tiny.dir, nb, { warn: () => {}, weights16: "copy" });
  });
  afterAll(async () => { await tiny.cleanup(); });

  it("holds views by default and interleaved copies with weights16: copy", () => {
    const b0 = map.model.weights.blocks[0]!.linears;
    for (const l of Object.values(b0)) expect(layoutOf(l.weight)).toBe(`${low}-rows`);
    expect(layoutOf(map.model.weights.lmHead)).toBe(`${low}-rows`);
    for (const l of Object.values(copy.model.weights.blocks[0]!.linears)) expect(layoutOf(l.weight)).toBe(`${low}x16`);
    expect(describeKernelPath(map.model)).toMatch(new RegExp(`linears ${low}-rows \\(16\\.00 bpw\\)`));
  });

  it("gives the copy's logits within the f32 bound and its greedy tokens", () => {
    const prompt = [1, 5, 9, 14, 2, 7];
    const a = map.model.forward(prompt, map.model.newCache(16), { logits: "all" });
    const b = copy.model.forward(prompt, copy.model.newCache(16), { logits: "all" });
    const scale = Math.max(...b.map(Math.abs));
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    expect(worst / scale).toBeLessThanOrEqual(LOGIT_REL_TOL);
    const g = (m: LoadedModel): number[] => generate(m.model, prompt, { maxTokens: 12, temperature: 0 });
    expect(g(map)).toEqual(g(copy));
  });

  it("is ignored by the ref backend (f32 weights)", async () => {
    const r = await loadModel(tiny.dir, refBackend, { warn: () => {}, weights16: "map" });
    expect(r.weights).toBe("f32");
  });
});

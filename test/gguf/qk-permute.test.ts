/**
 * The llama Q/K row permutation of GGUF export (src/arch/gguf-tensors.ts permuteQK /
 * unpermuteQK): a hand case, inverse pair, RoPE equivalence (HF rotate-half then permute ==
 * permute then ggml's interleaved RoPE), and a forward pass through an exported-then-reimported
 * model.
 */
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { refBackend } from "../../src/backend/ref.ts";
import { exportGguf } from "../../src/export/gguf.ts";
import { ggufTensorPlan, permuteQK, unpermuteQK } from "../../src/arch/gguf-tensors.ts";
import { openGguf } from "../../src/io/gguf.ts";
import { loadHfModel } from "../../src/load/hf-folder.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { Model } from "../../src/nn/model.ts";
import { RopeTable } from "../../src/nn/rope.ts";
import { loadModelWeights, type TensorSource } from "../../src/nn/weights.ts";
import { makeTinyModel } from "../helpers/tiny-model.ts";

describe("llama Q/K row permutation", () => {
  test("hand-computed: 2 heads of dim 4, rows [h, 2, 2] → [h, 2, 2] swapped", () => {
    // Head h's HF rows are (x0, x1 | y0, y1) = rotate-half pairs (x_i, y_i); GGML wants x0 y0 x1 y1.
    const rows = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(permuteQK(rows, 2, 1)).toEqual(Float32Array.from([0, 2, 1, 3, 4, 6, 5, 7]));
    const w = Float32Array.from({ length: 16 }, (_, i) => 10 * Math.floor(i / 2) + (i % 2)); // row r = [10r, 10r+1]
    expect(permuteQK(w, 2, 2)).toEqual(Float32Array.from([0, 1, 20, 21, 10, 11, 30, 31, 40, 41, 60, 61, 50, 51, 70, 71]));
    // headDim 6 (half 3): rows 0..5 → 0 3 1 4 2 5.
    expect(permuteQK(Float32Array.from([0, 1, 2, 3, 4, 5]), 1, 1)).toEqual(Float32Array.from([0, 3, 1, 4, 2, 5]));
  });

  test("unpermute inverts permute", () => {
    const rand = mulberry32(3);
    const w = Float32Array.from({ length: 4 * 16 * 5 }, () => rand());
    expect(unpermuteQK(permuteQK(w, 4, 5), 4, 5)).toEqual(w);
    expect(permuteQK(unpermuteQK(w, 4, 5), 4, 5)).toEqual(w);
  });

  test("HF rotate-half RoPE then permute == permute then GGML interleaved RoPE", () => {
    const heads = 3, d = 8, T = 5;
    const rope = new RopeTable({ headDim: d, ropeTheta: 10000, ropeScaling: null });
    rope.ensure(T);
    const rand = mulberry32(9);
    const q = Float32Array.from({ length: T * heads * d }, () => rand() * 2 - 1);
    const hf = q.slice();
    rope.apply(hf, T, heads, 0);
    for (let t = 0; t < T; t++) {
      const row = (x: Float32Array): Float32Array => x.subarray(t * heads * d, (t + 1) * heads * d);
      const expected = permuteQK(row(hf), heads, 1);
      const got = permuteQK(row(q), heads, 1);
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < d / 2; i++) { // ggml_rope "normal" mode: pairs (2i, 2i+1)
          const c = rope.cos[t * (d / 2) + i]!, s = rope.sin[t * (d / 2) + i]!;
          const o = h * d + 2 * i, x0 = got[o]!, x1 = got[o + 1]!;
          got[o] = x0 * c - x1 * s;
          got[o + 1] = x0 * s + x1 * c;
        }
      }
      for (let i = 0; i < got.length; i++) expect(got[i]).toBeCloseTo(expected[i]!, 6);
    }
  });

  test("export → read back → unpermute: our forward pass is unchanged (bit-exact)", async () => {
    const tiny = await makeTinyModel({ modelType: "llama", hidden: 32, intermediate: 48, layers: 2, heads: 4, kvHeads: 2, vocab: 300, seed: 5, tokenizer: "generated" });
    try {
      const path = join(tiny.dir, "m.gguf");
      await exportGguf(tiny.dir, path, { type: "f32" });
      const { cfg, model } = await loadHfModel(tiny.dir, refBackend);
      const plan = ggufTensorPlan(cfg, "f32");
      const g = openGguf(path);
      try {
        const byHf = new Map(plan.filter((p) => p.hf !== null).map((p) => [p.hf!, p]));
        const src: TensorSource = {
          origin: path,
          has: (n) => byHf.has(n),
          shape: (n) => byHf.get(n)!.shape,
          readF32Sync: (n) => {
            const p = byHf.get(n)!;
            const x = g.readF32Sync(p.gguf);
            return p.permuteHeads !== undefined ? unpermuteQK(x, p.permuteHeads, p.shape.length === 2 ? p.shape[1]! : 1) : x;
          },
        };
        expect(plan.filter((p) => p.permuteHeads !== undefined).map((p) => p.gguf)).toEqual(["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.attn_q.weight", "blk.1.attn_k.weight"]);
        const fromGguf = new Model(cfg, loadModelWeights(cfg, src), refBackend);
        const tokens = [0, 5, 17, 250, 3, 99, 42, 7];
        const a = model.forward(tokens, model.newCache(16));
        const b = fromGguf.forward(tokens, fromGguf.newCache(16));
        expect(b).toEqual(a);
        // And the stored q really is permuted (not a silent no-op).
        expect(g.readF32Sync("blk.0.attn_q.weight")).not.toEqual(model.weights.blocks[0]!.linears.q.weight);
      } finally {
        g.close();
      }
    } finally {
      await tiny.cleanup();
    }
  });
});

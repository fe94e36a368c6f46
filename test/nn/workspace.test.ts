/**
 * The forward's preallocated workspace and the exported block halves: running on a
 * workspace (reused buffers, residual updated in place) must give the SAME bits as
 * the allocating path, and attentionHalf / mlpHalf must be exactly the two halves
 * of blockForward (AWQ scores its scale candidates with them).
 */
import { describe, expect, it } from "vitest";
import { refBackend } from "../../src/backend/ref.ts";
import { attentionHalf, blockForward, BlockWorkspace, mlpHalf, rmsNorm, type LayerCache } from "../../src/nn/block.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { Model } from "../../src/nn/model.ts";
import { RopeTable } from "../../src/nn/rope.ts";
import { randomArray, randomWeights, tinyConfig } from "../helpers/random-weights.ts";

function expectSameBits(a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  let diff = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) diff++;
  expect(diff).toBe(0);
}

describe.each([
  ["llama GQA", {}],
  ["qwen2 with q/k/v biases", { model_type: "qwen2" }],
])("block workspace (%s)", (_name, over) => {
  const cfg = tinyConfig(over);
  const weights = randomWeights(cfg, 3);
  const rope = new RopeTable(cfg);
  const T = 10, H = cfg.hiddenSize, kvDim = cfg.numKvHeads * cfg.headDim;
  const cache = (): LayerCache => ({ k: new Float32Array(32 * kvDim), v: new Float32Array(32 * kvDim) });

  it("Model.forward on its workspace equals the allocating block chain, bit for bit (prefill and decode)", () => {
    const tokens = [5, 9, 1, 44, 3, 3, 27, 8, 0, 19];
    const model = new Model(cfg, weights, refBackend);
    const c = model.newCache(32);
    const got = model.forward(tokens.slice(0, 7), c); // [7, V], grows the workspace to 7
    const got2 = model.forward(tokens.slice(7), c); // [3, V], reuses it
    // The same computation without a workspace: fresh arrays in every block call.
    const caches = weights.blocks.map(() => cache());
    const run = (ids: number[], pos0: number): Float32Array => {
      let x = model.embed(ids);
      weights.blocks.forEach((w, b) => { x = blockForward({ cfg, backend: refBackend, rope }, b, w, x, ids.length, pos0, caches[b]!); });
      const xn = rmsNorm(x, weights.finalNorm, ids.length, H, cfg.rmsNormEps);
      return refBackend.matmul(xn, weights.lmHead, ids.length, H, cfg.vocabSize);
    };
    expectSameBits(got, run(tokens.slice(0, 7), 0));
    expectSameBits(got2, run(tokens.slice(7), 7));
  });

  it("attentionHalf and mlpHalf are the two halves of blockForward", () => {
    const w = weights.blocks[0]!;
    const x = randomArray(T * H, 1, mulberry32(4)); // [T, H]
    const ws = new BlockWorkspace(cfg, T);
    const ctx = { cfg, backend: refBackend, rope, workspace: ws };
    const y = blockForward({ cfg, backend: refBackend, rope }, 0, w, x, T, 0, cache()); // [T, H]
    // Rebuild it from the halves: h = x + attn(norm(x)); y = h + mlp(norm(h)).
    const ao = attentionHalf(ctx, 0, w.linears, rmsNorm(x, w.attnNorm, T, H, cfg.rmsNormEps), T, 0, cache(), new Float32Array(T * H));
    const h = x.map((v, i) => v + ao[i]!);
    const dn = mlpHalf(ctx, 0, w.linears, rmsNorm(h, w.mlpNorm, T, H, cfg.rmsNormEps), T);
    expectSameBits(y, h.map((v, i) => v + dn[i]!));
    expect(dn.buffer).toBe(ws.dn.buffer); // the default output lives in the workspace
  });

  it("blockForward may write its output over its input", () => {
    const w = weights.blocks[1]!;
    const x = randomArray(T * H, 1, mulberry32(5));
    const want = blockForward({ cfg, backend: refBackend, rope }, 1, w, x, T, 0, cache());
    const ws = new BlockWorkspace(cfg, T);
    const got = blockForward({ cfg, backend: refBackend, rope, workspace: ws }, 1, w, x, T, 0, cache(), x);
    expect(got).toBe(x);
    expectSameBits(got, want);
  });

  it("refuses more positions than the workspace holds", () => {
    const ws = new BlockWorkspace(cfg, 4);
    const x = randomArray(T * H, 1, mulberry32(6));
    expect(() => blockForward({ cfg, backend: refBackend, rope, workspace: ws }, 0, weights.blocks[0]!, x, T, 0, cache())).toThrow(/holds 4 positions/);
  });
});

/**
 * One decoder block, in data-flow order:
 *   x → RMSNorm → q,k,v → RoPE → attention (KV cache) → o → +x
 *     → RMSNorm → gate,up → silu(gate)·up → down → +x
 * The hot work is in backend.matmul / backend.attention.
 */
import type { ModelConfig } from "../arch/config.ts";
import type { LinearInput } from "../arch/registry.ts";
import type { Backend } from "../backend/backend.ts";
import type { BlockWeights, Linear } from "./weights.ts";
import type { RopeTable } from "./rope.ts";

/** Called with the input of every linear layer (once per input point; q,k,v share one). */
export type Tap = (ev: { block: number; input: LinearInput; /** [T, K] */ x: Float32Array; T: number; K: number }) => void;

/** One layer's KV cache. */
export interface LayerCache {
  /** [capacity, nKvHead·headDim] */
  k: Float32Array;
  /** [capacity, nKvHead·headDim] */
  v: Float32Array;
}

export interface BlockContext {
  cfg: ModelConfig;
  backend: Backend;
  rope: RopeTable;
  tap?: Tap | undefined;
}

/** y[T, H] = x / rms(x) · w, per row; f64 accumulation of the mean square. */
export function rmsNorm(x: Float32Array, w: Float32Array, T: number, H: number, eps: number, out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(T * H);
  for (let t = 0; t < T; t++) {
    const o = t * H;
    let ss = 0;
    for (let i = 0; i < H; i++) ss += x[o + i]! * x[o + i]!;
    const r = 1 / Math.sqrt(ss / H + eps);
    for (let i = 0; i < H; i++) y[o + i] = Math.fround(x[o + i]! * r) * w[i]!;
  }
  return y;
}

function linear(ctx: BlockContext, l: Linear, x: Float32Array, T: number): Float32Array {
  return ctx.backend.matmul(x, l.weight, T, l.K, l.N, l.bias);
}

/**
 * Run block `index` on x [T, H] at positions pos0..pos0+T-1, writing k/v into
 * `cache` rows pos0.. . Returns the new residual stream [T, H] (x is not modified).
 */
export function blockForward(
  ctx: BlockContext, index: number, w: BlockWeights, x: Float32Array, T: number, pos0: number, cache: LayerCache,
): Float32Array {
  const { cfg, backend, rope, tap } = ctx;
  const H = cfg.hiddenSize;
  const { numHeads: nH, numKvHeads: nKv, headDim: d } = cfg;
  const L = w.linears;

  // --- attention ---
  const xa = rmsNorm(x, w.attnNorm, T, H, cfg.rmsNormEps); // [T, H]
  tap?.({ block: index, input: "attn_norm", x: xa, T, K: H });
  const q = linear(ctx, L.q, xa, T); // [T, nH·d]
  const kvDim = nKv * d;
  // k and v go straight into the cache rows for these positions.
  const k = backend.matmul(xa, L.k.weight, T, H, kvDim, L.k.bias, cache.k.subarray(pos0 * kvDim, (pos0 + T) * kvDim)); // [T, nKv·d]
  backend.matmul(xa, L.v.weight, T, H, kvDim, L.v.bias, cache.v.subarray(pos0 * kvDim, (pos0 + T) * kvDim)); // [T, nKv·d]
  rope.apply(q, T, nH, pos0);
  rope.apply(k, T, nKv, pos0);
  const att = new Float32Array(T * nH * d); // [T, nH·d]
  backend.attention(q, cache.k, cache.v, { T, pos0, nHead: nH, nKvHead: nKv, headDim: d }, att);
  tap?.({ block: index, input: "attn_out", x: att, T, K: nH * d });
  const ao = linear(ctx, L.o, att, T); // [T, H]
  const h = new Float32Array(T * H); // [T, H] residual after attention
  for (let i = 0; i < T * H; i++) h[i] = x[i]! + ao[i]!;

  // --- MLP ---
  const xm = rmsNorm(h, w.mlpNorm, T, H, cfg.rmsNormEps); // [T, H]
  tap?.({ block: index, input: "mlp_norm", x: xm, T, K: H });
  const g = linear(ctx, L.gate, xm, T); // [T, I]
  const u = linear(ctx, L.up, xm, T); // [T, I]
  for (let i = 0; i < g.length; i++) { const a = g[i]!; g[i] = (a / (1 + Math.exp(-a))) * u[i]!; }
  tap?.({ block: index, input: "mlp_act", x: g, T, K: cfg.intermediateSize });
  const dn = linear(ctx, L.down, g, T); // [T, H]
  for (let i = 0; i < T * H; i++) h[i] = h[i]! + dn[i]!;
  return h;
}

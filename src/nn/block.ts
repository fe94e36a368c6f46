/**
 * One decoder block, in data-flow order:
 *   x → RMSNorm → q,k,v → RoPE → attention (KV cache) → o → +x
 *     → RMSNorm → gate,up → silu(gate)·up → down → +x
 * The hot work is in backend.matmul / backend.attention. The two halves
 * (attentionHalf, mlpHalf) are exported: AWQ scores its scale candidates with them.
 */
import type { ModelConfig } from "../arch/config.ts";
import type { LinearInput, LinearName } from "../arch/registry.ts";
import { KEY_BLOCK, type Backend, type KvRows, type LinearWeight } from "../backend/backend.ts";
import { f32ToF16 } from "../tensor/dtype.ts";
import type { BlockWeights, Linear } from "./weights.ts";
import type { RopeTable } from "./rope.ts";
import { invariant } from "../util/errors.ts";

/**
 * Called with the input of every linear layer (once per input point; q,k,v share one).
 * On a workspace, ev.x is a workspace buffer: written once per call and unchanged until the
 * next call on the same workspace (the quantizer reads it then, without a copy); copy it to keep it longer.
 */
export type Tap = (ev: { block: number; input: LinearInput; /** [T, K] */ x: Float32Array; T: number; K: number }) => void;

/** One layer's KV cache: f32, or f16 bits (k and v alike; new rows rounded to nearest even). */
export interface LayerCache {
  /** [capacity, nKvHead·headDim], or with keyBlocks [⌈capacity/32⌉, nKvHead·headDim, 32] */
  k: KvRows;
  /** [capacity, nKvHead·headDim] */
  v: KvRows;
  /** f16 keys stored transposed in blocks of 32 positions (AttentionShape.keyBlocks, native/LAYOUTS.md "KV cache") */
  keyBlocks?: boolean | undefined;
}

export interface BlockContext {
  cfg: ModelConfig;
  backend: Backend;
  rope: RopeTable;
  tap?: Tap | undefined;
  /** Reused buffers (BlockWorkspace); without one, every call allocates its intermediates. */
  workspace?: BlockWorkspace | undefined;
  /**
   * Elementwise ops by the plain formula (f64 Math.exp) even when the backend has a SIMD kernel
   * for them. The quantizers' calibration forwards set it: their output bytes must not depend on
   * the CPU's SIMD level (the native swiglu's f32 exp differs in the last bits between levels
   * and from Math.exp), and stay the bytes every earlier version wrote. Inference leaves it off.
   */
  exactElementwise?: boolean | undefined;
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

/** Whether the context runs elementwise op `op` on the backend's kernel (else the TS formula here). */
function onBackend<K extends "rmsNorm" | "rope" | "add" | "toF16" | "toF16Keys">(ctx: BlockContext, op: K): ctx is BlockContext & { backend: { [P in K]: NonNullable<Backend[P]> } } {
  return ctx.backend[op] !== undefined && ctx.exactElementwise !== true;
}

/** rmsNorm on the backend's kernel when it has one (BlockContext.exactElementwise off), else the TS rmsNorm above. */
export function normRows(ctx: BlockContext, x: Float32Array, w: Float32Array, T: number, out: Float32Array): Float32Array {
  const { hiddenSize: H, rmsNormEps: eps } = ctx.cfg;
  if (!onBackend(ctx, "rmsNorm")) return rmsNorm(x, w, T, H, eps, out);
  ctx.backend.rmsNorm(x, w, T, H, eps, out);
  return out;
}

/** RoPE of x [T, nHeads·d] at positions pos0..: the backend's kernel on the table's cos/sin, or RopeTable.apply. */
function ropeRows(ctx: BlockContext, x: Float32Array, T: number, nHeads: number, pos0: number): void {
  const { rope } = ctx;
  if (!onBackend(ctx, "rope")) { rope.apply(x, T, nHeads, pos0); return; }
  rope.ensure(pos0 + T);
  ctx.backend.rope(x, T, nHeads, ctx.cfg.headDim, pos0, rope.cos, rope.sin);
}

/** out[i] = a[i] + b[i] for i < n (out may be a). */
function addRows(ctx: BlockContext, a: Float32Array, b: Float32Array, out: Float32Array, n: number): void {
  if (onBackend(ctx, "add")) { ctx.backend.add(a, b, out, n); return; }
  for (let i = 0; i < n; i++) out[i] = a[i]! + b[i]!;
}

/** x [T, n] (positions pos0..) rounded to f16 into the row-major rows pos0.. of dst (n = nKv·d). */
function storeRows(ctx: BlockContext, x: Float32Array, dst: Uint16Array, T: number, pos0: number, n: number): void {
  if (onBackend(ctx, "toF16")) { ctx.backend.toF16(x, dst.subarray(pos0 * n, (pos0 + T) * n), T * n); return; }
  for (let i = 0; i < T * n; i++) dst[pos0 * n + i] = f32ToF16(x[i]!);
}

/**
 * Keys x [T, nKv·d] of positions pos0.. rounded to f16 into a blocked key cache (LayerCache.keyBlocks):
 * element e = g·d + c of position p at dst[⌊p/32⌋·nKv·d·32 + e·32 + p mod 32]. The specification of Backend.toF16Keys.
 */
export function storeKeyBlocks(ctx: BlockContext, x: Float32Array, dst: Uint16Array, T: number, pos0: number, nKv: number, d: number): void {
  if (onBackend(ctx, "toF16Keys")) { ctx.backend.toF16Keys(x, dst, T, pos0, nKv, d); return; }
  const n = nKv * d;
  for (let t = 0; t < T; t++) {
    const p = pos0 + t, b = Math.floor(p / KEY_BLOCK) * n * KEY_BLOCK + (p % KEY_BLOCK);
    for (let e = 0; e < n; e++) dst[b + e * KEY_BLOCK] = f32ToF16(x[t * n + e]!);
  }
}

/**
 * The buffers of one block call for up to `maxT` positions, built once (per model,
 * per pipeline) and reused by every call, so that a forward pass allocates nothing
 * per block. Views of the first T rows are taken per call. Tap arrays and the
 * halves' default outputs live here: they are valid until the next call that uses
 * the same workspace (copy them to keep them).
 */
export class BlockWorkspace {
  /** [maxT, H] attention-norm output */ readonly xa: Float32Array;
  /** [maxT, nH·d] queries */ readonly q: Float32Array;
  /** [maxT, nH·d] attention output */ readonly att: Float32Array;
  /** [maxT, H] attention half output (o_proj) */ readonly ao: Float32Array;
  /** [maxT, H] MLP-norm output */ readonly xm: Float32Array;
  /** [maxT, I] gate, then silu(gate)·up */ readonly g: Float32Array;
  /** [maxT, I] up */ readonly u: Float32Array;
  /** [maxT, H] MLP half output (down_proj) */ readonly dn: Float32Array;
  /** [maxT, nKv·d] new keys, then values, before an f16 cache rounds them */ readonly kn: Float32Array;
  /** [maxT, nKv·d] */ readonly vn: Float32Array;

  constructor(cfg: ModelConfig, readonly maxT: number) {
    const H = cfg.hiddenSize, A = cfg.numHeads * cfg.headDim, I = cfg.intermediateSize;
    this.xa = new Float32Array(maxT * H);
    this.q = new Float32Array(maxT * A);
    this.att = new Float32Array(maxT * A);
    this.ao = new Float32Array(maxT * H);
    this.xm = new Float32Array(maxT * H);
    this.g = new Float32Array(maxT * I);
    this.u = new Float32Array(maxT * I);
    this.dn = new Float32Array(maxT * H);
    this.kn = new Float32Array(maxT * cfg.numKvHeads * cfg.headDim);
    this.vn = new Float32Array(maxT * cfg.numKvHeads * cfg.headDim);
  }

  /** The first T rows of buffer `b` (T ≤ maxT). */
  rows(b: Float32Array, T: number): Float32Array {
    invariant(T <= this.maxT, () => `block workspace holds ${this.maxT} positions, asked for ${T}`);
    return b.subarray(0, T * (b.length / this.maxT));
  }
}

type WorkspaceBuffer = "xa" | "q" | "att" | "ao" | "xm" | "g" | "u" | "dn" | "kn" | "vn";

/** Buffer `name` of the workspace (T rows), or a new array of T·width. */
function buf(ws: BlockWorkspace | undefined, name: WorkspaceBuffer, T: number, width: number): Float32Array {
  return ws ? ws.rows(ws[name], T) : new Float32Array(T * width);
}

/** y[T, N] = x[T, K] · Wᵀ (+ bias), into `out` when given. */
function linear(ctx: BlockContext, l: Linear<LinearWeight>, x: Float32Array, T: number, out?: Float32Array): Float32Array {
  return ctx.backend.matmul(x, l.weight, T, l.K, l.N, l.bias, out);
}

/**
 * outs[i] = x · W_iᵀ (+ bias) for linears of one input (q, k, v; gate, up): one backend call
 * when it has matmulMany (one kernel call when the loader concatenated them), else one each.
 */
function linears(ctx: BlockContext, ls: readonly Linear<LinearWeight>[], x: Float32Array, T: number, outs: readonly Float32Array[]): void {
  const b = ctx.backend;
  if (b.matmulMany !== undefined) b.matmulMany(x, T, ls[0]!.K, ls.map((l, i) => ({ w: l.weight, N: l.N, bias: l.bias, out: outs[i]! })));
  else ls.forEach((l, i) => linear(ctx, l, x, T, outs[i]));
}

/** The linears the attention half reads. */
export type AttentionLinears = Pick<Readonly<Record<LinearName, Linear<LinearWeight>>>, "q" | "k" | "v" | "o">;
/** The linears the MLP half reads. */
export type MlpLinears = Pick<Readonly<Record<LinearName, Linear<LinearWeight>>>, "gate" | "up" | "down">;

/**
 * The attention half of block `index` without its norm and residual:
 *   out[T, H] = o( attention( rope(q(xa)), rope(k(xa)), v(xa) ) )
 * for xa [T, H] (the attention-norm output) at positions pos0.., writing k/v into
 * `cache` rows pos0.. . Taps "attn_out". `out` defaults to the workspace's `ao`.
 */
export function attentionHalf(
  ctx: BlockContext, index: number, lin: AttentionLinears, xa: Float32Array, T: number, pos0: number, cache: LayerCache, out?: Float32Array,
  /** weights read after o (the MLP's gate, up): with o, the attention call's prefetch hint */
  after: readonly LinearWeight[] = [],
): Float32Array {
  const { cfg, backend, tap, workspace: ws } = ctx;
  const H = cfg.hiddenSize;
  const { numHeads: nH, numKvHeads: nKv, headDim: d } = cfg;
  const kvDim = nKv * d;
  const q = buf(ws, "q", T, nH * d); // [T, nH·d]
  // k and v go straight into the rows of an f32 cache for these positions; an f16 cache
  // gets them rounded (after RoPE) from workspace rows.
  const rows = (c: KvRows, name: "kn" | "vn"): Float32Array => // [T, nKv·d]
    c instanceof Float32Array ? c.subarray(pos0 * kvDim, (pos0 + T) * kvDim) : buf(ws, name, T, kvDim);
  const k = rows(cache.k, "kn"), v = rows(cache.v, "vn");
  linears(ctx, [lin.q, lin.k, lin.v], xa, T, [q, k, v]);
  ropeRows(ctx, q, T, nH, pos0);
  ropeRows(ctx, k, T, nKv, pos0);
  const keyBlocks = cache.keyBlocks === true;
  if (cache.k instanceof Uint16Array) {
    if (keyBlocks) storeKeyBlocks(ctx, k, cache.k, T, pos0, nKv, d);
    else storeRows(ctx, k, cache.k, T, pos0, kvDim);
  }
  if (cache.v instanceof Uint16Array) storeRows(ctx, v, cache.v, T, pos0, kvDim);
  const att = buf(ws, "att", T, nH * d); // [T, nH·d]
  backend.attention(q, cache.k, cache.v, { T, pos0, nHead: nH, nKvHead: nKv, headDim: d, ...(keyBlocks ? { keyBlocks } : {}) }, att, [lin.o.weight, ...after]);
  tap?.({ block: index, input: "attn_out", x: att, T, K: nH * d });
  return linear(ctx, lin.o, att, T, out ?? buf(ws, "ao", T, H)); // [T, H]
}

/**
 * The MLP half of block `index` without its norm and residual:
 *   out[T, H] = down( silu(gate(xm)) · up(xm) )
 * for xm [T, H] (the MLP-norm output). Taps "mlp_act". `out` defaults to the workspace's `dn`.
 */
export function mlpHalf(ctx: BlockContext, index: number, lin: MlpLinears, xm: Float32Array, T: number, out?: Float32Array): Float32Array {
  const { cfg, tap, workspace: ws } = ctx;
  const I = cfg.intermediateSize;
  const g = buf(ws, "g", T, I), u = buf(ws, "u", T, I); // [T, I] each
  linears(ctx, [lin.gate, lin.up], xm, T, [g, u]);
  if (ctx.backend.swiglu !== undefined && ctx.exactElementwise !== true) ctx.backend.swiglu(g, u, g.length);
  else for (let i = 0; i < g.length; i++) { const a = g[i]!; g[i] = (a / (1 + Math.exp(-a))) * u[i]!; }
  tap?.({ block: index, input: "mlp_act", x: g, T, K: I });
  return linear(ctx, lin.down, g, T, out ?? buf(ws, "dn", T, cfg.hiddenSize)); // [T, H]
}

/**
 * Run block `index` on x [T, H] at positions pos0..pos0+T-1, writing k/v into
 * `cache` rows pos0.. . Returns the new residual stream [T, H], written into `out`
 * when given (which may be x itself: the update is elementwise), else a new array.
 */
export function blockForward(
  ctx: BlockContext, index: number, w: BlockWeights<LinearWeight>, x: Float32Array, T: number, pos0: number, cache: LayerCache, out?: Float32Array,
): Float32Array {
  const { cfg, tap, workspace: ws } = ctx;
  const H = cfg.hiddenSize;

  // --- attention ---
  const xa = normRows(ctx, x, w.attnNorm, T, buf(ws, "xa", T, H)); // [T, H]
  tap?.({ block: index, input: "attn_norm", x: xa, T, K: H });
  const ao = attentionHalf(ctx, index, w.linears, xa, T, pos0, cache, undefined, [w.linears.gate.weight, w.linears.up.weight]); // [T, H]
  const h = out ?? new Float32Array(T * H); // [T, H] residual after attention
  addRows(ctx, x, ao, h, T * H);

  // --- MLP ---
  const xm = normRows(ctx, h, w.mlpNorm, T, buf(ws, "xm", T, H)); // [T, H]
  tap?.({ block: index, input: "mlp_norm", x: xm, T, K: H });
  const dn = mlpHalf(ctx, index, w.linears, xm, T); // [T, H]
  addRows(ctx, h, dn, h, T * H);
  return h;
}

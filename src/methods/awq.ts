/**
 * AWQ search for one decoder block (Lin et al. 2023, "AWQ: Activation-aware Weight
 * Quantization"; reference: AutoAWQ `quantizer.py` `_search_best_scale`,
 * `_compute_best_scale`, `_search_best_clip`, `_compute_best_clip`; ALGORITHMS.md §3).
 *
 * SEARCH only: no weight of the caller is modified and the result is plain data
 * (AwqBlockSearch), saved by `awq-result.ts` and folded in by `awq-apply.ts`.
 *
 *   1. Scale search, per scaling group of `cfg.arch.awqGroups` (on the ORIGINAL block):
 *        x_mean[j] = mean |x_j| over every calibration token of the group's input
 *        for α = i/20, i < 20:
 *          s = x_mean^α                                 (duoScaling: / (w_mean^(1−α) + 1e-4))
 *          s = max(s, 1e-4);  s /= sqrt(max(s)·min(s))
 *          W_l ← Q(W_l·diag(s))·diag(s)⁻¹ for every layer l of the group (AWQ grid)
 *          loss(α) = MSE(module(x), module₀(x)) over all samples
 *        keep the α with the smallest finite loss.
 *   2. Clip search, AFTER the block's scales are applied (to a private copy), for every
 *      layer except q and k: per (output row n, group G) try
 *        max_val = amax·(1 − i/20), i < 10, and keep the one minimising
 *        mean_t (x_G,t · w_G − x_G,t · Q(clamp(w_G, ±max_val)))² over ≈512 sampled tokens.
 *      The tokens (`clipSampling`): "random", a seeded random sample (AWQ_CLIP_SEED) of all
 *      calibration tokens; or "stride", llm-awq's and AutoAWQ's `input_feat[:, 0::T // 512]`
 *      (every ⌊T/512⌋-th token from token 0), which aliases with the sequence length when
 *      the windows are many (128×512 tokens → only positions 0, 128, 256, 384 of each).
 *
 * Cost per block: 20 evaluations of each inspected module over all calibration samples
 * (attention, o, MLP, down ≈ 2 block forwards each) + 4 block forwards to capture inputs
 * + 10·T_clip·N·K multiply-adds per clipped layer. Memory: one input capture at a time,
 * n·L·K floats (K = H, or the intermediate size for down_proj), + n·L·H floats of
 * reference outputs, + one copy of the block's weights during the clip search.
 *
 * Why one file of ~450 lines: it is the whole AWQ search of one block, in the order of
 * the steps above (scale search, then clip search, sharing the captured inputs and the
 * token sample), as STYLE.md asks of an algorithm core; the grid (awq-grid.ts), the
 * result type (awq-types.ts), its persistence (awq-result.ts) and folding the scales
 * into the weights (awq-apply.ts) are already separate rooms.
 */
import { groupLength } from "../tensor/quantized.ts";
import type { ModelConfig } from "../arch/config.ts";
import { linearTensorName, type Arch, type AwqPrev, type AwqScalingGroup, type LinearInput, type LinearName } from "../arch/registry.ts";
import type { Backend } from "../backend/backend.ts";
import { attentionHalf, blockForward, mlpHalf, type LayerCache } from "../nn/block.ts";
import { mulberry32 } from "../util/random.ts";
import type { RopeTable } from "../nn/rope.ts";
import { type BlockWeights, type Linear } from "../nn/weights.ts";
import { linearShapes } from "../arch/shapes.ts";
import { assertFinite, invariant, NumericError, UsageError } from "../util/errors.ts";
import { applyAwqScales } from "./awq-apply.ts";
import { awqFakeQuantize, awqFakeQuantizeGroup } from "./awq-grid.ts";
import type { AwqBlockSearch, AwqGroupScales, AwqLayerClip } from "./awq-types.ts";

/** α grid: α = i / AWQ_N_GRID for i < AWQ_N_GRID (AutoAWQ `n_grid = 20`). */
export const AWQ_N_GRID = 20;
/** Clip candidates: max_val = amax·(1 − i/20) for i < 10 (AutoAWQ `n_grid=20, max_shrink=0.5`). */
export const AWQ_CLIP_GRID = 20;
export const AWQ_CLIP_STEPS = 10;
/** Tokens sampled for the clip search (AutoAWQ `n_sample_token=512`). */
export const AWQ_CLIP_TOKENS = 512;
/** Seed of the clip-token sample, so a search is reproducible. */
export const AWQ_CLIP_SEED = 1;
/** Layers never clipped: "due to qk bmm, it is hard to clip precisely" (AutoAWQ `avoid_clipping`). */
export const AWQ_NO_CLIP: readonly LinearName[] = ["q", "k"];

export interface AwqSearchOptions {
  cfg: ModelConfig;
  backend: Backend;
  rope: RopeTable;
  /** Block index (error messages, tensor names). */
  block: number;
  /** The block's ORIGINAL f32 weights; not modified. */
  weights: BlockWeights;
  /** Per calibration sample [seqlen, H]: the block's inputs (outputs of the previous unquantized block). */
  inputs: Float32Array[];
  seqlen: number;
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
  /** AutoAWQ's default: s = x_mean^α / (w_mean^(1−α) + 1e-4). */
  duoScaling: boolean;
  /** Run the clip search. */
  clip: boolean;
  /** Tokens sampled for the clip search (default AWQ_CLIP_TOKENS). */
  clipTokens?: number;
  /** Seed of that sample (default AWQ_CLIP_SEED). */
  clipSeed?: number;
  /** How the clip tokens are chosen (default "random"; see the file comment). */
  clipSampling?: AwqClipSampling;
}

export const AWQ_CLIP_SAMPLINGS = ["random", "stride"] as const;
export type AwqClipSampling = (typeof AWQ_CLIP_SAMPLINGS)[number];

/** The block's tap points in data-flow order. */
const INPUT_ORDER: readonly LinearInput[] = ["attn_norm", "attn_out", "mlp_norm", "mlp_act"];

const inputOf = (arch: Arch, layer: LinearName): LinearInput => arch.linears.find((l) => l.name === layer)!.input;

/** The scaling groups that apply to this model (v→o only without GQA), validated against the shapes. */
export function awqGroupsFor(cfg: ModelConfig): AwqScalingGroup[] {
  const shapes = linearShapes(cfg);
  const H = cfg.hiddenSize;
  return cfg.arch.awqGroups.filter((g) => {
    const K = shapes[g.layers[0]!][1];
    const input = inputOf(cfg.arch, g.layers[0]!);
    invariant(g.layers.every((l) => shapes[l][1] === K && inputOf(cfg.arch, l) === input), () => `AWQ group ${g.layers.join(",")} mixes inputs`);
    invariant(g.inspect !== "layer" || g.layers.length === 1, "AWQ 'layer' groups scale exactly one layer");
    const prevOut = g.prev === "attnNorm" || g.prev === "mlpNorm" ? H : shapes[g.prev][0];
    if (prevOut === K) return true;
    invariant(g.onlyIfFoldable === true, () => `AWQ group ${g.prev} → ${g.layers.join(",")} cannot be folded (${prevOut} ≠ ${K})`);
    return false;
  });
}

/** "model.layers.3: input_layernorm → self_attn.q_proj, self_attn.k_proj, self_attn.v_proj" */
export function describeAwqGroup(arch: Arch, block: number, g: { prev: AwqPrev; layers: readonly LinearName[] }): string {
  const hf = (n: LinearName): string => arch.linears.find((l) => l.name === n)!.hf;
  const prev = g.prev === "attnNorm" ? arch.attnNorm.hf : g.prev === "mlpNorm" ? arch.mlpNorm.hf : hf(g.prev);
  return `${arch.blockPrefix(block)}: ${prev} → ${g.layers.map(hf).join(", ")}`;
}

// ---------------------------------------------------------------- the inspected modules

interface ModuleContext {
  cfg: ModelConfig;
  backend: Backend;
  rope: RopeTable;
  /** Scratch KV rows for one sample. */
  cache: LayerCache;
}

/**
 * Output of the module a scaling group is judged by, on x [T, K] (the group's input):
 * the layer itself, or the attention / MLP half of the forward pass (nn/block.ts
 * attentionHalf / mlpHalf: the norm and the residual are outside the module). No
 * workspace: every call returns a new array, which the search keeps as a reference.
 */
export function runAwqModule(m: ModuleContext, inspect: AwqScalingGroup["inspect"], layer: LinearName, lin: Readonly<Record<LinearName, Linear>>, x: Float32Array, T: number): Float32Array {
  if (inspect === "layer") {
    const l = lin[layer];
    return m.backend.matmul(x, l.weight, T, l.K, l.N, l.bias); // [T, N]
  }
  const ctx = { cfg: m.cfg, backend: m.backend, rope: m.rope };
  if (inspect === "attention") return attentionHalf(ctx, -1, lin, x, T, 0, m.cache, new Float32Array(T * m.cfg.hiddenSize)); // [T, H]
  return mlpHalf(ctx, -1, lin, x, T, new Float32Array(T * m.cfg.hiddenSize)); // [T, H]
}

// ---------------------------------------------------------------- scale search

/** x_mean[j] = mean over all tokens of |x_j| (f64 sums), X = per sample [T, K]. */
export function awqInputMean(X: readonly Float32Array[], T: number, K: number): Float32Array {
  const sum = new Float64Array(K);
  for (const x of X) for (let t = 0; t < T; t++) for (let j = 0; j < K; j++) sum[j] = sum[j]! + Math.abs(x[t * K + j]!);
  const n = X.length * T;
  return Float32Array.from(sum, (v) => v / n);
}

/**
 * w_mean[j] (AutoAWQ `get_weight_scale`): the layers' weights concatenated along the
 * output dimension [ΣN, K]; each (row, group) divided by its max |w| (+1e-6); mean over rows.
 */
export function awqWeightMean(layers: readonly Linear[], groupSize: number): Float32Array {
  const K = layers[0]!.K;
  const g = groupLength(groupSize, K);
  const sum = new Float64Array(K);
  let rows = 0;
  for (const l of layers) {
    const W = l.weight;
    for (let n = 0; n < l.N; n++, rows++) {
      for (let k0 = 0; k0 < K; k0 += g) {
        const end = Math.min(K, k0 + g);
        let amax = 0;
        for (let k = k0; k < end; k++) amax = Math.max(amax, Math.abs(W[n * K + k]!));
        for (let k = k0; k < end; k++) sum[k] = sum[k]! + Math.abs(W[n * K + k]!) / (amax + 1e-6);
      }
    }
  }
  return Float32Array.from(sum, (v) => v / rows);
}

/** s for one α (AutoAWQ `_compute_best_scale`): clamp ≥ 1e-4, normalise by sqrt(max·min), non-finite → 1. */
export function awqScalesFor(xMean: Float32Array, wMean: Float32Array | null, alpha: number): Float32Array {
  const K = xMean.length;
  const s = new Float64Array(K);
  let max = -Infinity, min = Infinity;
  for (let j = 0; j < K; j++) {
    let v = Math.pow(xMean[j]!, alpha);
    if (wMean) v /= Math.pow(wMean[j]!, 1 - alpha) + 1e-4;
    v = Math.max(v, 1e-4);
    s[j] = v;
    if (v > max) max = v;
    if (v < min) min = v;
  }
  const norm = Math.sqrt(max * min);
  return Float32Array.from(s, (v) => { const r = v / norm; return Number.isFinite(r) ? r : 1; });
}

/** Q(W·diag(s))·diag(s)⁻¹ for W [N, K] on the AWQ grid. */
export function awqScaledFakeQuantize(l: Linear, s: Float32Array, bits: number, groupSize: number): Float32Array {
  const { N, K, weight: W } = l;
  const ws = new Float32Array(N * K); // [N, K] W·diag(s)
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) ws[n * K + k] = W[n * K + k]! * s[k]!;
  const q = awqFakeQuantize(ws, N, K, bits, groupSize);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) q[n * K + k] = q[n * K + k]! / s[k]!;
  return q;
}

function sumSquaredDiff(a: Float32Array, b: Float32Array): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i]! - b[i]!; e += d * d; }
  return e;
}

interface GroupSearchInput {
  m: ModuleContext;
  group: AwqScalingGroup;
  lin: Readonly<Record<LinearName, Linear>>;
  /** per sample [T, K] */
  X: readonly Float32Array[];
  T: number;
  K: number;
  bits: number;
  groupSize: number;
  duoScaling: boolean;
  where: string;
}

function searchGroupScales(o: GroupSearchInput): AwqGroupScales {
  const { m, group, lin, X, T, K } = o;
  const layer0 = group.layers[0]!;
  const run = (l: Readonly<Record<LinearName, Linear>>, x: Float32Array): Float32Array => runAwqModule(m, group.inspect, layer0, l, x, T);
  const xMean = awqInputMean(X, T, K);
  assertFinite(xMean, `x_mean of ${o.where}`);
  const wMean = o.duoScaling ? awqWeightMean(group.layers.map((n) => lin[n]), o.groupSize) : null;
  const ref = X.map((x) => run(lin, x)); // per sample: the original module output
  let count = 0;
  for (const y of ref) { assertFinite(y, `output of the unquantized module at ${o.where}`); count += y.length; }

  const losses: (number | null)[] = [];
  let best = -1, bestLoss = Infinity, bestScales: Float32Array | null = null;
  for (let i = 0; i < AWQ_N_GRID; i++) {
    const alpha = i / AWQ_N_GRID;
    const s = awqScalesFor(xMean, wMean, alpha);
    const trial: Record<LinearName, Linear> = { ...lin };
    for (const n of group.layers) trial[n] = { ...lin[n], weight: awqScaledFakeQuantize(lin[n], s, o.bits, o.groupSize) };
    let err = 0;
    X.forEach((x, si) => { err += sumSquaredDiff(run(trial, x), ref[si]!); });
    const loss = err / count;
    losses.push(Number.isFinite(loss) ? loss : null);
    if (loss < bestLoss) { bestLoss = loss; best = i; bestScales = s; }
  }
  if (best < 0 || !bestScales) {
    throw new NumericError(`AWQ scale search found no finite loss for ${o.where} (the classic "NaN in AWQ")`, {
      field: o.where, expected: `a finite output error for at least one of the ${AWQ_N_GRID} values of α`, found: `NaN/Inf for every α`,
      hint: "the block's activations or weights overflow; check the model with quantize-llm eval, or exclude this block",
    });
  }
  return { prev: group.prev, layers: [...group.layers], alpha: best / AWQ_N_GRID, scales: bestScales, losses };
}

/**
 * The scale search of ONE linear judged by its own output (llm-awq `_search_module_scale`
 * with the layer as the module, as for o_proj and down_proj): x [T, K], the layer [N, K].
 * The same code path as the block search; test/quant-ref pins it to llm-awq's numbers.
 */
export function awqSearchLayerScales(o: { backend: Backend; layer: Linear; x: Float32Array; T: number; bits: number; groupSize: number; duoScaling: boolean }): AwqGroupScales {
  const m = { backend: o.backend } as ModuleContext; // an inspected "layer" reads only the backend
  const lin = { o: o.layer } as Record<LinearName, Linear>;
  return searchGroupScales({
    m, group: { prev: "v", layers: ["o"], inspect: "layer" }, lin, X: [o.x], T: o.T, K: o.layer.K,
    bits: o.bits, groupSize: o.groupSize, duoScaling: o.duoScaling, where: "one linear",
  });
}

// ---------------------------------------------------------------- clip search

export interface AwqClipLayerOptions {
  backend: Backend;
  /** [N, K] the (already scaled) weight */
  weight: Float32Array;
  N: number;
  K: number;
  /** [T, K] sampled input rows (already divided by the scales, like the scaled model sees them) */
  x: Float32Array;
  T: number;
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
}

/** Best clip threshold per (row, group) → maxVal [N, G] (AutoAWQ `_compute_best_clip`). */
export function awqClipSearchLayer(o: AwqClipLayerOptions): Float32Array {
  const { backend, weight: W, N, K, x, T, bits } = o;
  const g = groupLength(o.groupSize, K);
  invariant(K % g === 0, () => `group size ${g} does not divide ${K}`);
  invariant(T >= 1, "the clip search needs at least one token");
  const G = K / g;
  const maxVal = new Float32Array(N * G); // [N, G]
  const Xg = new Float32Array(T * g); // [T, g] this group's input columns
  const Wg = new Float32Array(N * g); // [N, g] this group's weights
  const Qg = new Float32Array(N * g); // [N, g] clamped + fake-quantized
  const cur = new Float32Array(T * N); // [T, N]
  const amax = new Float32Array(N); // [N]
  const bestErr = new Float64Array(N); // [N]
  for (let gi = 0; gi < G; gi++) {
    const k0 = gi * g;
    for (let t = 0; t < T; t++) Xg.set(x.subarray(t * K + k0, t * K + k0 + g), t * g);
    for (let n = 0; n < N; n++) {
      Wg.set(W.subarray(n * K + k0, n * K + k0 + g), n * g);
      let a = 0;
      for (let j = 0; j < g; j++) a = Math.max(a, Math.abs(Wg[n * g + j]!));
      amax[n] = a;
    }
    const org = backend.matmul(Xg, Wg, T, g, N); // [T, N] partial outputs x_G · w_G
    bestErr.fill(Infinity);
    for (let n = 0; n < N; n++) maxVal[n * G + gi] = amax[n]!; // no clip unless a candidate is strictly better
    for (let i = 0; i < AWQ_CLIP_STEPS; i++) {
      for (let n = 0; n < N; n++) {
        const mv = Math.fround(amax[n]! * (1 - i / AWQ_CLIP_GRID));
        for (let j = 0; j < g; j++) { const v = Wg[n * g + j]!; Qg[n * g + j] = v > mv ? mv : v < -mv ? -mv : v; }
        awqFakeQuantizeGroup(Qg, n * g, g, bits, Qg, n * g);
      }
      backend.matmul(Xg, Qg, T, g, N, undefined, cur);
      for (let n = 0; n < N; n++) {
        let e = 0;
        for (let t = 0; t < T; t++) { const d = cur[t * N + n]! - org[t * N + n]!; e += d * d; }
        e /= T;
        if (e < bestErr[n]!) { bestErr[n] = e; maxVal[n * G + gi] = Math.fround(amax[n]! * (1 - i / AWQ_CLIP_GRID)); }
      }
    }
  }
  return maxVal;
}

/** `count` distinct token indices out of `total`, seeded, ascending (all of them when total ≤ count). */
export function sampleTokens(total: number, count: number, seed: number): Int32Array {
  const idx = Int32Array.from({ length: total }, (_, i) => i);
  if (total <= count) return idx;
  const rand = mulberry32(seed);
  for (let i = 0; i < count; i++) { // partial Fisher–Yates
    const j = i + Math.floor(rand() * (total - i));
    const t = idx[i]!; idx[i] = idx[j]!; idx[j] = t;
  }
  return idx.slice(0, count).sort();
}

/** llm-awq `auto_clip_layer`: token indices 0, s, 2s, … < total with s = ⌊total / count⌋ (1 when total < count). */
export function strideTokens(total: number, count: number): Int32Array {
  const step = Math.max(1, Math.floor(total / count));
  return Int32Array.from({ length: Math.ceil(total / step) }, (_, i) => i * step);
}

/** Rows `tokens` (global index = sample·T + position) of per-sample X [T, K] → [n, K]. */
function gatherRows(X: readonly Float32Array[], T: number, K: number, tokens: Int32Array): Float32Array {
  const out = new Float32Array(tokens.length * K);
  tokens.forEach((tok, r) => {
    const x = X[Math.floor(tok / T)]!;
    const t = tok % T;
    out.set(x.subarray(t * K, (t + 1) * K), r * K);
  });
  return out;
}

function cloneBlock(w: BlockWeights): BlockWeights {
  const linears = {} as Record<LinearName, Linear>;
  for (const [n, l] of Object.entries(w.linears) as [LinearName, Linear][]) {
    linears[n] = { N: l.N, K: l.K, weight: l.weight.slice(), ...(l.bias ? { bias: l.bias.slice() } : {}) };
  }
  return { attnNorm: w.attnNorm.slice(), mlpNorm: w.mlpNorm.slice(), linears };
}

// ---------------------------------------------------------------- the block

/** Search the AWQ scales (and clip thresholds) of one block. Pure: `o.weights` is not modified. */
export function awqSearchBlock(o: AwqSearchOptions): AwqBlockSearch {
  const { cfg, backend, rope, block, weights: w, inputs, seqlen: L } = o;
  const arch = cfg.arch;
  const H = cfg.hiddenSize;
  if (inputs.length === 0) throw new UsageError("AWQ needs calibration samples", { field: "--calib-samples", expected: "≥ 1", found: "0" });
  if (!(Number.isInteger(o.bits) && o.bits >= 2 && o.bits <= 8)) throw new UsageError("unsupported AWQ bit width", { field: "--bits", expected: "2..8 (4 to write AWQ GEMM)", found: String(o.bits) });
  for (const [name, [, K]] of Object.entries(linearShapes(cfg))) {
    if (o.groupSize !== -1 && !(Number.isInteger(o.groupSize) && o.groupSize > 0 && K % o.groupSize === 0)) {
      throw new UsageError(`AWQ group size does not divide the input dimension of ${name}_proj`, {
        field: "--group-size", expected: `a divisor of ${K} (AutoAWQ asserts in_features % group_size == 0)`, found: String(o.groupSize),
      });
    }
  }
  inputs.forEach((x, i) => {
    invariant(x.length === L * H, () => `AWQ input ${i} of block ${block} has ${x.length} values, expected ${L}·${H}`);
    assertFinite(x, `input of ${arch.blockPrefix(block)} (calibration sample ${i})`);
  });
  const clipTokens = o.clipTokens ?? AWQ_CLIP_TOKENS;
  if (o.clip && !(Number.isInteger(clipTokens) && clipTokens >= 1)) {
    throw new UsageError("invalid number of clip-search tokens", { field: "clipTokens", expected: "a positive integer (512)", found: String(clipTokens) });
  }
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const cache: LayerCache = { k: new Float32Array(L * kvDim), v: new Float32Array(L * kvDim) };
  const m: ModuleContext = { cfg, backend, rope, cache };
  const groups = awqGroupsFor(cfg);
  const clipped = o.clip ? arch.linears.filter((l) => !AWQ_NO_CLIP.includes(l.name)) : [];
  const tokens = !o.clip ? new Int32Array(0)
    : o.clipSampling === "stride" ? strideTokens(inputs.length * L, clipTokens)
    : sampleTokens(inputs.length * L, clipTokens, o.clipSeed ?? AWQ_CLIP_SEED);

  const scales: AwqGroupScales[] = [];
  const clipX = new Map<LinearInput, { x: Float32Array; K: number }>(); // sampled rows per input, [T_clip, K]
  for (const input of INPUT_ORDER) {
    const group = groups.find((g) => inputOf(arch, g.layers[0]!) === input);
    const needClip = clipped.some((l) => l.input === input);
    if (!group && !needClip) continue;
    // Capture this input for every sample from the ORIGINAL block (one input at a time bounds memory).
    let K = 0;
    const X = inputs.map((x) => {
      let got: Float32Array | null = null;
      blockForward({ cfg, backend, rope, tap: (ev) => { if (ev.input === input) { got = ev.x; K = ev.K; } } }, block, w, x, L, 0, cache);
      invariant(got !== null, () => `block forward never reached tap ${input}`);
      return got as Float32Array; // a fresh array per call of blockForward
    });
    if (needClip) clipX.set(input, { x: gatherRows(X, L, K, tokens), K });
    if (group) {
      scales.push(searchGroupScales({
        m, group, lin: w.linears, X, T: L, K, bits: o.bits, groupSize: o.groupSize, duoScaling: o.duoScaling,
        where: describeAwqGroup(arch, block, group),
      }));
    }
  }
  // Keep the groups in registry order regardless of input order.
  scales.sort((a, b) => groups.findIndex((g) => g.prev === a.prev) - groups.findIndex((g) => g.prev === b.prev));
  for (const s of scales) assertFinite(s.scales, `AWQ scales of ${describeAwqGroup(arch, block, s)}`);
  const result: AwqBlockSearch = { block, scales, clips: [], tokens: inputs.length * L, clipTokens: tokens.length };
  if (!o.clip) return result;

  // Clip search on the SCALED block (AutoAWQ applies the scales first, then divides the cached inputs by s).
  const scaled = cloneBlock(w);
  applyAwqScales(cfg, scaled, result);
  for (const s of scales) {
    const c = clipX.get(inputOf(arch, s.layers[0]!));
    if (!c) continue;
    for (let r = 0; r < tokens.length; r++) for (let j = 0; j < c.K; j++) c.x[r * c.K + j] = c.x[r * c.K + j]! / s.scales[j]!;
  }
  for (const spec of clipped) {
    const l = scaled.linears[spec.name];
    const c = clipX.get(spec.input)!;
    const name = linearTensorName(arch, block, spec);
    assertFinite(l.weight, `${name} after AWQ scaling`);
    assertFinite(c.x, `clip-search inputs of ${name}`);
    const g = groupLength(o.groupSize, l.K);
    const maxVal = awqClipSearchLayer({ backend, weight: l.weight, N: l.N, K: l.K, x: c.x, T: tokens.length, bits: o.bits, groupSize: g });
    assertFinite(maxVal, `AWQ clip thresholds of ${name}`);
    result.clips.push({ layer: spec.name, N: l.N, G: l.K / g, groupSize: g, maxVal });
  }
  return result;
}

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
 *   2. Clip search (awq-clip.ts), AFTER the block's scales are applied (to a private
 *      copy), for every layer except q and k, on ≈512 sampled tokens (`clipSampling`:
 *      "random", a seeded random sample of all calibration tokens, or "stride", llm-awq's
 *      and AutoAWQ's every ⌊T/512⌋-th token; awq-clip.ts).
 *
 * Hot loops off the JS thread: with the native backend, each candidate's fake
 * quantization (awq-grid.ts awqScaledFakeQuantizeOn) and the whole clip search
 * (awq-clip.ts awqClipSearch) run in the addon (native/src/awq.cc), bit-identical to
 * their TypeScript specifications, which the ref backend runs (test/quant/awq-native.test.ts).
 * The inspected modules are the forward's own halves (nn/block.ts) on the backend.
 *
 * Cost per block: 20 evaluations of each inspected module over all calibration samples
 * (attention, o, MLP, down ≈ 2 block forwards each) + 4 block forwards to capture inputs
 * + 11·T_clip·N·K multiply-adds per clipped layer. Memory: one input capture at a time,
 * n·L·K floats (K = H, or the intermediate size for down_proj), + n·L·H floats of
 * reference outputs, + one copy of the block's weights during the clip search.
 */
import { groupLength } from "../tensor/quantized.ts";
import type { ModelConfig } from "../arch/config.ts";
import { linearTensorName, type Arch, type AwqPrev, type AwqScalingGroup, type LinearInput, type LinearName } from "../arch/registry.ts";
import type { Backend } from "../backend/backend.ts";
import { attentionHalf, blockForward, BlockWorkspace, mlpHalf, type BlockContext, type LayerCache } from "../nn/block.ts";
import type { RopeTable } from "../nn/rope.ts";
import { type BlockWeights, type Linear } from "../nn/weights.ts";
import { linearShapes } from "../arch/shapes.ts";
import { assertFinite, invariant, NumericError, UsageError } from "../util/errors.ts";
import { applyAwqScales } from "./awq-apply.ts";
import { AWQ_CLIP_SEED, AWQ_CLIP_TOKENS, AWQ_NO_CLIP, awqClipSearch, gatherRows, sampleTokens, strideTokens } from "./awq-clip.ts";
import { awqScaledFakeQuantizeOn } from "./awq-grid.ts";
import type { AwqBlockSearch, AwqGroupScales } from "./awq-types.ts";

/** α grid: α = i / AWQ_N_GRID for i < AWQ_N_GRID (AutoAWQ `n_grid = 20`). */
export const AWQ_N_GRID = 20;

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
  /** Aborting stops the search at its next candidate or kernel work unit (rejects with the reason). */
  signal?: AbortSignal | undefined;
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
  /** Reused intermediates of the halves (none: they allocate per call). */
  workspace?: BlockWorkspace | undefined;
}

/**
 * out [T, N or H] = the module a scaling group is judged by, on x [T, K] (the group's
 * input): the layer itself, or the attention / MLP half of the forward pass (nn/block.ts
 * attentionHalf / mlpHalf: the norm and the residual are outside the module). `out`
 * defaults to a new array (the search keeps those as its references).
 */
export function runAwqModule(
  m: ModuleContext, inspect: AwqScalingGroup["inspect"], layer: LinearName, lin: Readonly<Record<LinearName, Linear>>, x: Float32Array, T: number, out?: Float32Array,
): Float32Array {
  if (inspect === "layer") {
    const l = lin[layer];
    return m.backend.matmul(x, l.weight, T, l.K, l.N, l.bias, out); // [T, N]
  }
  const ctx: BlockContext = { cfg: m.cfg, backend: m.backend, rope: m.rope, workspace: m.workspace, exactElementwise: true };
  const y = out ?? new Float32Array(T * m.cfg.hiddenSize); // [T, H]
  return inspect === "attention" ? attentionHalf(ctx, -1, lin, x, T, 0, m.cache, y) : mlpHalf(ctx, -1, lin, x, T, y);
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

function sumSquaredDiff(a: Float32Array, b: Float32Array): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i]! - b[i]!; e += d * d; }
  return e;
}

interface GroupSearchInput {
  backend: Backend;
  /** The inspected module's output for the linears `lin` on one sample x [T, K], into out [outLen]. */
  run: (lin: Readonly<Record<LinearName, Linear>>, x: Float32Array, out: Float32Array) => Float32Array;
  /** Output elements per sample. */
  outLen: number;
  prev: AwqPrev;
  /** The layers scaled by s (all read x). */
  layers: readonly LinearName[];
  lin: Readonly<Record<LinearName, Linear>>;
  /** per sample [T, K] */
  X: readonly Float32Array[];
  T: number;
  K: number;
  bits: number;
  groupSize: number;
  duoScaling: boolean;
  where: string;
  signal?: AbortSignal | undefined;
}

async function searchGroupScales(o: GroupSearchInput): Promise<AwqGroupScales> {
  const { run, lin, X, T, K } = o;
  const xMean = awqInputMean(X, T, K);
  assertFinite(xMean, `x_mean of ${o.where}`);
  const wMean = o.duoScaling ? awqWeightMean(o.layers.map((n) => lin[n]), o.groupSize) : null;
  const ref = X.map((x) => run(lin, x, new Float32Array(o.outLen))); // per sample: the original module output
  let count = 0;
  for (const y of ref) { assertFinite(y, `output of the unquantized module at ${o.where}`); count += y.length; }

  const trial: Record<LinearName, Linear> = { ...lin };
  for (const n of o.layers) trial[n] = { ...lin[n], weight: new Float32Array(lin[n].N * lin[n].K) }; // [N, K] each candidate's Q(W·s)/s
  const out = new Float32Array(o.outLen); // one sample's trial output
  const losses: (number | null)[] = [];
  let best = -1, bestLoss = Infinity, bestScales: Float32Array | null = null;
  for (let i = 0; i < AWQ_N_GRID; i++) {
    o.signal?.throwIfAborted();
    const alpha = i / AWQ_N_GRID;
    const s = awqScalesFor(xMean, wMean, alpha);
    for (const n of o.layers) await awqScaledFakeQuantizeOn(o.backend, lin[n], s, o.bits, o.groupSize, trial[n].weight, { signal: o.signal });
    let err = 0;
    X.forEach((x, si) => { err += sumSquaredDiff(run(trial, x, out), ref[si]!); });
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
  return { prev: o.prev, layers: [...o.layers], alpha: best / AWQ_N_GRID, scales: bestScales, losses };
}

export interface AwqLayerScaleOptions {
  backend: Backend;
  /** [N, K] */
  weight: Float32Array;
  N: number;
  K: number;
  /** per sample [T, K] */
  inputs: readonly Float32Array[];
  T: number;
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
  duoScaling: boolean;
  signal?: AbortSignal | undefined;
}

/**
 * The scale search of ONE linear judged by its own output (the "layer" groups v→o and
 * up→down; llm-awq `_search_module_scale` with the layer as module): α, losses and s.
 * The reference fixtures (test/quant-ref) and eval/bench-awq.ts use it.
 */
export function awqSearchLayerScales(o: AwqLayerScaleOptions): Promise<Pick<AwqGroupScales, "alpha" | "scales" | "losses">> {
  const { backend, N, K, T } = o;
  const lin = { o: { weight: o.weight, N, K } } as Record<LinearName, Linear>; // only "o" is read
  return searchGroupScales({
    backend, prev: "v", layers: ["o"], lin, X: o.inputs, T, K, outLen: T * N,
    run: (l, x, out) => backend.matmul(x, l.o.weight, T, K, N, undefined, out), // [T, N]
    bits: o.bits, groupSize: o.groupSize, duoScaling: o.duoScaling, where: `a ${N}×${K} layer`, signal: o.signal,
  });
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
export async function awqSearchBlock(o: AwqSearchOptions): Promise<AwqBlockSearch> {
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
  const m: ModuleContext = { cfg, backend, rope, cache, workspace: new BlockWorkspace(cfg, L) };
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
      blockForward({ cfg, backend, rope, exactElementwise: true, tap: (ev) => { if (ev.input === input) { got = ev.x; K = ev.K; } } }, block, w, x, L, 0, cache);
      invariant(got !== null, () => `block forward never reached tap ${input}`);
      return got as Float32Array; // a fresh array per call of blockForward
    });
    if (needClip) clipX.set(input, { x: gatherRows(X, L, K, tokens), K });
    if (group) {
      const layer0 = group.layers[0]!;
      scales.push(await searchGroupScales({
        backend, prev: group.prev, layers: group.layers, lin: w.linears, X, T: L, K, outLen: L * (group.inspect === "layer" ? w.linears[layer0].N : H),
        run: (lin, x, out) => runAwqModule(m, group.inspect, layer0, lin, x, L, out),
        bits: o.bits, groupSize: o.groupSize, duoScaling: o.duoScaling, where: describeAwqGroup(arch, block, group), signal: o.signal,
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
    const maxVal = await awqClipSearch({ backend, weight: l.weight, N: l.N, K: l.K, x: c.x, T: tokens.length, bits: o.bits, groupSize: g }, { signal: o.signal });
    assertFinite(maxVal, `AWQ clip thresholds of ${name}`);
    result.clips.push({ layer: spec.name, N: l.N, G: l.K / g, groupSize: g, maxVal });
  }
  return result;
}

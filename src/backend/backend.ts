/**
 * The compute backend: the only code that knows kernels exist. Everything in nn/
 * calls these few coarse operations; `ref.ts` is the plain-TS specification and
 * `native.ts` the fast C++ addon, kept equal by test/backend.test.ts.
 */

import type { WeightKernels } from "./weight-kernels.ts";

/**
 * Rows of a layer's KV cache: f32, or IEEE binary16 bits (an f16 cache, half the bytes that
 * decode attention streams; widened to f32 as read, so the f16 rounding is the cache's own).
 */
export type KvRows = Float32Array | Uint16Array;

/** Positions per block of a blocked key cache (AttentionShape.keyBlocks). */
export const KEY_BLOCK = 32;

export interface AttentionShape {
  /** Number of new query positions in this call. */
  T: number;
  /** Absolute position of the first query (keys 0..pos0+T-1 are in the cache). */
  pos0: number;
  nHead: number;
  nKvHead: number;
  headDim: number;
  /**
   * An f16 cache whose KEYS are stored transposed in blocks of KEY_BLOCK positions
   * [⌈positions/32⌉][nKvHead][headDim][32]: element c of kv head g at position p is
   * k[((p/32)·nKvHead + g)·headDim·32 + c·32 + p%32] (native/LAYOUTS.md "KV cache"); the values
   * stay row-major. Backend.toF16Keys writes it; absent or false: row-major keys.
   */
  keyBlocks?: boolean | undefined;
}

/**
 * One call of the GPTQ lazy-batch sweep (Backend.gptqQuantize). The sweep runs in
 * the permuted column order (act-order): permuted column i is original column
 * perm[i]. Codes and dequantized weights come back in the ORIGINAL order; the grids
 * are per (row, group of the sweep).
 */
export interface GptqKernelArgs {
  /** [N, K] original weights, read only (the kernel keeps its own running copy) */
  w: Float32Array;
  /** [K] permuted position → original column; null = identity */
  perm: Int32Array | null;
  /** [K] 1 = dead input column (original index): its weights count as 0; null = none */
  dead: Uint8Array | null;
  /** [K, K] upper Cholesky factor of H⁻¹ in the permuted order (Backend.gptqHinv) */
  hinv: Float32Array;
  N: number;
  K: number;
  bits: number;
  /** Group size along the permuted columns (K, or more, for one group per row). */
  groupSize: number;
  sym: boolean;
  /** Static groups: [K] group of each permuted column; grids are read from scales/zeros. null = dynamic groups. */
  colGroup: Int32Array | null;
  /** [N, G] grids: input for static groups, output (group = permuted column / groupSize) otherwise */
  scales: Float32Array;
  /** [N, G] */
  zeros: Uint8Array;
  /** [N, K] output codes, original column order */
  codes: Uint8Array;
  /** [N, K] output scale·(code − zero), original column order */
  dequantized: Float32Array;
  /** Lazy-batch block size B (with current-weight grids, cut further so that no dynamic group straddles two blocks). */
  blockSize: number;
  /**
   * Dynamic groups: grids from the weights as they were at the start of the lazy block
   * (IST-DASLab gptq.py, blocks of exactly B columns) instead of the current, fully
   * updated weights (default false). See ALGORITHMS.md §2.
   */
  blockStartGrids?: boolean;
}

/**
 * Options of a long kernel call that runs off the JS thread (the native backend's
 * …Async methods): aborting `signal` cancels it at its next work unit (the promise
 * rejects with `signal.reason`); `onProgress(done, total)` reports work units.
 */
export interface KernelCallOptions {
  signal?: AbortSignal | undefined;
  onProgress?: ((done: number, total: number) => void) | undefined;
}

// ---------------------------------------------------------------- packed weights
// The contract between the loaders (src/load) and the kernels (COORDINATION.md,
// "Contract between i9-kernels and i9-integrate"). Loaders convert every source
// format, one tensor at a time, into these canonical inputs; a backend packs them
// once into its runtime layout. The inputs are transient: a backend copies what
// it keeps, so a loader may reuse its buffers for the next tensor.

/**
 * int4 codes with per-group grids. w[n, k] = scales[n, g]·codes[n, k] + mins[n, g],
 * g = floor(k / groupSize); mins = null means w = scales[n, g]·(codes[n, k] − 8).
 * perm (act-order): the columns are already permuted so that groups are contiguous,
 * and y = x[:, perm] · Wᵀ, i.e. x'[k] = x[perm[k]].
 */
export interface PackQ4Args {
  /** [N, K] codes 0..15 */
  codes: Uint8Array;
  /** [N, G] */
  scales: Float32Array;
  /** [N, G], or null (symmetric: codes − 8) */
  mins: Float32Array | null;
  N: number;
  K: number;
  groupSize: number;
  /** [K] permuted position → original column, or null (identity) */
  perm: Int32Array | null;
}

/** int8 codes, w[n, k] = scales[n, g]·codes[n, k] (also the int8 expansion of Q6_K and 2/3-bit GPTQ: codes = q − z). */
export interface PackQ8Args {
  /** [N, K] */
  codes: Int8Array;
  /** [N, G] */
  scales: Float32Array;
  N: number;
  K: number;
  groupSize: number;
  /** [K] as in PackQ4Args, or null */
  perm: Int32Array | null;
}

/** 16-bit float weights as stored (IEEE half or bfloat16 bit patterns). */
export interface Pack16Args {
  /** [N, K] */
  data: Uint16Array;
  dtype: "f16" | "bf16";
  N: number;
  K: number;
}

/** A file the backend mapped read-only; the 16-bit views made of it keep it mapped until they are freed. */
export interface MappedFile {
  readonly path: string;
  readonly bytes: number;
  /** Drops the caller's reference (views made of the file keep their own). */
  release(): void;
}

/** 16-bit weights [N, K] in place: at byte `offset` of a mapped file (any alignment), row-major as stored. */
export interface View16Args {
  file: MappedFile;
  offset: number;
  dtype: "f16" | "bf16";
  N: number;
  K: number;
}

/**
 * LLM.int8() weights (bitsandbytes 8-bit): w[n, k] = CB[n, k]·SCB[n]/127, multiplied with
 * per-token int8 activations and the outlier decomposition (src/methods/int8.ts
 * int8MatmulRef is the specification): input columns with any |x| ≥ threshold in the
 * batch (or the fixed staticCols) run in f32 against the dequantized weight columns.
 */
export interface PackInt8Args {
  /** [N, K] codes in [−127, 127] */
  CB: Int8Array;
  /** [N] row absmax */
  SCB: Float32Array;
  N: number;
  K: number;
  /** llm_int8_threshold; 0 = plain per-token dynamic int8 */
  threshold: number;
  /** ascending fixed outlier columns (our --static-outliers sidecar), or null = the per-batch scan */
  staticCols: Int32Array | null;
}

/**
 * One linear weight as a loader hands it to a backend (src/load/canonical.ts converts
 * every source format into one of these).
 */
export type CanonicalWeight =
  | { kind: "q4"; args: PackQ4Args }
  | { kind: "q8"; args: PackQ8Args }
  | { kind: "16"; args: Pack16Args }
  | { kind: "int8"; args: PackInt8Args }
  | { kind: "f32"; N: number; K: number; /** [N, K] */ data: Float32Array }
  /** W = Σ parts (PackedSum), each an exact int8 plane of the same shape */
  | { kind: "planes"; parts: CanonicalWeight[]; reason: string };

/**
 * A quantized tensor in its stored bytes, for a backend that repacks them straight into
 * its runtime layout (Backend.repack; native: native/src/packed_repack.cc) instead of
 * the two passes through the canonical inputs. The result equals packing the canonical
 * form byte for byte (test/load/repack.test.ts). The views may be scratch buffers.
 */
export type SourceBlocks =
  | {
    kind: "gguf"; type: "Q4_0" | "Q4_1" | "Q4_K" | "Q8_0";
    /** [N, K] in the type's blocks, rows as stored */
    bytes: Uint8Array;
    /** [N] layout row n = stored row rows[n] (llama Q/K rows back in HF order), or null */
    rows: Int32Array | null;
    N: number; K: number;
  }
  | {
    kind: "gptq"; bits: 4 | 8;
    /** [K·bits/32, N] int32 words */
    qweight: Uint8Array;
    /** [G, N·bits/32] int32 words */
    qzeros: Uint8Array;
    /** [G, N] f16 */
    scales: Uint8Array;
    /** act-order: as PackQ4Args.perm (canonical.ts actOrderPerm of g_idx), or null */
    perm: Int32Array | null;
    N: number; K: number; groupSize: number;
    /** 1 for checkpoint_format "gptq" (v1 stores zero − 1), 0 for gptq_v2 */
    zeroAdd: 0 | 1;
  }
  | {
    kind: "awq";
    /** [K, N/8] int32 words, AWQ nibble order */
    qweight: Uint8Array;
    /** [G, N/8] int32 words */
    qzeros: Uint8Array;
    /** [G, N] f16 */
    scales: Uint8Array;
    N: number; K: number; groupSize: number;
  };

/** Reusable typed-array slots for load-time conversions (src/load/canonical.ts Scratch). */
export interface PackBuffers {
  u8(slot: string, n: number): Uint8Array;
  i8(slot: string, n: number): Int8Array;
  f32(slot: string, n: number): Float32Array;
}

/**
 * A weight matrix in a backend's runtime layout. Opaque: only these fields are
 * readable; the memory belongs to the backend (native memory for the C++ addon)
 * and is freed when the handle is collected or disposed.
 */
export interface PackedWeight {
  /** out_features */
  readonly N: number;
  /** in_features */
  readonly K: number;
  /** Runtime layout name, e.g. "q4", "q4-mins", "q8", "f16", "bf16" (backend-defined). */
  readonly layout: string;
  /** Bytes the packed weights occupy. */
  readonly bytes: number;
  dispose?(): void;
}

/**
 * W = Σ parts, every part packed in its own layout with the same [N, K] (and perm):
 * the exact int8 form of weights whose codes or group size the int8 layout cannot
 * hold directly (canonical.ts "planes"): asymmetric 8-bit GPTQ (s·(q − 128) plus a
 * plane of ones scaled by s·(128 − z)) and int8 groups of 16 (Q6_K) on a backend
 * that packs groups of 32 (even and odd sub-blocks in two planes). A matmul is one
 * packed matmul per part, summed: parts× the bytes and the work of one int8 matrix.
 */
export class PackedSum implements PackedWeight {
  readonly N: number;
  readonly K: number;
  readonly layout: string;
  readonly bytes: number;

  constructor(readonly parts: readonly PackedWeight[], /** why the weight needs planes, for describeKernelPath */ readonly reason: string) {
    const p0 = parts[0];
    if (p0 === undefined || parts.some((p) => p.N !== p0.N || p.K !== p0.K)) throw new Error(`PackedSum: parts must be ≥ 1 weights of one shape`);
    this.N = p0.N;
    this.K = p0.K;
    this.layout = `${parts.length}×${p0.layout}`;
    this.bytes = parts.reduce((a, p) => a + p.bytes, 0);
  }

  dispose(): void { for (const p of this.parts) p.dispose?.(); }
}

/**
 * y[M, N] = Σ_parts x · partᵀ (+ bias once), with `one` the backend's matmul of one
 * packed part (writing into its `out`).
 */
export function matmulPackedSum(
  w: PackedSum, M: number, bias: Float32Array | undefined, out: Float32Array | undefined,
  one: (part: PackedWeight, bias: Float32Array | undefined, out: Float32Array | undefined) => Float32Array,
): Float32Array {
  const y = one(w.parts[0]!, bias, out);
  const n = M * w.N, tmp = new Float32Array(n); // [M, N] one part's product
  for (let p = 1; p < w.parts.length; p++) {
    one(w.parts[p]!, undefined, tmp);
    for (let i = 0; i < n; i++) y[i]! += tmp[i]!;
  }
  return y;
}

/** What Backend.matmul multiplies by: f32 [N, K] row-major, or a packed handle. */
export type LinearWeight = Float32Array | PackedWeight;

export function isPackedWeight(w: LinearWeight): w is PackedWeight {
  return !(w instanceof Float32Array);
}

/** A recorded decode step (Backend.recordStep): run(pos) executes all of it at position pos in one call. */
export interface StepPlan {
  /** op descriptors recorded */
  readonly ops: number;
  run(pos: number): void;
}

/** One output of Backend.matmulMany. */
export interface ManyPart {
  w: LinearWeight;
  N: number;
  bias?: Float32Array | undefined;
  /** [M, N] */
  out: Float32Array;
}

/** Activation precision of packed matmuls: "int8" (per block, like llama.cpp; fast) or "f32" (exact, for checks). */
export type PackedActivations = "int8" | "f32";

export interface Backend {
  readonly name: "ref" | "native";
  /** Threads this backend uses for one call (1 for ref). */
  readonly threads: number;
  /**
   * y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias[N]); W is row-major as PyTorch stores it,
   * or a PackedWeight made by this backend's pack* methods.
   * Writes into `out` when given (length ≥ M·N), else allocates.
   */
  matmul(x: Float32Array, w: LinearWeight, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array): Float32Array;

  /** Per-weight conversions (weight-kernels.ts); callers use weightKernels(b), the TS references without it. */
  readonly weights?: WeightKernels | undefined;

  // Optional packing (src/load uses it when present; otherwise weights load as f32).
  packQ4?(a: PackQ4Args): PackedWeight;
  packQ8?(a: PackQ8Args): PackedWeight;
  pack16?(a: Pack16Args): PackedWeight;
  /** Maps a file read-only for view16; null when it cannot be mapped here (loaders then copy through pack16). */
  mapFile?(path: string): MappedFile | null;
  /** 16-bit weights as row-major views of a mapped file: no copy (native/LAYOUTS.md "Row-major views"). */
  view16?(a: View16Args): PackedWeight;
  /** LLM.int8() weights (bitsandbytes folders); loaders fall back to the dequantized f32 weights without it. */
  packInt8?(a: PackInt8Args): PackedWeight;
  /**
   * Stored quantized bytes straight into the layout packQ4 / packQ8 would build from their
   * canonical form; null when this source is not one it repacks (the loader then goes
   * through the canonical inputs). Loaders use it when present (load time).
   */
  repack?(s: SourceBlocks): PackedWeight | null;
  /** y[M, N] = x[M, K] · Wᵀ (+ bias) for a packed W, with a chosen activation precision (matmul uses the backend's default). */
  matmulPacked?(x: Float32Array, w: PackedWeight, M: number, bias?: Float32Array, out?: Float32Array, opts?: { activations?: PackedActivations }): Float32Array;
  /**
   * Causal grouped-query attention for T new positions.
   * q   [T, nHead·headDim]            (RoPE already applied)
   * k,v [≥ pos0+T, nKvHead·headDim]   (the layer's KV cache, RoPE applied to k; both f32 or both f16 bits)
   * out [T, nHead·headDim]
   * Query t attends to keys 0..pos0+t; head h reads kv head h / (nHead / nKvHead).
   * Scores are scaled by 1/sqrt(headDim), softmax in f32.
   * next (optional hint): the weights the calls after this one read, in order (o, then gate and
   * up): a backend may prefetch them during the call (native: prefetch.h). Never changes a result;
   * backends without prefetch ignore it.
   */
  attention(q: Float32Array, k: KvRows, v: KvRows, shape: AttentionShape, out: Float32Array, next?: readonly LinearWeight[]): void;
  /**
   * The MLP activation in place: g[i] = silu(g[i])·u[i] = g[i] / (1 + exp(−g[i]))·u[i] for i < n
   * (f32). Optional: without it nn/block.ts runs the same formula in TS (the specification;
   * test/kernels/swiglu.test.ts holds the native kernels to it).
   */
  swiglu?(g: Float32Array, u: Float32Array, n: number): void;
  /**
   * Records ONE forward at T = 1 (`body`, which makes backend calls on `caller`) as a plan that
   * replays the whole step in one call: the calls are captured, not executed. kvRows: every
   * layer's k and v cache arrays (the rows a step writes move with the position); pos: the
   * position body runs at; rowElements: nKvHead·headDim. Returns a reason string instead when
   * the step cannot be replayed (an op without a descriptor, or a wrapped backend); the caller
   * then runs the step eagerly (native-graph.ts).
   */
  recordStep?: ((caller: Backend, kvRows: readonly KvRows[], pos: number, rowElements: number, body: () => void) => StepPlan | string) | undefined;
  // The forward's other elementwise ops, optional like swiglu: nn/block.ts and nn/model.ts call
  // them when present (and BlockContext.exactElementwise is off), else the TS specifications
  // named below (test/kernels/elementwise.test.ts holds the native kernels to them).
  /** out[T, H] = x / sqrt(mean(x²) + eps) · w per row (nn/block.ts rmsNorm); out may be x. */
  rmsNorm?: ((x: Float32Array, w: Float32Array, T: number, H: number, eps: number, out: Float32Array) => void) | undefined;
  /** x [T, nHeads·headDim] rotated in place at positions pos0.. with RopeTable's cos/sin [≥ pos0+T, headDim/2] (RopeTable.apply). */
  rope?: ((x: Float32Array, T: number, nHeads: number, headDim: number, pos0: number, cos: Float32Array, sin: Float32Array) => void) | undefined;
  /** out[i] = a[i] + b[i] for i < n (the residual add); out may be a or b. */
  add?: ((a: Float32Array, b: Float32Array, out: Float32Array, n: number) => void) | undefined;
  /** dst[i] = f16 bits of src[i], round to nearest even (tensor/dtype.ts f32ToF16; the f16 KV-row store). */
  toF16?: ((src: Float32Array, dst: Uint16Array, n: number) => void) | undefined;
  /**
   * The key store of a blocked f16 cache (AttentionShape.keyBlocks): keys src [T, nKvHead·headDim]
   * of positions pos0.. rounded as toF16 into dst at their blocks' columns (nn/block.ts storeKeyBlocks
   * is the specification).
   */
  toF16Keys?: ((src: Float32Array, dst: Uint16Array, T: number, pos0: number, nKvHead: number, headDim: number) => void) | undefined;
  /**
   * Whether the f16 KV caches made for this backend (Model.newCache) store their keys in blocks
   * (AttentionShape.keyBlocks): the layout its decode attention reads without transposes. The
   * backend's attention then reads them and its toF16Keys (if any) writes them. Absent: row-major.
   */
  keyBlocks?: boolean | undefined;
  /**
   * id[0] = the greedy pick over x[0, n): the lowest index of the largest value, a NaN never
   * chosen, 0 when none exceeds −∞ (generate/sampler.ts argmax). Recorded into a step plan
   * (nn/model.ts), it saves the sampler's scan of the logits.
   */
  argmax?: ((x: Float32Array, n: number, id: Int32Array) => void) | undefined;
  /**
   * Several linears of one input: out_i[M, N_i] = x[M, K] · W_iᵀ (+ bias_i) for each part, as
   * separate matmul calls would give. When the weights are the views `fuse` returned, in
   * that order, it is ONE kernel call (one activation quantization, one pool wake-up) on
   * the concatenated matrix; otherwise it is a matmul per part.
   */
  matmulMany?(x: Float32Array, M: number, K: number, parts: readonly ManyPart[]): void;
  /**
   * Concatenates packed weights of one K and layout (q, k, v; gate, up) into one matrix at
   * load (native/LAYOUTS.md "Concatenated weights") and returns a view of each part to use
   * in their place (the inputs are disposed); null when they cannot be concatenated.
   */
  fuse?(ws: readonly LinearWeight[]): PackedWeight[] | null;

  // Optional GPTQ kernels (src/methods/gptq-fast.ts uses them when present, else the TS reference).
  /** sum[K, K] = beta·sum + alpha · x[T, K]ᵀ · x, both triangles (no transposed copy of x; beta 0 ignores sum). */
  syrkAccumulate?(x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number, beta: number): void;
  /** syrkAccumulate off the JS thread (native backend; KernelCallOptions). */
  syrkAccumulateAsync?(x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number, beta: number, opts?: KernelCallOptions): Promise<void>;
  /** matmul (f32 weights) off the JS thread, for big GEMMs (≳ 1 ms); same contract. */
  matmulAsync?(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array, opts?: KernelCallOptions): Promise<Float32Array>;
  /**
   * out [K, K] = Hinv, the upper Cholesky factor of A⁻¹ (strictly lower part zeroed),
   * as gptqHinv in src/methods/linalg.ts, where A[i][j] = h[perm[i]][perm[j]] off the
   * diagonal and A[i][i] = diag[i] (dead-column fix and damping applied by the
   * caller). h is only read: it is the pristine copy for a retry with more damping.
   * Returns false when A is not positive definite at f32 precision.
   */
  gptqHinv?(h: Float32Array | Float64Array, K: number, perm: Int32Array | null, diag: Float64Array, out: Float32Array): boolean;
  gptqQuantize?(args: GptqKernelArgs): number;
  /** The same two calls off the JS thread (native backend): the event loop (progress, Ctrl-C) runs meanwhile; KernelCallOptions. */
  gptqHinvAsync?(h: Float32Array | Float64Array, K: number, perm: Int32Array | null, diag: Float64Array, out: Float32Array, opts?: KernelCallOptions): Promise<boolean>;
  gptqQuantizeAsync?(args: GptqKernelArgs, opts?: KernelCallOptions): Promise<number>;

  // Optional AWQ search kernels, off the JS thread (src/methods/awq-grid.ts awqScaledFakeQuantizeOn and
  // awq-clip.ts awqClipSearch use them when present, else the TS specifications they reproduce bit for bit).
  /** out [N, K] = Q(w·diag(s))·diag(s)⁻¹ on the AWQ grid, groups of groupSize (a divisor of K); s null: Q(w). */
  awqFakeQuantize?(w: Float32Array, s: Float32Array | null, N: number, K: number, bits: number, groupSize: number, out: Float32Array, opts?: KernelCallOptions): Promise<void>;
  /** maxVal [N, K/groupSize] = the AWQ clip search of w [N, K] on the sampled inputs x [T, K] (awqClipSearchLayer). */
  awqClipSearch?(w: Float32Array, x: Float32Array, N: number, K: number, T: number, bits: number, groupSize: number, maxVal: Float32Array, opts?: KernelCallOptions): Promise<void>;
}

/**
 * The same backend without its optional AWQ kernels: the AWQ search then runs its
 * TypeScript loops on this backend's GEMMs, attention and every other kernel (tests and
 * eval/bench-awq.ts compare the two paths with it).
 */
export function withoutAwqKernels(b: Backend): Backend {
  return new Proxy(b, {
    get(target, prop) {
      if (prop === "awqFakeQuantize" || prop === "awqClipSearch") return undefined;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The same backend, with every packed matmul run at the given activation precision
 * (tests and `eval --activations`: "f32" is the exact path). f32 weights are unaffected.
 */
export function withPackedActivations(b: Backend, activations: PackedActivations): Backend {
  const matmul: Backend["matmul"] = (x, w, M, K, N, bias, out) =>
    isPackedWeight(w) && b.matmulPacked !== undefined ? b.matmulPacked(x, w, M, bias, out, { activations }) : b.matmul(x, w, M, K, N, bias, out);
  return new Proxy(b, {
    get(target, prop) {
      if (prop === "matmul") return matmul;
      if (prop === "matmulMany") return undefined; // nn/ then calls matmul per part, at this precision
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * The compute backend: the only code that knows kernels exist. Everything in nn/
 * calls these few coarse operations; `ref.ts` is the plain-TS specification and
 * `native.ts` the fast C++ addon, kept equal by test/backend.test.ts.
 */

export interface AttentionShape {
  /** Number of new query positions in this call. */
  T: number;
  /** Absolute position of the first query (keys 0..pos0+T-1 are in the cache). */
  pos0: number;
  nHead: number;
  nKvHead: number;
  headDim: number;
}

/**
 * One call of the GPTQ lazy-batch sweep (Backend.gptqQuantize). Every [·, K] array
 * is in the PERMUTED column order (act-order applied by the caller).
 */
export interface GptqKernelArgs {
  /** [N, K] weights (dead columns zeroed); overwritten, scratch afterwards */
  w: Float32Array;
  /** [K, K] upper Cholesky factor of H⁻¹ (Backend.gptqHinv); only the upper triangle is read */
  hinv: Float32Array;
  N: number;
  K: number;
  bits: number;
  /** Group size along the permuted columns (K for one group per row). */
  groupSize: number;
  sym: boolean;
  /** Static groups: [K] group of each permuted column; grids are read from scales/zeros. null = dynamic groups. */
  colGroup: Int32Array | null;
  /** [N, G] grids: input for static groups, output (group = permuted column / groupSize) otherwise */
  scales: Float32Array;
  /** [N, G] */
  zeros: Uint8Array;
  /** [N, K] output codes */
  codes: Uint8Array;
  /** Lazy-batch block size B (cut further so that no dynamic group straddles two blocks). */
  blockSize: number;
}

export interface Backend {
  readonly name: "ref" | "native";
  /** Threads this backend uses for one call (1 for ref). */
  readonly threads: number;
  /**
   * y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias[N]); W is row-major as PyTorch stores it.
   * Writes into `out` when given (length ≥ M·N), else allocates.
   */
  matmul(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array): Float32Array;
  /**
   * Causal grouped-query attention for T new positions.
   * q   [T, nHead·headDim]            (RoPE already applied)
   * k,v [≥ pos0+T, nKvHead·headDim]   (the layer's KV cache, RoPE applied to k)
   * out [T, nHead·headDim]
   * Query t attends to keys 0..pos0+t; head h reads kv head h / (nHead / nKvHead).
   * Scores are scaled by 1/sqrt(headDim), softmax in f32.
   */
  attention(q: Float32Array, k: Float32Array, v: Float32Array, shape: AttentionShape, out: Float32Array): void;

  // Optional GPTQ kernels (src/quant/gptq-fast.ts uses them when present, else the TS reference).
  /** sum[K, K] += alpha · x[T, K]ᵀ · x, both triangles (the Hessian without a transposed copy of x). */
  syrkAccumulate?(x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number): void;
  /**
   * In place: h [K, K] symmetric (already damped) → Hinv, the upper Cholesky factor
   * of h⁻¹ (strictly lower part zeroed), as gptqHinv in src/quant/linalg.ts.
   * Returns false when h is not positive definite at f32 precision (h is then garbage).
   */
  gptqHinv?(h: Float32Array, K: number): boolean;
  /** The lazy-batch GPTQ sweep; returns the loss Σ (w − q)² / Hinv[i,i]² / 2. */
  gptqQuantize?(args: GptqKernelArgs): number;
}

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
}

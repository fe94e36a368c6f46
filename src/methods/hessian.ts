/**
 * Hessian of the layer-wise loss, H = (2/n_samples)·Σ x·xᵀ over every calibration
 * token (gptq.py `add_batch`: n_samples counts sequences, not tokens).
 * X·Xᵀ runs through the backend's GEMM; the running sum is kept in f64.
 */
import type { Backend } from "../backend/backend.ts";

export class HessianAccumulator {
  /** [K, K] Σ x·xᵀ */
  private readonly sum: Float64Array;
  private sequences = 0;
  private readonly xT: Float32Array;
  private readonly prod: Float32Array;

  constructor(readonly K: number, private readonly maxT: number) {
    this.sum = new Float64Array(K * K);
    this.xT = new Float32Array(K * maxT);
    this.prod = new Float32Array(K * K);
  }

  /** Add one sequence's inputs x [T, K]. */
  add(backend: Backend, x: Float32Array, T: number): void {
    const K = this.K;
    const xT = T === this.maxT ? this.xT : new Float32Array(K * T); // [K, T]
    for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) xT[k * T + t] = x[t * K + k]!;
    backend.matmul(xT, xT, K, T, K, undefined, this.prod); // [K, K] = xT · xTᵀ
    for (let i = 0; i < K * K; i++) this.sum[i] = this.sum[i]! + this.prod[i]!;
    this.sequences++;
  }

  get count(): number { return this.sequences; }

  /** H [K, K] = (2/n)·Σ x·xᵀ */
  hessian(): Float64Array {
    const H = new Float64Array(this.K * this.K);
    const f = 2 / Math.max(1, this.sequences);
    for (let i = 0; i < H.length; i++) H[i] = this.sum[i]! * f;
    return H;
  }
}

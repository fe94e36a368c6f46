/**
 * GPTQ on the backend's native kernels (native/src/gptq*.cc): the same
 * contract and result as `gptqQuantizeLinear` (src/quant/gptq.ts, the
 * specification), computed the way gptq.py does it — in f32, with the paper's
 * lazy block updates (§4) as GEMMs. Backends without the kernels (`ref`) get the
 * TS reference itself.
 *
 * What stays in TypeScript: dead columns, static grids, the act-order
 * permutation, the damping retries and g_idx, all exactly as in gptq.ts. Memory:
 * one f32 [K, K] buffer that becomes Hinv in place (a failed factorisation is
 * retried from the caller's Hessian, the pristine copy) and one f32 [N, K]
 * working copy of W.
 *
 * Numerics: f32 running weights and Hinv (the reference uses f64) can flip a code
 * whose value lies within rounding noise of a grid midpoint; a flip changes the
 * error carried to the rest of that row. test/quant/gptq-native.test.ts bounds
 * the fraction of differing codes and the output error against the reference.
 */
import type { Backend } from "../backend/backend.ts";
import { DAMP_STEP, gptqQuantizeLinear, type GptqOptions, type GptqResult } from "./gptq.ts";
import { gptqGrid } from "./grid.ts";
import { numGroups } from "./types.ts";

export type GptqFastOptions = GptqOptions & { backend: Backend };

export function gptqQuantizeLinearFast(o: GptqFastOptions): GptqResult {
  const { backend, rows: N, cols: K, bits, sym } = o;
  if (!backend.gptqHinv || !backend.gptqQuantize) return gptqQuantizeLinear(o);
  const g = o.groupSize === -1 ? K : o.groupSize;
  const G = numGroups(K, g);
  const H = o.hessian; // [K, K], read-only: the pristine copy for damping retries

  // Dead inputs (H[i,i] == 0): the diagonal becomes 1, the weights 0 (gptq.ts).
  const dead = new Uint8Array(K);
  const diag = new Float64Array(K); // [K] H[i,i] after the dead-column fix
  for (let i = 0; i < K; i++) {
    const d = H[i * K + i]!;
    dead[i] = d === 0 ? 1 : 0;
    diag[i] = d === 0 ? 1 : d;
  }

  // Act-order: decreasing H[i,i], ties by index (the comparator of gptq.ts).
  const order = Array.from({ length: K }, (_, i) => i);
  if (o.actOrder) order.sort((a, b) => diag[b]! - diag[a]! || a - b);
  const perm = Int32Array.from(order); // permuted position → original column
  const identity = !o.actOrder;

  const Wp = permutedWeights(o.weight, N, K, perm, dead, identity); // [N, K] permuted, dead columns 0

  // Static groups: every group's grid from the original weights, in the original column order.
  const scales = new Float32Array(N * G); // [N, G]
  const zeros = new Uint8Array(N * G); // [N, G]
  let colGroup: Int32Array | null = null; // [K] group of each permuted column
  if (o.staticGroups && g !== K) {
    colGroup = new Int32Array(K);
    for (let i = 0; i < K; i++) colGroup[i] = Math.floor(perm[i]! / g);
    staticGrids(o.weight, N, K, g, bits, sym, dead, scales, zeros);
  }

  // Damping, raised like gptq.ts until the factorisation succeeds; mean over the permuted diagonal in its order.
  let mean = 0;
  for (let i = 0; i < K; i++) mean += diag[perm[i]!]!;
  mean /= K;
  let dampUsed = o.damp;
  const hinv = new Float32Array(K * K); // [K, K] H (permuted, damped) → Hinv in place
  for (;;) {
    permutedHessian(H, K, perm, identity, hinv);
    for (let i = 0; i < K; i++) hinv[i * K + i] = diag[perm[i]!]! + dampUsed * mean;
    if (backend.gptqHinv(hinv, K)) break;
    if (dampUsed >= 1) throw new Error("GPTQ: the Hessian is not positive definite even with damp = 1");
    dampUsed = Math.round((dampUsed + DAMP_STEP) * 1e6) / 1e6;
  }

  const codesP = new Uint8Array(N * K); // [N, K] permuted order
  const loss = backend.gptqQuantize({
    w: Wp, hinv, N, K, bits, groupSize: g, sym, colGroup, scales, zeros, codes: codesP, blockSize: o.blockSize,
  });

  let codes = codesP; // [N, K] original order
  if (!identity) {
    codes = new Uint8Array(N * K);
    for (let n = 0; n < N; n++) {
      const o0 = n * K;
      for (let i = 0; i < K; i++) codes[o0 + perm[i]!] = codesP[o0 + i]!;
    }
  }
  const gIdx = new Int32Array(K); // [K]
  for (let i = 0; i < K; i++) gIdx[perm[i]!] = colGroup || !o.actOrder ? Math.floor(perm[i]! / g) : Math.floor(i / g);
  const dequantized = new Float32Array(N * K); // [N, K]
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const gi = n * G + gIdx[k]!;
      dequantized[n * K + k] = scales[gi]! * (codes[n * K + k]! - zeros[gi]!);
    }
  }
  return { N, K, bits, groupSize: g, sym, codes, scales, zeros, gIdx, dequantized, loss, dampUsed };
}

/** Wp[n, i] = W[n, perm[i]], 0 for dead columns. */
function permutedWeights(W: Float32Array, N: number, K: number, perm: Int32Array, dead: Uint8Array, identity: boolean): Float32Array {
  const Wp = identity ? W.slice() : new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    const o0 = n * K;
    if (identity) {
      for (let i = 0; i < K; i++) if (dead[i]) Wp[o0 + i] = 0;
    } else {
      for (let i = 0; i < K; i++) { const c = perm[i]!; Wp[o0 + i] = dead[c] ? 0 : W[o0 + c]!; }
    }
  }
  return Wp;
}

/** out[i, j] = H[perm[i], perm[j]] in f32. */
function permutedHessian(H: Float32Array | Float64Array, K: number, perm: Int32Array, identity: boolean, out: Float32Array): void {
  if (identity) { out.set(H); return; }
  for (let i = 0; i < K; i++) {
    const src = perm[i]! * K, dst = i * K;
    for (let j = 0; j < K; j++) out[dst + j] = H[src + perm[j]!]!;
  }
}

/** Grids of every (row, group) from the original weights, dead columns counted as 0 (gptq.ts, static groups). */
function staticGrids(
  W: Float32Array, N: number, K: number, g: number, bits: number, sym: boolean, dead: Uint8Array, scales: Float32Array, zeros: Uint8Array,
): void {
  const G = numGroups(K, g);
  for (let n = 0; n < N; n++) {
    for (let gi = 0; gi < G; gi++) {
      let lo = Infinity, hi = -Infinity;
      for (let k = gi * g; k < Math.min(K, (gi + 1) * g); k++) {
        const v = dead[k] ? 0 : W[n * K + k]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const p = gptqGrid(lo, hi, bits, sym);
      scales[n * G + gi] = p.scale;
      zeros[n * G + gi] = p.zero;
    }
  }
}

/**
 * H = (2/n)·Σ x·xᵀ over calibration sequences (gptq.py `add_batch`, like
 * src/quant/hessian.ts) with ONE f32 [K, K] running sum and no transposed copy of
 * x: `backend.syrkAccumulate` when present, else the backend's matmul.
 */
export class HessianAccumulatorF32 {
  /** [K, K] Σ x·xᵀ */
  private readonly sum: Float32Array;
  private sequences = 0;

  constructor(readonly K: number) {
    this.sum = new Float32Array(K * K);
  }

  /** Add one sequence's inputs x [T, K]. */
  add(backend: Backend, x: Float32Array, T: number): void {
    const K = this.K;
    if (backend.syrkAccumulate) {
      backend.syrkAccumulate(x, T, K, this.sum, 1);
    } else {
      const xT = new Float32Array(K * T); // [K, T]
      for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) xT[k * T + t] = x[t * K + k]!;
      const prod = backend.matmul(xT, xT, K, T, K); // [K, K]
      for (let i = 0; i < K * K; i++) this.sum[i] = this.sum[i]! + prod[i]!;
    }
    this.sequences++;
  }

  get count(): number { return this.sequences; }

  /** H [K, K] = (2/n)·Σ x·xᵀ, a new f32 array. */
  hessian(): Float32Array {
    const H = new Float32Array(this.K * this.K);
    const f = 2 / Math.max(1, this.sequences);
    for (let i = 0; i < H.length; i++) H[i] = this.sum[i]! * f;
    return H;
  }
}

/**
 * GPTQ on the backend's native kernels (native/src/gptq*.cc): the same
 * contract and result as `gptqQuantizeLinear` (src/methods/gptq.ts, the
 * specification), computed the way gptq.py does it — in f32, with the paper's
 * lazy block updates (§4) as GEMMs. Backends without the kernels (`ref`) get the
 * TS reference itself.
 *
 * What stays in TypeScript: dead columns, static grids, the act-order
 * permutation, the damping retries and g_idx, all exactly as in gptq.ts; the
 * kernels apply the permutation while copying. Memory: one f32 [K, K] buffer for
 * Hinv (the caller's Hessian is only read, so it is the pristine copy a retry
 * starts from), the outputs (both can be the caller's reused buffers: `out`), and
 * the kernel's running copy of a few hundred rows of W per thread (reused between calls).
 *
 * Numerics: f32 running weights and Hinv (the reference uses f64) can flip a code
 * whose value lies within rounding noise of a grid midpoint; a flip changes the
 * error carried to the rest of that row. test/quant/gptq-native.test.ts bounds
 * the fraction of differing codes and the output error against the reference.
 */
import type { Backend, GptqKernelArgs, KernelCallOptions } from "../backend/backend.ts";
import { DAMP_STEP, gptqQuantizeLinear, notPositiveDefinite, type GptqOptions, type GptqResult } from "./gptq.ts";
import { gptqGrid } from "./grid.ts";
import { gptqHinv } from "./linalg.ts";
import { groupLength, numGroups } from "../tensor/quantized.ts";
import { invariant } from "../util/errors.ts";

/**
 * Where the lazy-batch sweep runs when not on the backend (GpuGptq of gptq-webgpu.ts): the
 * backend's gptqQuantize contract, asynchronously. Its result can differ from the CPU kernel's
 * by rounding (gptq-webgpu.ts states the bound).
 */
export interface GptqSweepDevice {
  quantize(args: GptqKernelArgs, call?: KernelCallOptions): Promise<number>;
}

export type GptqFastOptions = GptqOptions & {
  backend: Backend;
  /** Run the sweep here (the Hinv stays on the backend, or the TS reference where it has no kernel). */
  sweep?: GptqSweepDevice | undefined;
  /**
   * Reused memory for the three large arrays instead of fresh ones (a pipeline quantizing
   * layer after layer allocates them once): codes [N·K] and dequantized [N·K] become the
   * result's, hinv [K·K] is the work buffer; `grids`, when given, holds the result's scales
   * [N·G], zeros [N·G] and g_idx [K] (small, but a pipeline keeps them for a whole block, long
   * enough to outlive V8's young generation). Zeroed here first, so the results are the bits
   * of fresh arrays. Ignored by the TS reference (backends without the kernels).
   */
  out?: { codes: Uint8Array; dequantized: Float32Array; hinv: Float32Array; grids?: { scales: Float32Array; zeros: Uint8Array; gIdx: Int32Array } };
};

/** Everything before the Hinv factorisation: dead columns, act-order permutation, static grids, the damping mean. */
function prepare(o: GptqFastOptions) {
  const { rows: N, cols: K, bits, sym } = o;
  const g = groupLength(o.groupSize, K);
  const G = numGroups(K, g);
  const H = o.hessian; // [K, K], read only: the pristine copy for damping retries

  // Dead inputs (H[i,i] == 0): the diagonal becomes 1, the weights 0 (gptq.ts).
  const dead = new Uint8Array(K); // [K]
  const diag = new Float64Array(K); // [K] H[i,i] after the dead-column fix
  let anyDead = false;
  for (let i = 0; i < K; i++) {
    const d = H[i * K + i]!;
    dead[i] = d === 0 ? 1 : 0;
    diag[i] = d === 0 ? 1 : d;
    anyDead ||= d === 0;
  }

  // Act-order: decreasing H[i,i], ties by index (the comparator of gptq.ts).
  const order = Array.from({ length: K }, (_, i) => i);
  if (o.actOrder) order.sort((a, b) => diag[b]! - diag[a]! || a - b);
  const perm = Int32Array.from(order); // [K] permuted position → original column

  // Static groups: every group's grid from the original weights, in the original column order.
  const grids = o.out?.grids;
  invariant(grids === undefined || (grids.scales.length === N * G && grids.zeros.length === N * G && grids.gIdx.length === K),
    () => `GPTQ grid buffers of ${grids!.scales.length}/${grids!.zeros.length}/${grids!.gIdx.length} values for N = ${N}, G = ${G}, K = ${K}`);
  const scales = grids ? grids.scales.fill(0) : new Float32Array(N * G); // [N, G]
  const zeros = grids ? grids.zeros.fill(0) : new Uint8Array(N * G); // [N, G]
  let colGroup: Int32Array | null = null; // [K] group of each permuted column
  if (o.staticGroups && g !== K) {
    colGroup = new Int32Array(K);
    for (let i = 0; i < K; i++) colGroup[i] = Math.floor(perm[i]! / g);
    staticGrids(o.weight, N, K, g, bits, sym, dead, scales, zeros);
  }

  // Damping, raised like gptq.ts until the factorisation succeeds; mean over the permuted diagonal, in its order.
  let mean = 0;
  for (let i = 0; i < K; i++) mean += diag[perm[i]!]!;
  mean /= K;
  const out = o.out;
  if (out) {
    invariant(out.codes.length === N * K && out.dequantized.length === N * K && out.hinv.length === K * K,
      () => `GPTQ output buffers of ${out.codes.length}/${out.dequantized.length}/${out.hinv.length} values for N = ${N}, K = ${K}`);
  }
  const hinv = out ? out.hinv.fill(0) : new Float32Array(K * K); // [K, K] permuted order
  const diagP = new Float64Array(K); // [K] damped diagonal, permuted order
  const damped = (damp: number): Float64Array => {
    for (let i = 0; i < K; i++) diagP[i] = diag[perm[i]!]! + damp * mean;
    return diagP;
  };
  const codes = out ? out.codes.fill(0) : new Uint8Array(N * K); // [N, K]
  const dequantized = out ? out.dequantized.fill(0) : new Float32Array(N * K); // [N, K]
  const args: GptqKernelArgs = {
    w: o.weight, perm: o.actOrder ? perm : null, dead: anyDead ? dead : null, hinv, N, K, bits, groupSize: g, sym,
    colGroup, scales, zeros, codes, dequantized, blockSize: o.blockSize, blockStartGrids: o.groupGrid === "block-start",
  };
  const result = (loss: number, dampUsed: number): GptqResult => {
    const gIdx = grids ? grids.gIdx : new Int32Array(K); // [K], every entry written
    for (let i = 0; i < K; i++) gIdx[perm[i]!] = colGroup || !o.actOrder ? Math.floor(perm[i]! / g) : Math.floor(i / g);
    return { N, K, bits, groupSize: g, sym, codes, scales, zeros, gIdx, dequantized, loss, dampUsed };
  };
  return { H, K, hinv, damped, args, result, hinvPerm: o.actOrder ? perm : null };
}

function nextDamp(damp: number): number {
  if (damp >= 1) throw notPositiveDefinite();
  return Math.round((damp + DAMP_STEP) * 1e6) / 1e6;
}

export function gptqQuantizeLinearFast(o: GptqFastOptions): GptqResult {
  const { backend } = o;
  if (!backend.gptqHinv || !backend.gptqQuantize) return gptqQuantizeLinear(o);
  const p = prepare(o);
  let dampUsed = o.damp;
  while (!backend.gptqHinv(p.H, p.K, p.hinvPerm, p.damped(dampUsed), p.hinv)) dampUsed = nextDamp(dampUsed);
  return p.result(backend.gptqQuantize(p.args), dampUsed);
}

/**
 * gptqQuantizeLinearFast with the Hinv and the sweep off the JS thread (the backend's …Async
 * calls, where it has them), so progress and Ctrl-C are honoured within a layer: aborting
 * `signal` cancels the running kernel at its next work unit and the promise rejects with
 * `signal.reason`. Same results, bit for bit (the same native kernels).
 */
export async function gptqQuantizeLinearAsync(o: GptqFastOptions, call: KernelCallOptions = {}): Promise<GptqResult> {
  const { backend } = o;
  if (o.sweep) return sweepOnDevice(o, o.sweep, call);
  if (!backend.gptqHinvAsync || !backend.gptqQuantizeAsync) return gptqQuantizeLinearFast(o);
  const p = prepare(o);
  let dampUsed = o.damp;
  while (!(await backend.gptqHinvAsync(p.H, p.K, p.hinvPerm, p.damped(dampUsed), p.hinv, call))) dampUsed = nextDamp(dampUsed);
  return p.result(await backend.gptqQuantizeAsync(p.args, call), dampUsed);
}

/** gptqQuantizeLinearAsync with the sweep on `sweep`: the same preparation, Hinv on the backend (or gptqHinvInto). */
async function sweepOnDevice(o: GptqFastOptions, sweep: GptqSweepDevice, call: KernelCallOptions): Promise<GptqResult> {
  const { backend } = o;
  const p = prepare(o);
  const hinv = async (damp: number): Promise<boolean> => {
    const diag = p.damped(damp);
    if (backend.gptqHinvAsync) return backend.gptqHinvAsync(p.H, p.K, p.hinvPerm, diag, p.hinv, call);
    if (backend.gptqHinv) return backend.gptqHinv(p.H, p.K, p.hinvPerm, diag, p.hinv);
    return gptqHinvInto(p.H, p.K, p.hinvPerm, diag, p.hinv);
  };
  let dampUsed = o.damp;
  while (!(await hinv(dampUsed))) dampUsed = nextDamp(dampUsed);
  return p.result(await sweep.quantize(p.args, call), dampUsed);
}

/**
 * Backend.gptqHinv in TypeScript (for backends without the kernel): out [K, K] f32 = the upper
 * Cholesky factor of A⁻¹, A[i][j] = H[perm[i]][perm[j]] off the diagonal, diag[i] on it (f64 inside).
 */
export function gptqHinvInto(H: Float32Array | Float64Array, K: number, perm: Int32Array | null, diag: Float64Array, out: Float32Array): boolean {
  const A = new Float64Array(K * K); // [K, K] permuted, damped
  for (let i = 0; i < K; i++) {
    const pi = perm ? perm[i]! : i;
    for (let j = 0; j < K; j++) A[i * K + j] = H[pi * K + (perm ? perm[j]! : j)]!;
    A[i * K + i] = diag[i]!;
  }
  const U = gptqHinv(A, K);
  if (!U) return false;
  out.set(U);
  return true;
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
 * H = (2/n)·Σ x·xᵀ over n calibration sequences, kept as a running average in ONE
 * f32 [K, K] buffer exactly as gptq.py's `add_batch` does (H *= n/(n+1);
 * H += (2/(n+1))·xᵀx), so `hessian()` needs no copy. src/methods/hessian.ts keeps an
 * f64 sum plus a transposed copy of x and a product buffer; this one uses
 * `backend.syrkAccumulate` (no transposed copy) when the backend has it.
 */
export class HessianAccumulatorF32 {
  /** [K, K] the running H */
  private readonly H: Float32Array;
  private sequences = 0;

  /** `storage`: reused memory of at least K² values (zeroed here: the same sums as a fresh accumulator). */
  constructor(readonly K: number, storage?: Float32Array) {
    invariant(storage === undefined || storage.length >= K * K, () => `Hessian storage of ${storage!.length} values for K = ${K}`);
    this.H = storage ? storage.subarray(0, K * K).fill(0) : new Float32Array(K * K);
  }

  /** add() off the JS thread when the backend can (the same native kernel, so the same sums). */
  async addAsync(backend: Backend, x: Float32Array, T: number, opts: KernelCallOptions = {}): Promise<void> {
    if (!backend.syrkAccumulateAsync) { this.add(backend, x, T); return; }
    const n = this.sequences;
    await backend.syrkAccumulateAsync(x, T, this.K, this.H, 2 / (n + 1), n / (n + 1), opts);
    this.sequences++;
  }

  /** Add one sequence's inputs x [T, K]. */
  add(backend: Backend, x: Float32Array, T: number): void {
    const K = this.K, n = this.sequences;
    const alpha = 2 / (n + 1), beta = n / (n + 1);
    if (backend.syrkAccumulate) {
      backend.syrkAccumulate(x, T, K, this.H, alpha, beta);
    } else {
      const xT = new Float32Array(K * T); // [K, T]
      for (let t = 0; t < T; t++) for (let k = 0; k < K; k++) xT[k * T + t] = x[t * K + k]!;
      const prod = backend.matmul(xT, xT, K, T, K); // [K, K]
      for (let i = 0; i < K * K; i++) this.H[i] = beta * this.H[i]! + alpha * prod[i]!;
    }
    this.sequences++;
  }

  get count(): number { return this.sequences; }

  /** H [K, K] = (2/n)·Σ x·xᵀ: the accumulator's own buffer (read it, do not modify it; later adds update it). */
  hessian(): Float32Array {
    return this.H;
  }
}

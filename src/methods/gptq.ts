/**
 * GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
 * Generative Pre-trained Transformers", Alg. 1) — the plain-TS reference.
 *
 * Paper notation: W [N, K] weights, H = 2·X·Xᵀ [K, K] Hessian of the layer-wise
 * loss, Hinv = Cholesky(H⁻¹)ᵀ (upper), Q quantized weights, Err scaled errors.
 *
 * Every output row is independent given Hinv, so this reference walks one row at
 * a time over all K columns: quantize column i, spread its error over the
 * remaining columns along Hinv[i, i+1:]. The lazy block update of the paper
 * (§4, "Lazy Batch-Updates") is the same arithmetic reordered for speed; the
 * native kernel does it that way.
 *
 * Dynamic group grids, two rules (`groupGrid`, ALGORITHMS.md §2.7):
 *   "current"      from the CURRENT weights at the group start, every earlier error applied;
 *   "block-start"  from the weights as they were at the start of the lazy block of
 *                  `blockSize` columns holding the group start — IST-DASLab gptq.py reads
 *                  W[:, i1+i : i1+i+g], which it updates only between blocks. The rules
 *                  differ only for groups that start inside a block (g < blockSize), and
 *                  only there does the result depend on blockSize.
 */
import { gptqGrid, minMax, quantizeValue, type GridParams } from "./grid.ts";
import { gptqHinv } from "./linalg.ts";
import { NumericError } from "../util/errors.ts";
import { groupLength, numGroups, type QuantizedLinear } from "../tensor/quantized.ts";

export interface GptqOptions {
  /** [N, K] row-major (not modified) */
  weight: Float32Array;
  rows: number;
  cols: number;
  /** [K, K] symmetric: H = (2/n)·Σ x·xᵀ (not modified) */
  hessian: Float32Array | Float64Array;
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
  sym: boolean;
  actOrder: boolean;
  staticGroups: boolean;
  /** Fraction of mean(diag H) added to the diagonal (percdamp). */
  damp: number;
  /** Lazy-update block size (the result depends on it only with groupGrid "block-start"). */
  blockSize: number;
  /** Where dynamic group grids are read from (default "current"). */
  groupGrid?: GroupGrid | undefined;
}

/** Dynamic group grid rule: the current weights, or gptq.py's block-start snapshot. */
export type GroupGrid = "current" | "block-start";
export const GROUP_GRIDS: readonly GroupGrid[] = ["current", "block-start"];

export interface GptqResult extends QuantizedLinear {
  /** [N, K] f32 dequantized weights */
  dequantized: Float32Array;
  /** Σ (w − q)² / Hinv[i,i]² / 2 */
  loss: number;
  /** Damping actually used (≥ the requested one when the Cholesky needed more). */
  dampUsed: number;
}

/** Damping retries: like GPTQModel, step up by this much until the factorisation succeeds. */
export const DAMP_STEP = 0.0025;

/** The failure after damping reached 1 (the caller adds the layer's name as `field`). */
export function notPositiveDefinite(): NumericError {
  return new NumericError("the Hessian is not positive definite even with damp = 1", {
    expected: "a Hessian whose Cholesky factorisation succeeds once mean(diag H) is added to its diagonal",
    found: "a failed factorisation at damp = 1 (NaN/Inf or a degenerate calibration input)",
    hint: "check the calibration text (enough distinct windows, --calib-samples ≥ 32) and that the model's activations are finite (quantize-llm eval)",
  });
}

export function gptqQuantizeLinear(o: GptqOptions): GptqResult {
  const { rows: N, cols: K, bits, sym } = o;
  const g = groupLength(o.groupSize, K);
  const G = numGroups(K, g);
  const maxq = 2 ** bits - 1;
  const W = Float64Array.from(o.weight); // [N, K] working copy
  const H = Float64Array.from(o.hessian); // [K, K]

  // Dead inputs: a column no calibration token ever excited carries no information.
  for (let i = 0; i < K; i++) {
    if (H[i * K + i] === 0) {
      H[i * K + i] = 1;
      for (let n = 0; n < N; n++) W[n * K + i] = 0;
    }
  }

  // Static groups: every group's grid from the original weights, before any update.
  let staticParams: GridParams[] | null = null;
  if (o.staticGroups && g !== K) {
    staticParams = [];
    const Wf = Float32Array.from(W);
    for (let n = 0; n < N; n++) {
      for (let gi = 0; gi < G; gi++) {
        const k0 = gi * g;
        const [lo, hi] = minMax(Wf, n * K + k0, Math.min(g, K - k0));
        staticParams.push(gptqGrid(lo, hi, bits, sym));
      }
    }
  }

  // Act-order: process columns by decreasing H[i,i].
  const perm = Array.from({ length: K }, (_, i) => i);
  if (o.actOrder) perm.sort((a, b) => H[b * K + b]! - H[a * K + a]! || a - b);
  const Hp = new Float64Array(K * K); // [K, K] permuted
  for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) Hp[i * K + j] = H[perm[i]! * K + perm[j]!]!;

  // Damping, increased until the Cholesky factorisations succeed.
  let mean = 0;
  for (let i = 0; i < K; i++) mean += Hp[i * K + i]!;
  mean /= K;
  let dampUsed = o.damp;
  let Hinv: Float64Array | null = null;
  for (;;) {
    const Hd = Hp.slice();
    for (let i = 0; i < K; i++) Hd[i * K + i] = Hd[i * K + i]! + dampUsed * mean;
    Hinv = gptqHinv(Hd, K);
    if (Hinv || dampUsed >= 1) break;
    dampUsed = Math.round((dampUsed + DAMP_STEP) * 1e6) / 1e6;
  }
  if (!Hinv) throw notPositiveDefinite();

  const codes = new Uint8Array(N * K); // [N, K] original column order
  const scales = new Float32Array(N * G); // [N, G]
  const zeros = new Uint8Array(N * G); // [N, G]
  const dequantized = new Float32Array(N * K); // [N, K]
  const gIdx = new Int32Array(K); // [K]
  for (let i = 0; i < K; i++) gIdx[perm[i]!] = staticParams || !o.actOrder ? Math.floor(perm[i]! / g) : Math.floor(i / g);

  let loss = 0;
  const w = new Float64Array(K); // one row, permuted
  const wf = new Float32Array(K);
  const blockStart = o.groupGrid === "block-start" && !staticParams && g !== K;
  const B = Math.max(1, o.blockSize);
  const snap = blockStart ? new Float64Array(K) : w; // the row at the start of the current lazy block
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < K; i++) w[i] = W[n * K + perm[i]!]!;
    let p: GridParams | undefined;
    if (g === K) { wf.set(w); const [lo, hi] = minMax(wf, 0, K); p = gptqGrid(lo, hi, bits, sym); }
    for (let i = 0; i < K; i++) {
      const col = perm[i]!;
      const grp = gIdx[col]!;
      if (blockStart && i % B === 0) snap.set(w);
      if (staticParams) p = staticParams[n * G + grp]!;
      else if (g !== K && i % g === 0) {
        const len = Math.min(g, K - i);
        for (let j = 0; j < len; j++) wf[j] = snap[i + j]!;
        const [lo, hi] = minMax(wf, 0, len);
        p = gptqGrid(lo, hi, bits, sym);
      }
      const gp = p!;
      scales[n * G + grp] = gp.scale;
      zeros[n * G + grp] = gp.zero;
      const q = quantizeValue(w[i]!, gp, maxq);
      const dq = gp.scale * (q - gp.zero);
      codes[n * K + col] = q;
      dequantized[n * K + col] = dq;
      const d = Hinv[i * K + i]!;
      const err = (w[i]! - dq) / d;
      loss += ((w[i]! - dq) ** 2) / (d * d) / 2;
      for (let j = i + 1; j < K; j++) w[j] = w[j]! - err * Hinv[i * K + j]!;
    }
  }
  return { N, K, bits, groupSize: g, sym, codes, scales, zeros, gIdx, dequantized, loss, dampUsed };
}

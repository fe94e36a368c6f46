/**
 * The AWQ grid (ALGORITHMS.md §1; AutoAWQ `quantizer.py` `pseudo_quantize_tensor`,
 * zero_point=True): asymmetric, from the group's OWN min and max (0 is not forced in),
 *   scale = max(max − min, 1e-5) / maxq   (rounded to f16 before any code is computed)
 *   zero  = clamp(−round(min / scale), 0, maxq)
 *   q     = clamp(round(w / scale) + zero, 0, maxq),   w ≈ scale · (q − zero)
 * Rounding is `roundEven` (torch.round), like every quantizer of this repo.
 * Faithful to the reference, quirks included: a group that does not straddle 0 gets a
 * clamped zero point and cannot represent its whole range (real 128-wide groups always
 * straddle 0); a flat group gets the 1e-5 range.
 */
import type { Backend, KernelCallOptions } from "../backend/backend.ts";
import type { Linear } from "../nn/weights.ts";
import { roundEven, toF16, type GridParams } from "./grid.ts";
import { contiguousGIdx, groupLength, numGroups, type QuantizedLinear } from "../tensor/quantized.ts";

/** AutoAWQ clamps the range to this before dividing (`.clamp(min=1e-5)`). */
export const AWQ_MIN_RANGE = 1e-5;

export function awqGrid(min: number, max: number, bits: number): GridParams {
  const maxq = 2 ** bits - 1;
  const scale = toF16(Math.max(max - min, AWQ_MIN_RANGE) / maxq);
  const zero = Math.min(maxq, Math.max(0, -roundEven(min / scale)));
  return { scale, zero };
}

/** Code of w on grid p. */
function code(w: number, p: GridParams, maxq: number): number {
  const q = roundEven(w / p.scale) + p.zero;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

/**
 * Fake-quantize the `n` values W[offset .. offset+n) as ONE group (grid from their own
 * min/max) into out[outOffset ..]: out = scale·(q − zero). `out` may be W itself.
 */
export function awqFakeQuantizeGroup(W: ArrayLike<number>, offset: number, n: number, bits: number, out: Float32Array, outOffset: number): void {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) { const v = W[offset + i]!; if (v < lo) lo = v; if (v > hi) hi = v; }
  const p = awqGrid(lo, hi, bits);
  const maxq = 2 ** bits - 1;
  for (let i = 0; i < n; i++) out[outOffset + i] = p.scale * (code(W[offset + i]!, p, maxq) - p.zero);
}

/** dequant(quant(W)) for W [N, K] with groups of g along K (g divides K). Returns a new [N, K] array. */
export function awqFakeQuantize(W: Float32Array, N: number, K: number, bits: number, groupSize: number): Float32Array {
  const g = groupLength(groupSize, K);
  const out = new Float32Array(N * K); // [N, K]
  for (let n = 0; n < N; n++) {
    for (let k0 = 0; k0 < K; k0 += g) awqFakeQuantizeGroup(W, n * K + k0, Math.min(g, K - k0), bits, out, n * K + k0);
  }
  return out;
}

/**
 * One scale candidate of the AWQ scale search: out [N, K] = Q(W·diag(s))·diag(s)⁻¹ for
 * W [N, K] on the AWQ grid, into `out` (default: a new array). W·s and q/s are f32
 * stores, as AutoAWQ computes them in the model's dtype. The specification of the
 * native kernel (awqScaledFakeQuantizeOn).
 */
export function awqScaledFakeQuantize(l: Linear, s: Float32Array, bits: number, groupSize: number, out: Float32Array = new Float32Array(l.N * l.K)): Float32Array {
  const { N, K, weight: W } = l;
  const g = groupLength(groupSize, K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[n * K + k] = W[n * K + k]! * s[k]!; // [N, K] W·diag(s)
  for (let n = 0; n < N; n++) {
    for (let k0 = 0; k0 < K; k0 += g) awqFakeQuantizeGroup(out, n * K + k0, Math.min(g, K - k0), bits, out, n * K + k0);
  }
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[n * K + k] = out[n * K + k]! / s[k]!;
  return out;
}

/**
 * awqScaledFakeQuantize on the backend's AWQ kernel when it has one (native/src/awq.cc,
 * bit-identical: elementwise f32 and f64 steps in the same order), off the JS thread;
 * else the specification itself.
 */
export async function awqScaledFakeQuantizeOn(
  backend: Backend, l: Linear, s: Float32Array, bits: number, groupSize: number, out: Float32Array, opts: KernelCallOptions = {},
): Promise<Float32Array> {
  if (!backend.awqFakeQuantize) return awqScaledFakeQuantize(l, s, bits, groupSize, out);
  await backend.awqFakeQuantize(l.weight, s, l.N, l.K, bits, groupLength(groupSize, l.K), out, opts);
  return out;
}

export interface AwqQuantizeOptions {
  /** [N, K] row-major (already scaled and clipped by AWQ) */
  weight: Float32Array;
  rows: number;
  cols: number;
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
}

/** Quantize a layer on the AWQ grid: the canonical QuantizedLinear (sym = false, contiguous g_idx). */
export function awqQuantizeLinear(o: AwqQuantizeOptions): QuantizedLinear {
  const { weight: W, rows: N, cols: K, bits } = o;
  const g = groupLength(o.groupSize, K);
  const G = numGroups(K, g);
  const maxq = 2 ** bits - 1;
  const codes = new Uint8Array(N * K); // [N, K]
  const scales = new Float32Array(N * G); // [N, G]
  const zeros = new Uint8Array(N * G); // [N, G]
  for (let n = 0; n < N; n++) {
    for (let gi = 0; gi < G; gi++) {
      const k0 = gi * g, len = Math.min(g, K - k0);
      let lo = Infinity, hi = -Infinity;
      for (let k = k0; k < k0 + len; k++) { const v = W[n * K + k]!; if (v < lo) lo = v; if (v > hi) hi = v; }
      const p = awqGrid(lo, hi, bits);
      scales[n * G + gi] = p.scale;
      zeros[n * G + gi] = p.zero;
      for (let k = k0; k < k0 + len; k++) codes[n * K + k] = code(W[n * K + k]!, p, maxq);
    }
  }
  return { N, K, bits, groupSize: g, sym: false, codes, scales, zeros, gIdx: contiguousGIdx(K, g) };
}

/** Per-layer quantization report: what each layer cost, in numbers a user can act on. */
import type { Backend, KernelCallOptions, PackBuffers } from "../backend/backend.ts";
import type { LinearName } from "../arch/registry.ts";

export interface LayerReport {
  block: number;
  layer: LinearName;
  /** out_features × in_features */
  shape: [number, number];
  /** GPTQ's Σ (w − q)² / Hinv[i,i]² / 2 (null for RTN) */
  loss: number | null;
  /** ‖X·(W − Q)ᵀ‖² / ‖X·Wᵀ‖² on the calibration inputs, via H (null without calibration) */
  relOutputError: number | null;
  /** ‖W − Q‖² / ‖W‖² */
  relWeightError: number;
  /** Damping actually used (null for RTN) */
  damp: number | null;
  seconds: number;
}

/**
 * Where the error's [N, K] scratch arrays come from: reused slots (load/canonical.ts Scratch:
 * "work", which the pipeline shares with GPTQ's Hinv, dead by then, and "report:D"), or fresh arrays.
 */
export type F32Buffers = Pick<PackBuffers, "f32">;
const FRESH: F32Buffers = { f32: (_slot, n) => new Float32Array(n) };

export function relWeightError(W: Float32Array, Q: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < W.length; i++) { const d = W[i]! - Q[i]!; num += d * d; den += W[i]! * W[i]!; }
  return den > 0 ? num / den : 0;
}

/**
 * tr(D·H·Dᵀ) / tr(W·H·Wᵀ) with D = W − Q: the relative output error on the calibration set,
 * with its GEMMs off the JS thread when the backend can (same kernel, same value).
 *
 * After GPTQ the numerator is free: GPTQ's error e_i = (w_i − q_i)/U_ii spread along the
 * rows of U (H'⁻¹ = UᵀU, H' = H with dead columns' diagonal set to 1, + λI) makes
 * D = e·U, so tr(D·H'·Dᵀ) = Σ e_i² = 2·loss exactly, and with the undamped H
 * tr(D·H·Dᵀ) = 2·loss − λ·‖D‖² over live columns (λ = dampUsed · mean of that diagonal).
 * Only the denominator's GEMM is left: half the cost (test/quant/report.test.ts keeps the
 * two ways equal to f32 rounding).
 */
export async function relOutputErrorAsync(
  backend: Backend, W: Float32Array, Q: Float32Array, H: Float32Array | Float64Array, N: number, K: number, opts: KernelCallOptions = {},
  gptq?: { loss: number; dampUsed: number }, buffers: F32Buffers = FRESH,
): Promise<number> {
  if (!backend.matmulAsync) return relOutputError(backend, W, Q, H, N, K, gptq, buffers);
  const Hf = H instanceof Float32Array ? H : Float32Array.from(H); // [K, K]
  const AH = buffers.f32("work", N * K); // [N, K] scratch (every value written by the GEMM)
  const quad = async (A: Float32Array): Promise<number> => {
    await backend.matmulAsync!(A, Hf, N, K, K, undefined, AH, opts); // A·Hᵀ = A·H
    let s = 0;
    for (let i = 0; i < A.length; i++) s += A[i]! * AH[i]!;
    return s;
  };
  const den = await quad(W);
  if (den <= 0) return 0;
  if (gptq) return gptqNumerator(W, Q, H, N, K, gptq) / den;
  const D = buffers.f32("report:D", N * K); // [N, K]
  for (let i = 0; i < D.length; i++) D[i] = W[i]! - Q[i]!;
  return (await quad(D)) / den;
}

/** tr(D·H·Dᵀ) from GPTQ's loss (relOutputErrorAsync): 2·loss − λ·‖D‖² over the live columns. */
function gptqNumerator(W: Float32Array, Q: Float32Array, H: Float32Array | Float64Array, N: number, K: number, g: { loss: number; dampUsed: number }): number {
  let mean = 0;
  for (let i = 0; i < K; i++) mean += H[i * K + i] === 0 ? 1 : H[i * K + i]!;
  mean /= K;
  let d2 = 0;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      if (H[k * K + k] === 0) continue; // dead column: no output error, and GPTQ zeroed it
      const d = W[n * K + k]! - Q[n * K + k]!;
      d2 += d * d;
    }
  }
  return Math.max(0, 2 * g.loss - g.dampUsed * mean * d2);
}

export function relOutputError(
  backend: Backend, W: Float32Array, Q: Float32Array, H: Float32Array | Float64Array, N: number, K: number, gptq?: { loss: number; dampUsed: number },
  buffers: F32Buffers = FRESH,
): number {
  const Hf = H instanceof Float32Array ? H : Float32Array.from(H); // [K, K]
  const AH = buffers.f32("work", N * K); // [N, K] scratch (every value written by the GEMM)
  const quad = (A: Float32Array): number => {
    backend.matmul(A, Hf, N, K, K, undefined, AH); // A·Hᵀ = A·H
    let s = 0;
    for (let i = 0; i < A.length; i++) s += A[i]! * AH[i]!;
    return s;
  };
  const den = quad(W);
  if (den <= 0) return 0;
  if (gptq) return gptqNumerator(W, Q, H, N, K, gptq) / den;
  const D = buffers.f32("report:D", N * K); // [N, K]
  for (let i = 0; i < D.length; i++) D[i] = W[i]! - Q[i]!;
  return quad(D) / den;
}

export function summarise(layers: LayerReport[]): { layers: number; meanRelOutputError: number | null; worst: LayerReport | null; maxDamp: number | null } {
  const withErr = layers.filter((l) => l.relOutputError !== null);
  const mean = withErr.length ? withErr.reduce((a, l) => a + l.relOutputError!, 0) / withErr.length : null;
  const worst = withErr.length ? withErr.reduce((a, l) => (l.relOutputError! > a.relOutputError! ? l : a)) : null;
  const damps = layers.map((l) => l.damp).filter((d): d is number => d !== null);
  return { layers: layers.length, meanRelOutputError: mean, worst, maxDamp: damps.length ? Math.max(...damps) : null };
}

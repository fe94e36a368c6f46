/** Structured calibration-like activations for quantizer tests (isotropic randn makes GPTQ overfit). */
import { mulberry32 } from "../../src/util/random.ts";
import { randn } from "./random-weights.ts";

/**
 * Correlated activations [T, K]: a few shared factors + noise, columns with different
 * scales (like real LLM inputs). The factor loadings are fixed, so calibration and
 * held-out rows (different seeds) come from the same distribution.
 */
export function activations(T: number, K: number, seed: number): Float32Array {
  const F = 4;
  const lrand = mulberry32(99);
  const load = Array.from({ length: F * K }, () => randn(lrand));
  const rand = mulberry32(seed);
  const colScale = Array.from({ length: K }, (_, k) => 0.2 + 3 * ((k * 7919) % 13) / 13);
  const X = new Float32Array(T * K);
  for (let t = 0; t < T; t++) {
    const f = Array.from({ length: F }, () => randn(rand));
    for (let k = 0; k < K; k++) {
      let v = 0.3 * randn(rand);
      for (let j = 0; j < F; j++) v += f[j]! * load[j * K + k]!;
      X[t * K + k] = v * colScale[k]!;
    }
  }
  return X;
}

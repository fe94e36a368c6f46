/**
 * Synthetic benchmark data shared by eval/bench-gptq.ts and eval/bench-awq.ts:
 * deterministic normals, correlated activations with outlier columns (isotropic ones
 * make GPTQ overfit the calibration rows and give AWQ nothing to protect), layer weights.
 */

/** Deterministic normal samples (xorshift32 + Box–Muller): Math.random is too slow for 10⁷ draws. */
export function normals(seed: number): () => number {
  let s = seed >>> 0 || 1;
  let spare: number | null = null;
  const u = (): number => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  return () => {
    if (spare !== null) { const v = spare; spare = null; return v; }
    const r = Math.sqrt(-2 * Math.log(u())), a = 2 * Math.PI * u();
    spare = r * Math.sin(a);
    return r * Math.cos(a);
  };
}

/** Correlated activations: F shared factors + noise, column scales 0.2..3.2, every 97th column ×8 (outlier features). */
export function activations(T: number, K: number, seed: number): Float32Array {
  const F = 8;
  const lr = normals(99); // the same loadings for calibration and held-out rows
  const load = Float32Array.from({ length: F * K }, () => lr());
  const colScale = Float32Array.from({ length: K }, (_, k) => (0.2 + (3 * ((k * 7919) % 13)) / 13) * (k % 97 === 0 ? 8 : 1));
  const r = normals(seed);
  const X = new Float32Array(T * K);
  const f = new Float32Array(F);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < F; j++) f[j] = r();
    for (let k = 0; k < K; k++) {
      let v = 0.3 * r();
      for (let j = 0; j < F; j++) v += f[j]! * load[j * K + k]!;
      X[t * K + k] = v * colScale[k]!;
    }
  }
  return X;
}

export function weights(N: number, K: number, seed: number): Float32Array {
  const r = normals(seed), s = 1 / Math.sqrt(K);
  return Float32Array.from({ length: N * K }, () => s * r());
}

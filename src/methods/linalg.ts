/**
 * Small dense linear algebra in f64 for the GPTQ reference path (the native addon
 * has the fast versions). Matrices are row-major Float64Array [n, n].
 */

/**
 * A pivot of the Hessian's factorisation must exceed this fraction of its diagonal entry,
 * the same rule as the native kernel (native/src/gptq_hinv.cc kPivotRelTol): below it the
 * Schur complement is rounding noise at f32 (the precision H is accumulated and used in),
 * so the matrix counts as singular and the damping grows, on both backends alike.
 */
export const PIVOT_REL_TOL = 2 ** -21;

/**
 * In-place lower Cholesky A = L·Lᵀ (upper triangle zeroed). Returns false if A is not
 * positive definite: a pivot that is not above relTol × its original diagonal entry.
 */
export function choleskyLower(A: Float64Array, n: number, relTol = 0): boolean {
  for (let j = 0; j < n; j++) {
    const a0 = A[j * n + j]!;
    let d = a0;
    for (let k = 0; k < j; k++) d -= A[j * n + k]! * A[j * n + k]!;
    if (!(d > 0 && d > relTol * a0) || !Number.isFinite(d)) return false;
    const ljj = Math.sqrt(d);
    A[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j]!;
      for (let k = 0; k < j; k++) s -= A[i * n + k]! * A[j * n + k]!;
      A[i * n + j] = s / ljj;
    }
    for (let k = j + 1; k < n; k++) A[j * n + k] = 0;
  }
  return true;
}

/** Inverse of a lower-triangular L, in place. */
export function invertLower(L: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) {
    L[j * n + j] = 1 / L[j * n + j]!;
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= L[i * n + k]! * L[k * n + j]!;
      L[i * n + j] = s / L[i * n + i]!;
    }
  }
}

/**
 * Hinv = cholesky_upper(inverse(H)) as in gptq.py, for SPD H. Returns null when
 * H is not positive definite (the caller increases damping and retries).
 */
export function gptqHinv(H: Float64Array, n: number): Float64Array | null {
  const L = H.slice();
  if (!choleskyLower(L, n, PIVOT_REL_TOL)) return null;
  invertLower(L, n); // L⁻¹
  // H⁻¹ = L⁻ᵀ · L⁻¹
  const Hi = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += L[k * n + i]! * L[k * n + j]!;
      Hi[i * n + j] = s;
      Hi[j * n + i] = s;
    }
  }
  if (!choleskyLower(Hi, n)) return null;
  // upper factor U = Lᵀ of H⁻¹ = L·Lᵀ, so H⁻¹ = Uᵀ·U
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) U[j * n + i] = Hi[i * n + j]!;
  return U;
}

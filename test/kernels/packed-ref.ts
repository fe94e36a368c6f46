/**
 * Plain-TS references for the packed-weight tests: random canonical inputs, their
 * dequantization (the meaning of the canonical inputs, written independently of
 * the native layouts), y = x'·Wᵀ in f64, and the error bounds the tests hold the
 * kernels to.
 */

/** Machine epsilon of f32 (2^-23). */
export const F32_EPS = 2 ** -23;

/** Deterministic uniform [0, 1) generator. */
export { mulberry32 as rng } from "../../src/util/random.ts";

/** The nearest f16 value of v (round to nearest even), as a JS number. */
export function toF16(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer)[0]!;
  const h = f32ToF16Bits(u);
  return f16BitsToNumber(h);
}

function f32ToF16Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000, exp = (u >>> 23) & 0xff, man = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = (man | 0x800000) / 2 ** (14 - e);
    const r = Math.round(m);
    return sign | (m - Math.floor(m) === 0.5 && r % 2 === 1 ? r - 1 : r);
  }
  let h = (e << 10) | (man >>> 13);
  const rest = man & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return sign | h;
}

export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >>> 10) & 0x1f, man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 31) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

export function bf16BitsToNumber(b: number): number {
  return new Float32Array(new Uint32Array([b << 16]).buffer)[0]!;
}

export function randF32(n: number, r: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

/** A random permutation of 0..K−1 (Fisher–Yates). */
export function randPerm(K: number, r: () => number): Int32Array {
  const p = Int32Array.from({ length: K }, (_, i) => i);
  for (let i = K - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/** Scales [n] in [0.005, 0.05): f16-exact when `f16`, else arbitrary f32. */
export function randScales(n: number, r: () => number, f16: boolean): Float32Array {
  const s = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = 0.005 + 0.045 * r();
    s[i] = f16 ? toF16(v) : v;
  }
  return s;
}

/**
 * W [N, K] of int4 canonical inputs: s·q + m, or s·(q − 8) when mins is null; and
 * the magnitude of the terms the kernels round (|s·q| + |m| with mins, else |w|).
 */
export function dequantQ4(codes: Uint8Array, scales: Float32Array, mins: Float32Array | null, N: number, K: number, g: number): { w: Float64Array; mag: Float64Array } {
  const G = Math.ceil(K / Math.min(g, K)), gs = Math.min(g, K), w = new Float64Array(N * K), mag = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const i = n * G + Math.floor(k / gs), q = codes[n * K + k]!;
      w[n * K + k] = mins ? scales[i]! * q + mins[i]! : scales[i]! * (q - 8);
      mag[n * K + k] = mins ? Math.abs(scales[i]! * q) + Math.abs(mins[i]!) : Math.abs(w[n * K + k]!);
    }
  }
  return { w, mag };
}

/** W [N, K] of int8 canonical inputs: s·q. */
export function dequantQ8(codes: Int8Array, scales: Float32Array, N: number, K: number, g: number): Float64Array {
  const G = Math.ceil(K / Math.min(g, K)), gs = Math.min(g, K), w = new Float64Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) w[n * K + k] = scales[n * G + Math.floor(k / gs)]! * codes[n * K + k]!;
  return w;
}

/** x' [M, K]: x' [m, k] = x[m, perm[k]] (or x). */
export function gather(x: Float32Array, M: number, K: number, perm: Int32Array | null): Float64Array {
  const out = new Float64Array(M * K);
  for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) out[m * K + k] = x[m * K + (perm ? perm[k]! : k)]!;
  return out;
}

/** y [M, N] = x' · Wᵀ (+ bias) in f64, and Σ|x'||w| per output. */
export function refMatmulF64(x: Float64Array, w: Float64Array, M: number, K: number, N: number, bias?: Float32Array): { y: Float64Array; abs: Float64Array } {
  const y = new Float64Array(M * N), abs = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0, a = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k]! * w[n * K + k]!;
        s += p;
        a += Math.abs(p);
      }
      y[m * N + n] = s + (bias?.[n] ?? 0);
      abs[m * N + n] = a + Math.abs(bias?.[n] ?? 0);
    }
  }
  return { y, abs };
}

/**
 * Bound on the error that int8 activations add: per block b of Ba k, x is rounded to
 * a grid of step d_b = max|x_b| / 127, so |x − x̂| ≤ d_b / 2 and the output moves by at
 * most Σ_b (d_b / 2)·Σ_{k∈b} |w_k|.
 */
export function int8ActBound(x: Float64Array, w: Float64Array, M: number, K: number, N: number, Ba: number): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let b0 = 0; b0 < K; b0 += Ba) {
      let amax = 0;
      for (let k = b0; k < Math.min(K, b0 + Ba); k++) amax = Math.max(amax, Math.abs(x[m * K + k]!));
      const half = amax / 127 / 2;
      for (let n = 0; n < N; n++) {
        let a = 0;
        for (let k = b0; k < Math.min(K, b0 + Ba); k++) a += Math.abs(w[n * K + k]!);
        out[m * N + n]! += half * a;
      }
    }
  }
  return out;
}

/**
 * ggml k-quants Q4_K and Q6_K (super-blocks of 256): the reference round-to-nearest
 * quantizers `quantize_row_q4_K_ref` / `quantize_row_q6_K_ref` with their helpers
 * `make_qkx2_quants` / `make_qx_quants` (ggml/src/ggml-quants.c), reproduced bit-exactly.
 *
 * Every arithmetic step is rounded to f32 with `F` (Math.fround) in the order the C code
 * evaluates it: one f64 operation on f32 inputs rounded to f32 equals the f32 operation,
 * so the results match a C build without FMA contraction (-ffp-contract=off), which is
 * how ggml-base is compiled for baseline x86-64.
 *
 *   block_q4_K (144 B): f16 d | f16 dmin | u8 scales[12] (6-bit sub-scales/mins) | u8 qs[128]
 *   block_q6_K (210 B): u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
 */
import { f16ToF32, f32ToF16 } from "../tensor/dtype.ts";

const F = Math.fround;
export const QK_K = 256;
/** `GROUP_MAX_EPS` in ggml-quants.c. */
const GROUP_MAX_EPS = F(1e-15);

/** `nearest_int` (ggml-quants.c): round half to even via the 1.5·2^23 trick, on an f32 input. */
export function nearestInt(fval: number): number {
  return F(fval + 12582912) - 12582912;
}

/** `get_scale_min_k4`: 6-bit scale and min of sub-block j from the packed 12 bytes at `q[o..]`. */
export function getScaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j]! & 63, q[o + j + 4]! & 63];
  return [(q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >> 6) << 4), (q[o + j + 4]! >> 4) | ((q[o + j]! >> 6) << 4)];
}

/**
 * `make_qkx2_quants`: weighted asymmetric fit of n values to [0, nmax] with a search over
 * 1 + nstep scale candidates. Writes codes to L[lo..lo+n); returns [scale, −min].
 */
function makeQkx2Quants(
  n: number, nmax: number, x: Float32Array, xo: number, weights: Float32Array, L: Uint8Array, lo: number, Laux: Uint8Array,
  rmin: number, rdelta: number, nstep: number,
): [number, number] {
  let min = x[xo]!, max = x[xo]!;
  let sumW = weights[0]!;
  let sumX = F(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = weights[i]!;
    sumW = F(sumW + w);
    sumX = F(sumX + F(w * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return [0, -min];
  }
  let iscale = F(nmax / F(max - min));
  let scale = F(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = nearestInt(F(iscale * F(x[xo + i]! - min)));
    const q = Math.max(0, Math.min(nmax, l));
    L[lo + i] = q;
    let diff = F(F(F(scale * q) + min) - x[xo + i]!);
    diff = F(diff * diff);
    bestError = F(bestError + F(weights[i]! * diff));
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = F(F(F(rmin + F(rdelta * is)) + nmax) / F(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = Math.max(0, Math.min(nmax, nearestInt(F(iscale * F(xi - min)))));
      Laux[i] = l;
      const w = weights[i]!;
      const wl = F(w * l);
      sumL = F(sumL + wl);
      sumL2 = F(sumL2 + F(wl * l));
      sumXL = F(sumXL + F(wl * xi));
    }
    const D = F(F(sumW * sumL2) - F(sumL * sumL));
    if (D > 0) {
      let thisScale = F(F(F(sumW * sumXL) - F(sumX * sumL)) / D);
      let thisMin = F(F(F(sumL2 * sumX) - F(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = F(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        let diff = F(F(F(thisScale * Laux[i]!) + thisMin) - x[xo + i]!);
        diff = F(diff * diff);
        curError = F(curError + F(weights[i]! * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i]!;
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

/** `quantize_row_q4_K_ref`: k values (k % 256 == 0) → k/256 blocks of 144 bytes. */
export function quantizeRowQ4K(x: Float32Array, out: Uint8Array, outOffset = 0): void {
  const nb = x.length / QK_K;
  const L = new Uint8Array(QK_K), Laux = new Uint8Array(32);
  const weights = new Float32Array(32), mins = new Float32Array(8), scales = new Float32Array(8);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < nb; i++) {
    const xb = i * QK_K;
    const o = outOffset + i * 144;
    let maxScale = 0, maxMin = 0;
    for (let j = 0; j < 8; j++) {
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) { const v = x[xb + 32 * j + l]!; sumX2 = F(sumX2 + F(v * v)); }
      const avX = F(Math.sqrt(F(sumX2 / 32)));
      for (let l = 0; l < 32; l++) weights[l] = F(avX + Math.abs(x[xb + 32 * j + l]!));
      const [s, m] = makeQkx2Quants(32, 15, x, xb + 32 * j, weights, L, 32 * j, Laux, -1, F(0.1), 20);
      scales[j] = s;
      mins[j] = m;
      if (scales[j]! > maxScale) maxScale = scales[j]!;
      if (mins[j]! > maxMin) maxMin = mins[j]!;
    }
    const invScale = maxScale > 0 ? F(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? F(63 / maxMin) : 0;
    const sc = out.subarray(o + 4, o + 16);
    sc.fill(0);
    for (let j = 0; j < 8; j++) {
      const ls = Math.min(63, nearestInt(F(invScale * scales[j]!)) & 0xff);
      const lm = Math.min(63, nearestInt(F(invMin * mins[j]!)) & 0xff);
      if (j < 4) {
        sc[j] = ls;
        sc[j + 4] = lm;
      } else {
        sc[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        sc[j - 4]! |= (ls >> 4) << 6;
        sc[j]! |= (lm >> 4) << 6;
      }
    }
    const dBits = f32ToF16(F(maxScale / 63)), dminBits = f32ToF16(F(maxMin / 63));
    dv.setUint16(o, dBits, true);
    dv.setUint16(o + 2, dminBits, true);
    const d0 = f16ToF32(dBits), dmin0 = f16ToF32(dminBits);
    for (let j = 0; j < 8; j++) {
      const [s, m] = getScaleMinK4(j, out, o + 4);
      const d = F(d0 * s);
      if (d === 0) continue;
      const dm = F(dmin0 * m);
      for (let ii = 0; ii < 32; ii++) {
        const l = nearestInt(F(F(x[xb + 32 * j + ii]! + dm) / d));
        L[32 * j + ii] = Math.max(0, Math.min(15, l));
      }
    }
    let q = o + 16;
    for (let j = 0; j < QK_K; j += 64) {
      for (let l = 0; l < 32; l++) out[q + l] = L[j + l]! | (L[j + l + 32]! << 4);
      q += 32;
    }
  }
}

/** `dequantize_row_q4_K`. */
export function dequantizeRowQ4K(src: Uint8Array, y: Float32Array): void {
  const nb = y.length / QK_K;
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  let yi = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 144;
    const d = f16ToF32(dv.getUint16(o, true)), min = f16ToF32(dv.getUint16(o + 2, true));
    let q = o + 16, is = 0;
    for (let j = 0; j < QK_K; j += 64) {
      const [sc1, m1s] = getScaleMinK4(is, src, o + 4);
      const [sc2, m2s] = getScaleMinK4(is + 1, src, o + 4);
      const d1 = F(d * sc1), m1 = F(min * m1s), d2 = F(d * sc2), m2 = F(min * m2s);
      for (let l = 0; l < 32; l++) y[yi++] = F(d1 * (src[q + l]! & 0xf)) - m1;
      for (let l = 0; l < 32; l++) y[yi++] = F(d2 * (src[q + l]! >> 4)) - m2;
      q += 32;
      is += 2;
    }
  }
}

/**
 * `make_qx_quants` with rmse_type 1 and no importance weights (the only use in
 * quantize_row_q6_K_ref): symmetric fit to [−nmax, nmax − 1] weighted by x², with a
 * search over 18 scale candidates. Writes codes + nmax to L[lo..]; returns the scale.
 */
function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  let max = 0, amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) { amax = ax; max = x[xo + i]!; }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  const clampL = (l: number): number => Math.max(-nmax, Math.min(nmax - 1, l));
  let iscale = F(-nmax / max);
  let sumlx = 0, suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = clampL(nearestInt(F(iscale * xi)));
    L[lo + i] = l + nmax;
    const w = F(xi * xi);
    sumlx = F(sumlx + F(F(w * xi) * l));
    suml2 = F(suml2 + F(F(w * l) * l));
  }
  let scale = suml2 !== 0 ? F(sumlx / suml2) : 0;
  let best = F(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = F(-F(nmax + F(F(0.1) * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = clampL(nearestInt(F(iscale * xi)));
      const w = F(xi * xi);
      sumlx = F(sumlx + F(F(w * xi) * l));
      suml2 = F(suml2 + F(F(w * l) * l));
    }
    if (suml2 > 0 && F(sumlx * sumlx) > F(best * suml2)) {
      for (let i = 0; i < n; i++) L[lo + i] = nmax + clampL(nearestInt(F(iscale * x[xo + i]!)));
      scale = F(sumlx / suml2);
      best = F(scale * sumlx);
    }
  }
  return scale;
}

/** `quantize_row_q6_K_ref`: k values (k % 256 == 0) → k/256 blocks of 210 bytes. */
export function quantizeRowQ6K(x: Float32Array, out: Uint8Array, outOffset = 0): void {
  const nb = x.length / QK_K;
  const L = new Int8Array(QK_K);
  const scales = new Float32Array(16);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < nb; i++) {
    const xb = i * QK_K;
    const o = outOffset + i * 210;
    let maxScale = 0, maxAbsScale = 0;
    for (let ib = 0; ib < 16; ib++) {
      const scale = makeQxQuants(16, 32, x, xb + 16 * ib, L, 16 * ib);
      scales[ib] = scale;
      const abs = Math.abs(scale);
      if (abs > maxAbsScale) { maxAbsScale = abs; maxScale = scale; }
    }
    out.fill(0, o, o + 210);
    if (maxAbsScale < GROUP_MAX_EPS) continue; // d = +0.0 is all-zero bits
    const iscale = F(-128 / maxScale);
    const dBits = f32ToF16(F(1 / iscale));
    dv.setUint16(o + 208, dBits, true);
    const sc = new Int8Array(out.buffer, out.byteOffset + o + 192, 16);
    for (let ib = 0; ib < 16; ib++) sc[ib] = Math.min(127, nearestInt(F(iscale * scales[ib]!)));
    const d0 = f16ToF32(dBits);
    for (let j = 0; j < 16; j++) {
      const d = F(d0 * sc[j]!);
      if (d === 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(F(x[xb + 16 * j + ii]! / d));
        L[16 * j + ii] = Math.max(-32, Math.min(31, l)) + 32;
      }
    }
    let ql = o, qh = o + 128;
    for (let j = 0; j < QK_K; j += 128) {
      for (let l = 0; l < 32; l++) {
        const a = L[j + l]!, b = L[j + l + 32]!, c = L[j + l + 64]!, e = L[j + l + 96]!;
        out[ql + l] = (a & 0xf) | ((c & 0xf) << 4);
        out[ql + l + 32] = (b & 0xf) | ((e & 0xf) << 4);
        out[qh + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
      }
      ql += 64;
      qh += 32;
    }
  }
}

/** `dequantize_row_q6_K`. */
export function dequantizeRowQ6K(src: Uint8Array, y: Float32Array): void {
  const nb = y.length / QK_K;
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let i = 0; i < nb; i++) {
    const o = i * 210;
    const d = f16ToF32(dv.getUint16(o + 208, true));
    let ql = o, qh = o + 128, sc = o + 192, yi = i * QK_K;
    for (let n = 0; n < QK_K; n += 128) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const hb = src[qh + l]!;
        const q1 = ((src[ql + l]! & 0xf) | (((hb >> 0) & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32]! & 0xf) | (((hb >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l]! >> 4) | (((hb >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32]! >> 4) | (((hb >> 6) & 3) << 4)) - 32;
        const s = (k: number): number => (src[sc + is + k]! << 24) >> 24; // i8
        y[yi + l] = F(F(d * s(0)) * q1);
        y[yi + l + 32] = F(F(d * s(2)) * q2);
        y[yi + l + 64] = F(F(d * s(4)) * q3);
        y[yi + l + 96] = F(F(d * s(6)) * q4);
      }
      yi += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

/**
 * The uniform grid shared by RTN, GPTQ, AWQ and every packer (ALGORITHMS.md §1).
 *
 * Rounding: ONE helper, round-half-to-even (`roundEven`), as PyTorch's torch.round,
 * so codes agree with the reference implementations on ties.
 * Scales are rounded to f16 (their storage dtype) BEFORE codes are computed, so the
 * quantizer and the packed file use the same grid.
 */
import { f16ToF32, f32ToF16 } from "../tensor/dtype.ts";

export function roundEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 up; on an exact tie pick the even neighbour.
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function toF16(x: number): number {
  return f16ToF32(f32ToF16(x));
}

export interface GridParams {
  /** f16-representable scale */
  scale: number;
  /** integer zero point in [0, maxq] */
  zero: number;
}

/**
 * GPTQ-style grid for one row/group given its min and max: 0 is always
 * representable; symmetric uses zero = (maxq + 1) / 2.
 */
export function gptqGrid(min: number, max: number, bits: number, sym: boolean): GridParams {
  const maxq = 2 ** bits - 1;
  let xmin = Math.min(min, 0);
  let xmax = Math.max(max, 0);
  if (sym) {
    xmax = Math.max(-xmin, xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) { xmin = -1; xmax = 1; }
  let scale = toF16((xmax - xmin) / maxq);
  if (scale === 0) scale = toF16(2 ** -24); // range below f16 resolution: smallest subnormal keeps codes finite
  const zero = sym ? (maxq + 1) / 2 : Math.min(maxq, Math.max(0, roundEven(-xmin / scale)));
  return { scale, zero };
}

/** q = clamp(round(x / s) + z, 0, maxq) */
export function quantizeValue(x: number, p: GridParams, maxq: number): number {
  const q = roundEven(x / p.scale) + p.zero;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

export function dequantizeValue(q: number, p: GridParams): number {
  return p.scale * (q - p.zero);
}

/** min and max of x[offset + i·stride] for i < n. */
export function minMax(x: Float32Array, offset: number, n: number, stride = 1): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = x[offset + i * stride]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/**
 * The GPTQ part of the native backend (native/src/gptq.h, gptq*.cc): the Hessian
 * accumulation (syrk), the damped inverse-Cholesky Hinv and the lazy-batch sweep, each
 * sync and async (a libuv worker; native-call.ts callNative). native.ts constructs
 * this with its addon (it stays the only importer of the .node file) and exposes the
 * calls as Backend methods; every argument is validated here.
 */
import { UsageError } from "../util/errors.ts";
import type { GptqKernelArgs, KernelCallOptions } from "./backend.ts";
import { callNative, checkF32, checkInt, checkNoOverlap, checkPerm, checkSquare, checkDisjoint, checkU8, describeArray } from "./native-call.ts";

/** The addon's GPTQ exports (native/src/addon.cc); ctl = [cancel, done, total] or null. */
export interface GptqAddon {
  /** sum[K, K] = beta·sum + alpha·xᵀx (native/src/gptq.h). */
  syrkAccumulate(x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number, beta: number): void;
  /** out = upper Cholesky factor of (h permuted, diagonal replaced)⁻¹; false = not positive definite. */
  gptqHinv(h: Float32Array | Float64Array, K: number, perm: Int32Array | null, diag: Float64Array, out: Float32Array): boolean;
  /** Lazy-batch GPTQ sweep; returns the loss. */
  gptqQuantize(
    w: Float32Array, perm: Int32Array | null, dead: Uint8Array | null, hinv: Float32Array, N: number, K: number,
    bits: number, groupSize: number, sym: boolean, colGroup: Int32Array | null,
    scales: Float32Array, zeros: Uint8Array, codes: Uint8Array, dequantized: Float32Array, blockSize: number, blockStartGrids: boolean,
  ): number;
  syrkAccumulateAsync(x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number, beta: number, ctl: Int32Array | null): Promise<void>;
  gptqHinvAsync(h: Float32Array | Float64Array, K: number, perm: Int32Array | null, diag: Float64Array, out: Float32Array, ctl: Int32Array | null): Promise<boolean>;
  gptqQuantizeAsync(
    w: Float32Array, perm: Int32Array | null, dead: Uint8Array | null, hinv: Float32Array, N: number, K: number,
    bits: number, groupSize: number, sym: boolean, colGroup: Int32Array | null,
    scales: Float32Array, zeros: Uint8Array, codes: Uint8Array, dequantized: Float32Array, blockSize: number, blockStartGrids: boolean,
    ctl: Int32Array | null,
  ): Promise<number>;
}

export class GptqKernels {
  readonly #addon: GptqAddon;
  constructor(addon: GptqAddon) {
    this.#addon = addon;
  }

  /** sum[K, K] = beta·sum + alpha · x[T, K]ᵀ · x, both triangles; sum may be f32 or f64. */
  syrkAccumulate(x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number, beta: number): void {
    checkSyrk("syrkAccumulate", x, T, K, sum, alpha, beta);
    if (T > 0) this.#addon.syrkAccumulate(x, T, K, sum, alpha, beta);
    else scaleSum(sum, K, beta);
  }

  /** syrkAccumulate on a worker thread (cancellable between output tiles). */
  async syrkAccumulateAsync(
    x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number, beta: number, opts: KernelCallOptions = {},
  ): Promise<void> {
    checkSyrk("syrkAccumulateAsync", x, T, K, sum, alpha, beta);
    if (T > 0) await callNative(opts, (ctl) => this.#addon.syrkAccumulateAsync(x, T, K, sum, alpha, beta, ctl));
    else scaleSum(sum, K, beta);
  }

  /** out = Hinv of h permuted (perm) with its diagonal replaced by diag; false = not positive definite. */
  gptqHinv(h: Float32Array | Float64Array, K: number, perm: Int32Array | null, diag: Float64Array, out: Float32Array): boolean {
    checkHinv("gptqHinv", h, K, perm, diag, out);
    return this.#addon.gptqHinv(h, K, perm, diag, out);
  }

  /** gptqHinv on a worker thread (cancellable between diagonal blocks). */
  async gptqHinvAsync(
    h: Float32Array | Float64Array, K: number, perm: Int32Array | null, diag: Float64Array, out: Float32Array, opts: KernelCallOptions = {},
  ): Promise<boolean> {
    checkHinv("gptqHinvAsync", h, K, perm, diag, out);
    return callNative(opts, (ctl) => this.#addon.gptqHinvAsync(h, K, perm, diag, out, ctl));
  }

  /** The lazy-batch GPTQ sweep (see GptqKernelArgs); returns the loss. */
  gptqQuantize(a: GptqKernelArgs): number {
    checkGptqArgs("gptqQuantize", a);
    return this.#addon.gptqQuantize(
      a.w, a.perm, a.dead, a.hinv, a.N, a.K, a.bits, a.groupSize, a.sym, a.colGroup, a.scales, a.zeros, a.codes, a.dequantized, a.blockSize,
      a.blockStartGrids === true,
    );
  }

  /** The sweep on a worker thread: cancellable between column blocks, progress in (task, block) units. */
  async gptqQuantizeAsync(a: GptqKernelArgs, opts: KernelCallOptions = {}): Promise<number> {
    checkGptqArgs("gptqQuantizeAsync", a);
    return callNative(opts, (ctl) => this.#addon.gptqQuantizeAsync(
      a.w, a.perm, a.dead, a.hinv, a.N, a.K, a.bits, a.groupSize, a.sym, a.colGroup, a.scales, a.zeros, a.codes, a.dequantized, a.blockSize,
      a.blockStartGrids === true, ctl,
    ));
  }
}

/** Bit widths the GPTQ kernel quantizes to (codes are bytes). */
const GPTQ_BITS = [1, 2, 3, 4, 5, 6, 7, 8];

function checkSyrk(op: string, x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number, beta: number): void {
  checkInt(op, "T", T, 0);
  checkInt(op, "K", K, 1);
  checkF32(op, "x", x, T * K, `x [T=${T}, K=${K}]`);
  checkSquare(op, "sum", sum, K);
  checkDisjoint(op, "sum", sum, "x", x);
  for (const [name, v] of [["alpha", alpha], ["beta", beta]] as const) {
    if (!Number.isFinite(v)) throw new UsageError(`${op}: ${name} must be finite`, { field: name, expected: "a finite number", found: String(v) });
  }
}

/** sum = beta·sum (syrk with T = 0). */
function scaleSum(sum: Float32Array | Float64Array, K: number, beta: number): void {
  if (beta !== 1) for (let i = 0; i < K * K; i++) sum[i] = beta === 0 ? 0 : beta * sum[i]!;
}

function checkHinv(op: string, h: Float32Array | Float64Array, K: number, perm: Int32Array | null, diag: Float64Array, out: Float32Array): void {
  checkInt(op, "K", K, 1);
  checkSquare(op, "h", h, K);
  checkF32(op, "out", out, K * K, `Hinv [K=${K}, K]`, true);
  checkDisjoint(op, "out", out, "h", h);
  checkPerm(op, perm, K);
  if (!(diag instanceof Float64Array) || diag.length !== K) {
    throw new UsageError(`${op}: diag must be a Float64Array of K elements`, { field: "diag", expected: `Float64Array [K=${K}]`, found: describeArray(diag) });
  }
}

function checkGptqArgs(op: string, a: GptqKernelArgs): void {
  const { N, K, groupSize: g } = a;
  checkInt(op, "N", N, 1);
  checkInt(op, "K", K, 1);
  checkInt(op, "groupSize", g, 1);
  checkInt(op, "blockSize", a.blockSize, 1);
  if (!GPTQ_BITS.includes(a.bits)) {
    throw new UsageError(`${op}: unsupported bit width`, { field: "bits", expected: "an integer in 1..8", found: String(a.bits) });
  }
  const G = Math.ceil(K / g);
  checkF32(op, "w", a.w, N * K, `W [N=${N}, K=${K}]`, true);
  checkF32(op, "hinv", a.hinv, K * K, `Hinv [K=${K}, K]`, true);
  checkF32(op, "scales", a.scales, N * G, `scales [N=${N}, G=${G}]`, true);
  checkU8(op, "zeros", a.zeros, N * G, `zeros [N=${N}, G=${G}]`);
  checkU8(op, "codes", a.codes, N * K, `codes [N=${N}, K=${K}]`);
  checkF32(op, "dequantized", a.dequantized, N * K, `dequantized [N=${N}, K=${K}]`, true);
  checkNoOverlap(op, a.dequantized, N * K, { w: [a.w, N * K], hinv: [a.hinv, K * K], scales: [a.scales, N * G] });
  checkNoOverlap(op, a.scales, N * G, { w: [a.w, N * K], hinv: [a.hinv, K * K] });
  checkPerm(op, a.perm, K);
  if (a.dead !== null) checkU8(op, "dead", a.dead, K, `dead [K=${K}]`);
  if (a.colGroup !== null) checkStaticGroups(op, a, G);
}

/** Static groups: colGroup [K] in 0..G−1, every given grid usable (scale > 0 and finite, zero ≤ maxq). */
function checkStaticGroups(op: string, a: GptqKernelArgs, G: number): void {
  const { colGroup, K, N } = a;
  if (!(colGroup instanceof Int32Array) || colGroup.length !== K) {
    throw new UsageError(`${op}: colGroup must be an Int32Array of K elements`, { field: "colGroup", expected: `Int32Array [K=${K}]`, found: describeArray(colGroup) });
  }
  for (let i = 0; i < K; i++) {
    const gi = colGroup[i]!;
    if (!(gi >= 0 && gi < G)) throw new UsageError(`${op}: colGroup entry out of range`, { field: `colGroup[${i}]`, expected: `0..${G - 1}`, found: String(gi) });
  }
  const maxq = 2 ** a.bits - 1;
  for (let i = 0; i < N * G; i++) {
    if (!(a.scales[i]! > 0 && Number.isFinite(a.scales[i]!)) || a.zeros[i]! > maxq) {
      throw new UsageError(`${op}: static grid ${i} is unusable`, {
        field: `scales[${i}], zeros[${i}]`, expected: `scale > 0 and finite, zero ≤ ${maxq}`, found: `${a.scales[i]}, ${a.zeros[i]}`,
      });
    }
  }
}

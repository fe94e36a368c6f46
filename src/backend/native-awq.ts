/**
 * The AWQ part of the native backend (native/src/awq.h): the grouped fake-quantization
 * that scores scale candidates and the per-layer clip search, on a libuv worker
 * (native-call.ts callNative), bit-identical to the TS path in src/methods/awq*.ts.
 * native.ts constructs this with its addon and exposes the calls as NativeBackend
 * methods; every argument is validated here.
 */
import { UsageError } from "../util/errors.ts";
import type { KernelCallOptions } from "./backend.ts";
import { callNative, checkF32, checkInt, checkNoOverlap } from "./native-call.ts";

/** The addon's AWQ exports (native/src/addon.cc); ctl = [cancel, done, total] or null. */
export interface AwqAddon {
  awqFakeQuantizeAsync(w: Float32Array, s: Float32Array | null, N: number, K: number, bits: number, g: number, out: Float32Array, ctl: Int32Array | null): Promise<void>;
  awqClipSearchAsync(w: Float32Array, x: Float32Array, N: number, K: number, T: number, bits: number, g: number, maxVal: Float32Array, ctl: Int32Array | null): Promise<void>;
}

export class AwqKernels {
  readonly #addon: AwqAddon;
  constructor(addon: AwqAddon) {
    this.#addon = addon;
  }

  /** out[N, K] = Q(w·diag(s))·diag(s)⁻¹ on the AWQ grid (s null: Q(w)); out may be w. Bit-identical to awq-grid.ts awqScaledFakeQuantize. */
  async awqFakeQuantize(
    w: Float32Array, s: Float32Array | null, N: number, K: number, bits: number, groupSize: number, out: Float32Array, opts: KernelCallOptions = {},
  ): Promise<void> {
    const op = "awqFakeQuantize";
    checkAwqShape(op, N, K, bits, groupSize);
    checkF32(op, "w", w, N * K, `W [N=${N}, K=${K}]`, true);
    checkF32(op, "out", out, N * K, `out [N=${N}, K=${K}]`, true);
    if (s !== null) checkF32(op, "s", s, K, `s [K=${K}]`, true);
    await callNative(opts, (ctl) => this.#addon.awqFakeQuantizeAsync(w, s, N, K, bits, groupSize, out, ctl));
  }

  /** maxVal [N, K/g] = the AWQ clip search of w [N, K] on x [T, K] (awqClipSearchLayer of awq-clip.ts, bit-identical). */
  async awqClipSearch(
    w: Float32Array, x: Float32Array, N: number, K: number, T: number, bits: number, groupSize: number, maxVal: Float32Array, opts: KernelCallOptions = {},
  ): Promise<void> {
    const op = "awqClipSearch";
    checkAwqShape(op, N, K, bits, groupSize);
    checkInt(op, "T", T, 1);
    checkF32(op, "w", w, N * K, `W [N=${N}, K=${K}]`, true);
    checkF32(op, "x", x, T * K, `x [T=${T}, K=${K}]`, true);
    checkF32(op, "maxVal", maxVal, N * (K / groupSize), `maxVal [N=${N}, G=${K / groupSize}]`, true);
    checkNoOverlap(op, maxVal, N * (K / groupSize), { w: [w, N * K], x: [x, T * K] });
    await callNative(opts, (ctl) => this.#addon.awqClipSearchAsync(w, x, N, K, T, bits, groupSize, maxVal, ctl));
  }
}

/** N, K ≥ 1, bits in 2..8, groupSize ≥ 1 dividing K. */
function checkAwqShape(op: string, N: number, K: number, bits: number, groupSize: number): void {
  checkInt(op, "N", N, 1);
  checkInt(op, "K", K, 1);
  checkInt(op, "groupSize", groupSize, 1);
  if (!(Number.isInteger(bits) && bits >= 2 && bits <= 8)) {
    throw new UsageError(`${op}: unsupported bit width`, { field: "bits", expected: "an integer in 2..8", found: String(bits) });
  }
  if (K % groupSize !== 0) {
    throw new UsageError(`${op}: groupSize must divide K`, { field: "groupSize", expected: `a divisor of K=${K}`, found: String(groupSize) });
  }
}

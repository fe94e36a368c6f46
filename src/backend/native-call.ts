/**
 * How the native backend calls the addon: `callNative` (cancellation and progress for
 * the async entry points, native/src/async.h) and the argument validators every
 * wrapper shares (native.ts, native-gptq.ts, native-awq.ts, native-packed.ts). The C++
 * side trusts its inputs, so each check turns a bad length or overlap into a
 * UsageError naming the argument instead of a crash.
 */
import { UsageError } from "../util/errors.ts";
import type { KernelCallOptions } from "./backend.ts";

/** How often a running async call's progress is read and reported (ms). */
export const PROGRESS_POLL_MS = 100;

/**
 * Runs one async addon call with cancellation and progress (the ctl words of
 * native/src/async.h): aborting `opts.signal` asks the kernel to stop at its next
 * work unit and the promise rejects with the signal's reason; `opts.onProgress`
 * is called every PROGRESS_POLL_MS with (done, total) units. Generic: any async
 * kernel entry point can go through it.
 */
export async function callNative<T>(opts: KernelCallOptions, start: (ctl: Int32Array) => Promise<T>): Promise<T> {
  const { signal, onProgress } = opts;
  signal?.throwIfAborted();
  const ctl = new Int32Array(3); // [cancel, done, total]
  const cancel = (): void => { ctl[0] = 1; };
  signal?.addEventListener("abort", cancel, { once: true });
  const timer = onProgress ? setInterval(() => { if (ctl[2]! > 0) onProgress(ctl[1]!, ctl[2]!); }, PROGRESS_POLL_MS) : null;
  try {
    return await start(ctl);
  } catch (e) {
    if ((e as { code?: unknown }).code === "E_CANCELLED" && signal?.aborted) throw signal.reason;
    throw e;
  } finally {
    if (timer) clearInterval(timer);
    signal?.removeEventListener("abort", cancel);
  }
}

// ---------------------------------------------------------------- validation

export function checkInt(op: string, name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new UsageError(`${op}: ${name} must be an integer ≥ ${min}`, { field: name, expected: `integer ≥ ${min}`, found: String(v) });
  }
}

/** `a` is a Float32Array holding at least (or, when exact, exactly) n elements. */
export function checkF32(op: string, name: string, a: unknown, n: number, shape: string, exact = false): void {
  if (!(a instanceof Float32Array)) {
    const found = a === null || a === undefined ? String(a) : (a as object).constructor?.name ?? typeof a;
    throw new UsageError(`${op}: ${name} must be a Float32Array`, { field: name, expected: `Float32Array ${shape}`, found });
  }
  if (exact ? a.length !== n : a.length < n) {
    throw new UsageError(`${op}: ${name} has the wrong length`, {
      field: name, expected: `${exact ? "" : "at least "}${n} elements for ${shape}`, found: `${a.length} elements`,
      hint: "check the shape arguments against the tensors passed",
    });
  }
}

/** The first n elements of `out` share no byte with the used part of any input. */
export function checkNoOverlap(op: string, out: Float32Array, n: number, inputs: Record<string, [Float32Array | Uint16Array, number]>): void {
  const o0 = out.byteOffset, o1 = o0 + 4 * n;
  for (const [name, [a, len]] of Object.entries(inputs)) {
    if (a.buffer !== out.buffer) continue;
    const a0 = a.byteOffset, a1 = a0 + a.BYTES_PER_ELEMENT * len;
    if (o0 < a1 && a0 < o1) {
      throw new UsageError(`${op}: out overlaps input ${name}`, {
        field: "out", expected: `memory disjoint from ${name}`, found: `bytes ${o0}..${o1} of the same buffer as ${name} (${a0}..${a1})`,
        hint: "the kernels read inputs while writing out: pass a separate output array",
      });
    }
  }
}

/** `a` is a Uint8Array of exactly n elements. */
export function checkU8(op: string, name: string, a: unknown, n: number, shape: string): void {
  if (!(a instanceof Uint8Array) || a.length !== n) {
    throw new UsageError(`${op}: ${name} must be a Uint8Array of ${n} elements`, { field: name, expected: `Uint8Array ${shape}`, found: describeArray(a) });
  }
}

/** A Float32Array or Float64Array of exactly K·K elements. */
export function checkSquare(op: string, name: string, a: unknown, K: number): void {
  if (!(a instanceof Float32Array || a instanceof Float64Array) || a.length !== K * K) {
    throw new UsageError(`${op}: ${name} must be a Float32Array or Float64Array of K·K elements`, {
      field: name, expected: `${K * K} elements for [K=${K}, K]`, found: describeArray(a),
    });
  }
}

/** The bytes of a and b do not overlap (the kernels read one while writing the other). */
export function checkDisjoint(op: string, aName: string, a: ArrayBufferView, bName: string, b: ArrayBufferView): void {
  if (a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength) {
    throw new UsageError(`${op}: ${aName} overlaps ${bName}`, {
      field: aName, expected: `memory disjoint from ${bName}`, found: "shared bytes", hint: `pass a separate ${aName} array`,
    });
  }
}

/** null, or an Int32Array holding each of 0..K−1 once (the kernels index with it). */
export function checkPerm(op: string, perm: unknown, K: number): void {
  if (perm === null) return;
  if (!(perm instanceof Int32Array) || perm.length !== K) {
    throw new UsageError(`${op}: perm must be null or an Int32Array of K elements`, { field: "perm", expected: `Int32Array [K=${K}]`, found: describeArray(perm) });
  }
  const seen = new Uint8Array(K);
  for (let i = 0; i < K; i++) {
    const p = perm[i]!;
    if (!(p >= 0 && p < K) || seen[p]) {
      throw new UsageError(`${op}: perm is not a permutation of 0..${K - 1}`, { field: `perm[${i}]`, expected: "each column exactly once", found: String(p) });
    }
    seen[p] = 1;
  }
}

export function describeArray(a: unknown): string {
  if (a === null || a === undefined) return String(a);
  const name = (a as object).constructor?.name ?? typeof a;
  return ArrayBuffer.isView(a) ? `${name} of ${(a as { length?: number }).length ?? "?"} elements` : name;
}

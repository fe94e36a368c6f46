/**
 * The native CPU backend: the ONLY importer of the C++ addon
 * (native/build/Release/quantize_llm.node, built from native/ by `npm install`).
 * Every argument is validated here; the C++ side trusts its inputs, so a bad
 * length becomes a UsageError naming the argument instead of a crash.
 *
 * The addon owns one thread pool per process (per worker thread): every
 * NativeBackend shares it, and `setThreads` resizes it for all of them.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { DependencyError, UsageError } from "../util/errors.ts";
import type { AttentionShape, Backend } from "./backend.ts";

/** SIMD levels the addon can be built with, fastest first. */
export type KernelLevel = "avx512" | "avx2" | "scalar";

/** The addon's exports, as native/src/addon.cc defines them. */
interface NativeAddon {
  /** y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias) into out; synchronous. */
  matmul(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias: Float32Array | null, out: Float32Array): void;
  attention(
    q: Float32Array, k: Float32Array, v: Float32Array,
    T: number, pos0: number, nHead: number, nKvHead: number, headDim: number, out: Float32Array,
  ): void;
  setThreads(n: number): void;
  getThreads(): number;
  /** Levels compiled in that this CPU runs, fastest first. */
  kernelLevels(): KernelLevel[];
  getKernelLevel(): KernelLevel;
  setKernelLevel(level: KernelLevel): void;
  /** GFLOP/s of an FMA-only loop on `threads` pool threads (benchmark probe). */
  fmaPeak(threads: number): number;
}

/** Where `npm run build:native` puts the addon. */
export const ADDON_FILE = fileURLToPath(new URL("../../native/build/Release/quantize_llm.node", import.meta.url));
const MAX_THREADS = 1024;

/** Loads the addon (from `file`, for tests), or explains how to build it. */
export function loadAddon(file: string = ADDON_FILE): NativeAddon {
  const require = createRequire(import.meta.url);
  try {
    return require(file) as NativeAddon;
  } catch (e) {
    throw new DependencyError("the native CPU backend (C++ addon) could not be loaded", {
      file,
      expected: "a Node-API addon built from native/ for this Node version and CPU",
      found: e instanceof Error ? (e.message.split("\n")[0] ?? e.message) : String(e),
      hint: "run `npm run build:native` in the quantize-llm folder (needs g++, make and python3), or use --backend ref",
    });
  }
}

export class NativeBackend implements Backend {
  readonly name = "native" as const;
  readonly #addon: NativeAddon;

  constructor(addon: NativeAddon) {
    this.#addon = addon;
  }

  /** Threads of the (process-wide) pool, the calling thread included. */
  get threads(): number {
    return this.#addon.getThreads();
  }

  setThreads(n: number): void {
    checkInt("setThreads", "threads", n, 1);
    if (n > MAX_THREADS) {
      throw new UsageError("setThreads: too many threads", { field: "threads", expected: `at most ${MAX_THREADS}`, found: String(n) });
    }
    this.#addon.setThreads(n);
  }

  /** Kernel levels compiled in that this CPU runs, fastest first (tests, benchmarks). */
  kernelLevels(): KernelLevel[] {
    return this.#addon.kernelLevels();
  }

  get kernelLevel(): KernelLevel {
    return this.#addon.getKernelLevel();
  }

  /** Forces one SIMD level for every later call in this process (tests, benchmarks). */
  setKernelLevel(level: KernelLevel): void {
    const levels = this.kernelLevels();
    if (!levels.includes(level)) {
      throw new UsageError(`setKernelLevel: level "${level}" is not available here`, {
        field: "level", expected: `one of ${levels.join(", ")}`, found: String(level),
        hint: "the CPU lacks the instructions, or the addon was built without them",
      });
    }
    this.#addon.setKernelLevel(level);
  }

  /** GFLOP/s of an FMA-only loop on `threads` (≤ this.threads) pool threads, at the current level. */
  fmaPeak(threads = 1): number {
    checkInt("fmaPeak", "threads", threads, 1);
    if (threads > this.threads) {
      throw new UsageError("fmaPeak: more threads than the pool has", {
        field: "threads", expected: `at most ${this.threads}`, found: String(threads), hint: "call setThreads first",
      });
    }
    return this.#addon.fmaPeak(threads);
  }

  matmul(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array): Float32Array {
    const op = "matmul";
    checkInt(op, "M", M, 0);
    checkInt(op, "K", K, 1);
    checkInt(op, "N", N, 1);
    checkF32(op, "x", x, M * K, `x [M=${M}, K=${K}]`);
    checkF32(op, "w", w, N * K, `W [N=${N}, K=${K}]`, true);
    if (bias !== undefined) checkF32(op, "bias", bias, N, `bias [N=${N}]`, true);
    const y = out ?? new Float32Array(M * N);
    if (out !== undefined) {
      checkF32(op, "out", out, M * N, `out [M=${M}, N=${N}]`);
      checkNoOverlap(op, out, M * N, { x: [x, M * K], w: [w, N * K], ...(bias ? { bias: [bias, N] } : {}) });
    }
    if (M > 0) this.#addon.matmul(x, w, M, K, N, bias ?? null, y);
    return y;
  }

  attention(q: Float32Array, k: Float32Array, v: Float32Array, shape: AttentionShape, out: Float32Array): void {
    const op = "attention";
    const { T, pos0, nHead, nKvHead, headDim: d } = shape;
    checkInt(op, "T", T, 0);
    checkInt(op, "pos0", pos0, 0);
    checkInt(op, "nHead", nHead, 1);
    checkInt(op, "nKvHead", nKvHead, 1);
    checkInt(op, "headDim", d, 1);
    if (nHead % nKvHead !== 0) {
      throw new UsageError(`${op}: nHead must be a multiple of nKvHead`, {
        field: "nKvHead", expected: `a divisor of nHead=${nHead}`, found: String(nKvHead),
      });
    }
    const qLen = T * nHead * d, kvLen = (pos0 + T) * nKvHead * d;
    checkF32(op, "q", q, qLen, `q [T=${T}, nHead·headDim=${nHead * d}]`);
    checkF32(op, "k", k, kvLen, `k [pos0+T=${pos0 + T}, nKvHead·headDim=${nKvHead * d}]`);
    checkF32(op, "v", v, kvLen, `v [pos0+T=${pos0 + T}, nKvHead·headDim=${nKvHead * d}]`);
    checkF32(op, "out", out, qLen, `out [T=${T}, nHead·headDim=${nHead * d}]`);
    checkNoOverlap(op, out, qLen, { q: [q, qLen], k: [k, kvLen], v: [v, kvLen] });
    if (T > 0) this.#addon.attention(q, k, v, T, pos0, nHead, nKvHead, d, out);
  }
}

/**
 * Loads the addon and sizes its pool. Throws DependencyError (with the command
 * that fixes it) when the addon is missing or does not load.
 */
export function createNativeBackend(opts: { threads?: number } = {}): NativeBackend {
  const backend = new NativeBackend(loadAddon());
  if (opts.threads !== undefined) backend.setThreads(opts.threads);
  return backend;
}

// ---------------------------------------------------------------- validation

function checkInt(op: string, name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new UsageError(`${op}: ${name} must be an integer ≥ ${min}`, { field: name, expected: `integer ≥ ${min}`, found: String(v) });
  }
}

/** `a` is a Float32Array holding at least (or, when exact, exactly) n elements. */
function checkF32(op: string, name: string, a: unknown, n: number, shape: string, exact = false): void {
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
function checkNoOverlap(op: string, out: Float32Array, n: number, inputs: Record<string, [Float32Array, number]>): void {
  const o0 = out.byteOffset, o1 = o0 + 4 * n;
  for (const [name, [a, len]] of Object.entries(inputs)) {
    if (a.buffer !== out.buffer) continue;
    const a0 = a.byteOffset, a1 = a0 + 4 * len;
    if (o0 < a1 && a0 < o1) {
      throw new UsageError(`${op}: out overlaps input ${name}`, {
        field: "out", expected: `memory disjoint from ${name}`, found: `bytes ${o0}..${o1} of the same buffer as ${name} (${a0}..${a1})`,
        hint: "the kernels read inputs while writing out: pass a separate output array",
      });
    }
  }
}

/**
 * The native CPU backend: the ONLY importer of the C++ addon
 * (native/build/Release/quantize_llm.node, built from native/ by `npm install`).
 * Every argument is validated here; the C++ side trusts its inputs, so a bad
 * length becomes a UsageError naming the argument instead of a crash.
 *
 * The addon owns one thread pool per process (per worker thread): every
 * NativeBackend shares it, and `setThreads` resizes it for all of them.
 *
 * Why one file of ~550 lines: it is the single typed boundary to the addon (the
 * STYLE.md rule "exactly one importer"), one validated wrapper per native entry
 * point (sync and async). Validators for the packed and int8 entry points already
 * live beside it (native-packed.ts, native-int8.ts); splitting the wrappers
 * themselves by kernel family is the next step when more are added.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { DependencyError, UsageError } from "../util/errors.ts";
import { matmulPackedSum, PackedSum, type AttentionShape, type Backend, type GptqKernelArgs, type KernelCallOptions, type PackInt8Args, type SourceBlocks } from "./backend.ts";
import {
  PackedWeight, packedOrThrow, validateMatmulPacked, validatePack16, validatePackQ4, validatePackQ8, validateRepack,
  type MatmulPackedOptions, type NativePackedAddon, type Pack16Args, type PackQ4Args, type PackQ8Args,
} from "./native-packed.ts";

export { PackedWeight } from "./native-packed.ts";
export type { MatmulPackedOptions, Pack16Args, PackedLayoutName, PackQ4Args, PackQ8Args } from "./native-packed.ts";
import { Int8Kernels, Int8PackedWeight, type Int8Addon } from "./native-int8.ts";
import { NativeWeightKernels, type NativeConvertAddon } from "./native-convert.ts";

/** SIMD levels the addon can be built with, fastest first. */
export type KernelLevel = "avx512" | "avx2" | "scalar";

/** The addon's exports, as native/src/addon.cc defines them. */
interface NativeAddon extends NativePackedAddon, Int8Addon, NativeConvertAddon {
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
  // The same calls on a libuv worker thread (native/src/async.h); ctl = [cancel, done, total] or null.
  matmulAsync(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias: Float32Array | null, out: Float32Array, ctl: Int32Array | null): Promise<void>;
  syrkAccumulateAsync(x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number, beta: number, ctl: Int32Array | null): Promise<void>;
  gptqHinvAsync(h: Float32Array | Float64Array, K: number, perm: Int32Array | null, diag: Float64Array, out: Float32Array, ctl: Int32Array | null): Promise<boolean>;
  gptqQuantizeAsync(
    w: Float32Array, perm: Int32Array | null, dead: Uint8Array | null, hinv: Float32Array, N: number, K: number,
    bits: number, groupSize: number, sym: boolean, colGroup: Int32Array | null,
    scales: Float32Array, zeros: Uint8Array, codes: Uint8Array, dequantized: Float32Array, blockSize: number, blockStartGrids: boolean,
    ctl: Int32Array | null,
  ): Promise<number>;
  awqFakeQuantizeAsync(w: Float32Array, s: Float32Array | null, N: number, K: number, bits: number, g: number, out: Float32Array, ctl: Int32Array | null): Promise<void>;
  awqClipSearchAsync(w: Float32Array, x: Float32Array, N: number, K: number, T: number, bits: number, g: number, maxVal: Float32Array, ctl: Int32Array | null): Promise<void>;
}

/** How often a running async call's progress is read and reported (ms). */
const PROGRESS_POLL_MS = 100;

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
  /** LLM.int8() kernels (packed int8 weights, outlier decomposition): native-int8.ts. */
  readonly int8: Int8Kernels;
  /** Per-weight conversions (RTN, GGUF export, 16-bit decode): native-convert.ts, native/src/convert.h; absent in an addon built before them. */
  readonly weights: NativeWeightKernels | undefined;

  constructor(addon: NativeAddon) {
    this.#addon = addon;
    this.int8 = new Int8Kernels(addon);
    this.weights = typeof addon.convertRows === "function" ? new NativeWeightKernels(addon) : undefined;
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

  matmul(x: Float32Array, w: Float32Array | PackedWeight | Int8PackedWeight | PackedSum, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array): Float32Array {
    if (w instanceof Int8PackedWeight) return this.int8.matmul(x, w, M, bias, out).y; // LLM.int8(): per-token int8 + outlier columns
    if (w instanceof PackedWeight || w instanceof PackedSum) return this.matmulPacked(x, w, M, bias, out); // nn/ passes packed linears here (int8 activations, the default)
    const y = checkMatmul("matmul", x, w, M, K, N, bias, out);
    if (M > 0) this.#addon.matmul(x, w, M, K, N, bias ?? null, y);
    return y;
  }

  /** matmul on a worker thread, for big GEMMs (≳ 1 ms): the JS thread stays free; same contract. */
  async matmulAsync(
    x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array, opts: KernelCallOptions = {},
  ): Promise<Float32Array> {
    const y = checkMatmul("matmulAsync", x, w, M, K, N, bias, out);
    if (M > 0) await callNative(opts, (ctl) => this.#addon.matmulAsync(x, w, M, K, N, bias ?? null, y, ctl));
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

  // ---------------------------------------------------------------- packed weights (native-packed.ts, native/LAYOUTS.md)

  /** int4 weights, w = scales·codes + mins (or scales·(codes − 8) when mins is null), into the q4x16 layout. */
  packQ4(a: PackQ4Args): PackedWeight {
    validatePackQ4(a);
    const info = this.#addon.packQ4(a.codes, a.scales, a.mins, a.N, a.K, a.groupSize, a.perm);
    return new PackedWeight("q4x16", packedOrThrow("packQ4", info, a.N, a.K), (h) => this.#addon.packedFree(h));
  }

  /** int8 weights, w = scales·codes, into the q8x16 layout. */
  packQ8(a: PackQ8Args): PackedWeight {
    validatePackQ8(a);
    const info = this.#addon.packQ8(a.codes, a.scales, a.N, a.K, a.groupSize, a.perm);
    return new PackedWeight("q8x16", packedOrThrow("packQ8", info, a.N, a.K), (h) => this.#addon.packedFree(h));
  }

  /** f16 / bf16 weights into the f16x16 / bf16x16 layout. */
  pack16(a: Pack16Args): PackedWeight {
    validatePack16(a);
    const info = this.#addon.pack16(a.data, a.dtype === "bf16", a.N, a.K);
    return new PackedWeight(a.dtype === "bf16" ? "bf16x16" : "f16x16", packedOrThrow("pack16", info, a.N, a.K), (h) => this.#addon.packedFree(h));
  }

  /**
   * Stored GPTQ / AWQ / GGUF bytes straight into the q4x16 / q8x16 layout (native/src/packed_repack.cc,
   * on the pool): the same bytes packQ4 / packQ8 build from the canonical form. Null when the source
   * is not one the repacker reads (8-bit GPTQ zeros other than 128: two planes, canonical.ts).
   */
  repack(s: SourceBlocks): PackedWeight | null {
    const { source, g, q8 } = validateRepack(s);
    const r = s.kind === "gguf"
      ? this.#addon.repack(source, s.bytes, null, null, null, s.rows, s.N, s.K, g, 0)
      : this.#addon.repack(source, s.qweight, s.qzeros, s.scales, s.kind === "gptq" ? s.perm : null, null, s.N, s.K, g, s.kind === "gptq" ? s.zeroAdd : 0);
    if (Array.isArray(r)) {
      const [status, index] = r;
      if (status === 2) return null;
      if (status === 3 || status === 4) {
        const name = status === 3 ? "scales" : "mins";
        throw new UsageError(`repack: ${name} holds a non-finite value`, { field: `${name}[${index}]`, expected: "a finite number", found: "NaN or ±Infinity" });
      }
      packedOrThrow("repack", null, s.N, s.K);
      throw new Error("unreachable");
    }
    return new PackedWeight(q8 ? "q8x16" : "q4x16", r, (h) => this.#addon.packedFree(h));
  }

  /** A copy of a packed weight's layout bytes (tests hold the repackers equal to the packers with it). */
  packedBytes(w: PackedWeight): Uint8Array {
    return this.#addon.packedBytes(PackedWeight.handleOf(w, "packedBytes"));
  }

  /** LLM.int8() weights (bitsandbytes CB/SCB) with their outlier rule: native-int8.ts, native/src/llm_int8*.cc. */
  packInt8(a: PackInt8Args): Int8PackedWeight {
    return this.int8.pack(a, { threshold: a.threshold, staticCols: a.staticCols });
  }

  /**
   * y[M, N] = x[M, K] · Wᵀ (+ bias[N]) over a packed W; x is in the ORIGINAL column
   * order (an act-order perm is applied inside). Synchronous: decode-sized calls take
   * well under a millisecond, where an async hop would cost more than the call;
   * prefill-sized calls should use matmulPackedAsync.
   */
  matmulPacked(x: Float32Array, w: PackedWeight | Int8PackedWeight | PackedSum, M: number, bias?: Float32Array, out?: Float32Array, opts: MatmulPackedOptions = {}): Float32Array {
    // LLM.int8() weights have their own activation rule (per token, outlier columns in f32); `activations` does not apply.
    if (w instanceof Int8PackedWeight) return this.int8.matmul(x, w, M, bias, out).y;
    if (w instanceof PackedSum) return matmulPackedSum(w, M, bias, out, (p, b, o) => this.matmulPacked(x, p as PackedWeight, M, b, o, opts));
    const { y, f32Acts } = validateMatmulPacked(x, w, M, bias, out, opts);
    const handle = PackedWeight.handleOf(w, "matmulPacked");
    if (M > 0) this.#addon.matmulPacked(x, handle, M, bias ?? null, y, f32Acts);
    return y;
  }

  /**
   * matmulPacked off the JS thread, for prefill-sized calls (M = 512 on a 4096² matrix
   * takes tens of ms). `w` stays alive until the Promise settles; calls are
   * serialised with every other native call (async.h's CallGate).
   */
  async matmulPackedAsync(
    x: Float32Array, w: PackedWeight, M: number, bias?: Float32Array, out?: Float32Array, opts: MatmulPackedOptions & KernelCallOptions = {},
  ): Promise<Float32Array> {
    const { y, f32Acts } = validateMatmulPacked(x, w, M, bias, out, opts);
    if (M > 0) {
      await PackedWeight.using(w, "matmulPackedAsync", (handle) =>
        callNative(opts, (ctl) => this.#addon.matmulPackedAsync(x, handle, M, bias ?? null, y, f32Acts, ctl)));
    }
    return y;
  }

  /**
   * Benchmark probe: GB/s of each of `reps` streaming-read passes over `bytes` of
   * memory allocated like packed weights, on `threads` (≤ this.threads) pool threads.
   */
  readBandwidth(bytes: number, threads: number, reps: number): Float64Array {
    checkInt("readBandwidth", "bytes", bytes, 1 << 20);
    checkInt("readBandwidth", "threads", threads, 1);
    checkInt("readBandwidth", "reps", reps, 1);
    if (threads > this.threads) {
      throw new UsageError("readBandwidth: more threads than the pool has", {
        field: "threads", expected: `at most ${this.threads}`, found: String(threads), hint: "call setThreads first",
      });
    }
    return this.#addon.readBandwidth(bytes, threads, reps);
  }

  // ---------------------------------------------------------------- GPTQ kernels (native/src/gptq.h)

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

  // ---------------------------------------------------------------- AWQ kernels (native/src/awq.h)

  /** out[N, K] = Q(w·diag(s))·diag(s)⁻¹ on the AWQ grid (s null: Q(w)); out may be w. Bit-identical to awq.ts. */
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

  /** maxVal [N, K/g] = the AWQ clip search of w [N, K] on x [T, K] (awqClipSearchLayer of awq.ts, bit-identical). */
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

/** Bit widths the GPTQ kernel quantizes to (codes are bytes). */
const GPTQ_BITS = [1, 2, 3, 4, 5, 6, 7, 8];

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

/** Checks matmul's arguments; returns the output array (out, or a new one). */
function checkMatmul(op: string, x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array): Float32Array {
  checkInt(op, "M", M, 0);
  checkInt(op, "K", K, 1);
  checkInt(op, "N", N, 1);
  checkF32(op, "x", x, M * K, `x [M=${M}, K=${K}]`);
  checkF32(op, "w", w, N * K, `W [N=${N}, K=${K}]`, true);
  if (bias !== undefined) checkF32(op, "bias", bias, N, `bias [N=${N}]`, true);
  if (out === undefined) return new Float32Array(M * N);
  checkF32(op, "out", out, M * N, `out [M=${M}, N=${N}]`);
  checkNoOverlap(op, out, M * N, { x: [x, M * K], w: [w, N * K], ...(bias ? { bias: [bias, N] } : {}) });
  return out;
}

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

/** `a` is a Uint8Array of exactly n elements. */
function checkU8(op: string, name: string, a: unknown, n: number, shape: string): void {
  if (!(a instanceof Uint8Array) || a.length !== n) {
    throw new UsageError(`${op}: ${name} must be a Uint8Array of ${n} elements`, { field: name, expected: `Uint8Array ${shape}`, found: describeArray(a) });
  }
}

/** A Float32Array or Float64Array of exactly K·K elements. */
function checkSquare(op: string, name: string, a: unknown, K: number): void {
  if (!(a instanceof Float32Array || a instanceof Float64Array) || a.length !== K * K) {
    throw new UsageError(`${op}: ${name} must be a Float32Array or Float64Array of K·K elements`, {
      field: name, expected: `${K * K} elements for [K=${K}, K]`, found: describeArray(a),
    });
  }
}

/** The bytes of a and b do not overlap (the kernels read one while writing the other). */
function checkDisjoint(op: string, aName: string, a: ArrayBufferView, bName: string, b: ArrayBufferView): void {
  if (a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength) {
    throw new UsageError(`${op}: ${aName} overlaps ${bName}`, {
      field: aName, expected: `memory disjoint from ${bName}`, found: "shared bytes", hint: `pass a separate ${aName} array`,
    });
  }
}

/** null, or an Int32Array holding each of 0..K−1 once (the kernels index with it). */
function checkPerm(op: string, perm: unknown, K: number): void {
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

function describeArray(a: unknown): string {
  if (a === null || a === undefined) return String(a);
  const name = (a as object).constructor?.name ?? typeof a;
  return ArrayBuffer.isView(a) ? `${name} of ${(a as { length?: number }).length ?? "?"} elements` : name;
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

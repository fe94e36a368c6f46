/**
 * The native CPU backend: the ONLY importer of the C++ addon
 * (native/build/Release/quantize_llm.node, built from native/ by `npm install`).
 * Every argument is validated before it reaches the addon (here or in the family
 * file below); the C++ side trusts its inputs, so a bad length becomes a UsageError
 * naming the argument instead of a crash.
 *
 * The addon owns one thread pool per process (per worker thread): every
 * NativeBackend shares it, and `setThreads` resizes it for all of them.
 *
 * It is the single typed boundary to the addon (the STYLE.md rule "exactly one
 * importer"): this file loads it and holds the f32 matmul / attention / packed-weight
 * wrappers; each kernel family's wrappers and validators live beside it and get the
 * addon from here: native-gptq.ts (syrk, Hinv, sweep), native-awq.ts (fake-quant,
 * clip search), native-int8.ts (LLM.int8()), native-packed.ts (packed layouts),
 * native-convert.ts (per-weight conversions); native-call.ts holds callNative and
 * the shared argument checks. A new kernel family gets its own native-<family>.ts.
 *
 * ~600 lines: the NativeBackend class itself (every Backend method, including the decode
 * step's swiglu / fuse / matmulMany, which dispatch between the f32 and packed paths and
 * so need the class's private addon handle, and recordStep, whose recorder those methods
 * feed: native-graph.ts) plus the addon's TypeScript type, its export check and the prefetch-hint handles (off by default); the next
 * family to arrive moves the fused-decode wrappers out with it.
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { DependencyError, UsageError } from "../util/errors.ts";
import {
  KEY_BLOCK, matmulPackedSum, PackedSum, type AttentionShape, type Backend, type KvRows, type GptqKernelArgs, type KernelCallOptions, type LinearWeight, type ManyPart, type MappedFile, type PackInt8Args,
  type SourceBlocks, type View16Args,
} from "./backend.ts";
import {
  FusedPacked, NativeMappedFile, PackedWeight, packedOrThrow, validateMatmulPacked, validatePack16, validatePackQ4, validatePackQ8, validateRepack, validateView16,
  type MatmulPackedOptions, type NativePackedAddon, type Pack16Args, type PackQ4Args, type PackQ8Args,
} from "./native-packed.ts";

export { PackedWeight } from "./native-packed.ts";
export type { MatmulPackedOptions, Pack16Args, PackedLayoutName, PackQ4Args, PackQ8Args } from "./native-packed.ts";
import { Int8Kernels, Int8PackedWeight, type Int8Addon } from "./native-int8.ts";
import { NativeWeightKernels, type NativeConvertAddon } from "./native-convert.ts";
import { GptqKernels, type GptqAddon } from "./native-gptq.ts";
import { AwqKernels, type AwqAddon } from "./native-awq.ts";
import { callNative, checkF32, checkInt, checkNoOverlap, describeArray } from "./native-call.ts";
import { ElementwiseKernels, type ElementwiseAddon } from "./native-elementwise.ts";
import { OpKind, StepRecorder, type GraphAddon } from "./native-graph.ts";
import type { StepPlan } from "./backend.ts";

export { callNative } from "./native-call.ts";

/** SIMD levels the addon can be built with, fastest first. */
/** "amx": the avx512 level with the AMX-INT8 packed GEMM for prefill (native/src/packed_amx.cc). */
export type KernelLevel = "amx" | "avx512" | "avx2" | "scalar";

/** The addon's exports, as native/src/addon.cc defines them. */
interface NativeAddon extends NativePackedAddon, Int8Addon, NativeConvertAddon, GptqAddon, AwqAddon, Partial<ElementwiseAddon>, Partial<GraphAddon> {
  /** y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias) into out; synchronous. */
  matmul(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias: Float32Array | null, out: Float32Array): void;
  /** k, v: both Float32Array, or both Uint16Array (f16 bits). */
  attention(
    q: Float32Array, k: KvRows, v: KvRows,
    T: number, pos0: number, nHead: number, nKvHead: number, headDim: number, out: Float32Array,
    /** packed handles the next calls read, prefetched during the call (native/src/prefetch.h), or null */
    hint: unknown[] | null,
    /** k: an f16 cache's keys in blocks of 32 positions (AttentionShape.keyBlocks); an addon before them ignores it */
    keyBlocks?: boolean,
  ): void;
  /** The ranges a hint of these handles prefetches: [handle index, byte offset, bytes] each (tests; prefetch.h). */
  prefetchPlan?(handles: unknown[], threads: number, maxBytes: number): Float64Array;
  /** The decode split's claims, 8 values per row group (tests; native/src/packed.h spanSplitClaims). */
  spanSplitClaims?(partRg: Float64Array, partN: Float64Array, shares: number, ns: number, order: Int32Array | null): Float64Array;
  /** g[i] = silu(g[i])·u[i] for i < n (native/src/elementwise.cc). */
  swiglu(g: Float32Array, u: Float32Array, n: number): void;
  setThreads(n: number): void;
  getThreads(): number;
  /** Levels compiled in that this CPU runs, fastest first. */
  kernelLevels(): KernelLevel[];
  getKernelLevel(): KernelLevel;
  setKernelLevel(level: KernelLevel): void;
  /** GFLOP/s of an FMA-only loop on `threads` pool threads (benchmark probe). */
  fmaPeak(threads: number): number;
  /** matmul on a libuv worker thread (native/src/async.h); ctl = [cancel, done, total] or null. */
  matmulAsync(x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias: Float32Array | null, out: Float32Array, ctl: Int32Array | null): Promise<void>;
}

/** Where `npm run build:native` puts the addon. */
export const ADDON_FILE = fileURLToPath(new URL("../../native/build/Release/quantize_llm.node", import.meta.url));
const MAX_THREADS = 1024;
const BUILD_HINT = "run `npm run build:native` in the quantize-llm folder (needs g++, make and python3), or use --backend ref";

/**
 * Every export of NativeAddon (the Record's keys must match the interface's, so tsc keeps
 * the two in step): "required" ones must be functions on the loaded module; "optional" ones
 * (the per-weight conversions, whose absence NativeBackend.weights reports) may be absent.
 */
const ADDON_EXPORTS: Readonly<Record<keyof NativeAddon, "required" | "optional">> = {
  matmul: "required", attention: "required", swiglu: "required", setThreads: "required", getThreads: "required",
  kernelLevels: "required", getKernelLevel: "required", setKernelLevel: "required", fmaPeak: "required", matmulAsync: "required",
  packQ4: "required", packQ8: "required", pack16: "required", packedFree: "required", repack: "required", packedBytes: "required",
  mapFile: "required", mapRelease: "required", view16: "required", matmulPacked: "required", packedConcat: "required",
  packedView: "required", matmulPackedParts: "required", readBandwidth: "required", packedKernelLevel: "required", matmulPackedAsync: "required",
  int8Pack: "required", int8Unpack: "required", int8Bytes: "required", int8Dispose: "required", int8Levels: "required",
  int8Matmul: "required", int8Concat: "required", int8MatmulParts: "required",
  syrkAccumulate: "required", gptqHinv: "required", gptqQuantize: "required", syrkAccumulateAsync: "required",
  gptqHinvAsync: "required", gptqQuantizeAsync: "required", awqFakeQuantizeAsync: "required", awqClipSearchAsync: "required",
  convertRows: "optional", ggmlQuantizeRows: "optional", rtnQuantize: "optional", gptqPackCodes: "optional",
  rmsNorm: "optional", rope: "optional", add: "optional", toF16: "optional", toF16Keys: "optional", argmax: "optional", graphBuild: "optional", graphRun: "optional", // an older build loads (eval/decode-ab.ts); nn/ then runs these in TS
  prefetchPlan: "optional", // tests only: an addon built before the hints still loads (eval/decode-ab.ts against older builds)
  spanSplitClaims: "optional", // tests only, likewise
};

/** One row group claimed by the decode split (NativeBackend.spanSplitClaims). */
export interface SpanClaimRow { role: number; share: number; step: number; back: boolean; rg: number; y: number; valid: number; ldy: number }

/**
 * The loaded module as a NativeAddon, or a DependencyError naming `file` and the required
 * exports it lacks: an addon built from older sources (a pull without `npm run build:native`)
 * otherwise fails later as "x.mapFile is not a function".
 */
export function checkAddon(mod: unknown, file: string): NativeAddon {
  const m = (typeof mod === "object" || typeof mod === "function") && mod !== null ? (mod as Record<string, unknown>) : {};
  const missing = Object.entries(ADDON_EXPORTS).filter(([k, need]) => need === "required" && typeof m[k] !== "function").map(([k]) => k);
  if (missing.length > 0) {
    throw new DependencyError("the native CPU backend (C++ addon) is out of date: it lacks exports this version calls", {
      file,
      expected: `functions ${missing.join(", ")}`,
      found: `an addon without ${missing.length === 1 ? "it" : `these ${missing.length}`} (built from older sources)`,
      hint: BUILD_HINT,
    });
  }
  return mod as NativeAddon;
}

/** Loads the addon (from `file`, for tests) and checks its exports, or explains how to build it. */
export function loadAddon(file: string = ADDON_FILE): NativeAddon {
  const require = createRequire(import.meta.url);
  let mod: unknown;
  try {
    mod = require(file);
  } catch (e) {
    throw new DependencyError("the native CPU backend (C++ addon) could not be loaded", {
      file,
      expected: "a Node-API addon built from native/ for this Node version and CPU",
      found: e instanceof Error ? (e.message.split("\n")[0] ?? e.message) : String(e),
      hint: BUILD_HINT,
    });
  }
  return checkAddon(mod, file);
}

export class NativeBackend implements Backend {
  readonly name = "native" as const;
  readonly #addon: NativeAddon;
  readonly #gptq: GptqKernels;
  readonly #awq: AwqKernels;
  /** LLM.int8() kernels (packed int8 weights, outlier decomposition): native-int8.ts. */
  readonly int8: Int8Kernels;
  /** Per-weight conversions (RTN, GGUF export, 16-bit decode): native-convert.ts, native/src/convert.h; absent in an addon built before them. */
  readonly weights: NativeWeightKernels | undefined;
  /**
   * The forward's elementwise ops (native-elementwise.ts; Backend.rmsNorm etc.): present when the
   * addon has them, so that an addon built before them still runs (nn/ then uses the TS code).
   */
  readonly rmsNorm: ElementwiseKernels["rmsNorm"] | undefined;
  readonly rope: ElementwiseKernels["rope"] | undefined;
  readonly add: ElementwiseKernels["add"] | undefined;
  readonly toF16: ElementwiseKernels["toF16"] | undefined;
  /** The blocked key store (Backend.toF16Keys): absent in an addon built before the blocked key cache. */
  readonly toF16Keys: ElementwiseKernels["toF16Keys"] | undefined;
  /**
   * Whether Model.newCache makes f16 caches with blocked keys (Backend.keyBlocks): when the addon
   * has toF16Keys, unless QLLM_KEY_BLOCKS=0 (A/B of the two layouts in one build).
   */
  readonly keyBlocks: boolean;
  readonly argmax: ElementwiseKernels["argmax"] | undefined;

  /** The step being recorded (recordStep), or null: every capturable call then adds a descriptor instead of running. */
  #rec: StepRecorder | null = null;
  readonly #ew: ElementwiseKernels | null;

  constructor(addon: NativeAddon) {
    this.#addon = addon;
    this.#gptq = new GptqKernels(addon);
    this.#awq = new AwqKernels(addon);
    this.int8 = new Int8Kernels(addon);
    this.weights = typeof addon.convertRows === "function" ? new NativeWeightKernels(addon) : undefined;
    const ew = addon.rmsNorm && addon.rope && addon.add && addon.toF16 ? new ElementwiseKernels(addon as ElementwiseAddon) : null;
    this.#ew = ew;
    this.rmsNorm = ew ? ew.rmsNorm.bind(ew) : undefined;
    this.rope = ew ? ew.rope.bind(ew) : undefined;
    this.add = ew ? ew.add.bind(ew) : undefined;
    this.toF16 = ew ? ew.toF16.bind(ew) : undefined;
    this.toF16Keys = ew && addon.toF16Keys ? ew.toF16Keys.bind(ew) : undefined;
    this.keyBlocks = this.toF16Keys !== undefined && process.env.QLLM_KEY_BLOCKS !== "0";
    this.argmax = ew && addon.argmax ? ew.argmax.bind(ew) : undefined;
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
    if (w instanceof Int8PackedWeight) { this.#rec?.fail("LLM.int8() weights"); return this.int8.matmul(x, w, M, bias, out).y; } // LLM.int8(): per-token int8 + outlier columns
    if (w instanceof PackedWeight || w instanceof PackedSum) return this.matmulPacked(x, w, M, bias, out); // nn/ passes packed linears here (int8 activations, the default)
    this.#rec?.fail("f32 weights");
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

  swiglu(g: Float32Array, u: Float32Array, n: number): void {
    const op = "swiglu";
    checkInt(op, "n", n, 0);
    checkF32(op, "g", g, n, `g [n=${n}]`);
    checkF32(op, "u", u, n, `u [n=${n}]`);
    checkNoOverlap(op, g, n, { u: [u, n] });
    if (this.#rec !== null) this.#rec.op(OpKind.swiglu, { ints: [n], ptrs: [g, u] });
    else if (n > 0) this.#addon.swiglu(g, u, n);
  }

  /**
   * Whether attention's `next` hint is passed on to the native prefetches (prefetch.h). Default
   * false: on the Xeon host the attention call slowed by about what o and gate+up gained
   * (eval/bench-prefetch.ts; the KV cache streams from DRAM too). true for A/B measurements in
   * one build (eval/decode-ab.ts --hints-on). Results are the same either way.
   */
  prefetchHints = false;

  /**
   * The native handles of the packed weights in a hint, in order: a view of a concatenated
   * weight stands for the whole (the matmulMany call reads it), once; f32, LLM.int8(), PackedSum
   * and disposed weights are left out. Null when none is left.
   */
  hintHandles(ws: readonly LinearWeight[]): unknown[] | null {
    const seen = new Set<PackedWeight>(), hs: unknown[] = [];
    for (const w of ws) {
      const p = w instanceof PackedWeight ? (w.fused?.group.whole ?? w) : null;
      if (p === null || p.disposed || seen.has(p)) continue;
      seen.add(p);
      hs.push(PackedWeight.handleOf(p, "attention"));
    }
    return hs.length > 0 ? hs : null;
  }

  /** The ranges hintHandles(ws) prefetches on `threads` threads up to maxBytes: [weight index in the hint, byte offset, bytes] (tests). */
  prefetchPlan(ws: readonly LinearWeight[], threads: number, maxBytes: number): Float64Array {
    if (this.#addon.prefetchPlan === undefined) throw new DependencyError("prefetchPlan: the addon predates prefetch hints", { hint: BUILD_HINT });
    return this.#addon.prefetchPlan(this.hintHandles(ws) ?? [], threads, maxBytes);
  }

  /**
   * The decode split's claims (tests; native/src/packed.h SpanSplit) over parts of partN rows (row groups
   * of 16 back to back, as a concatenated weight's), in `shares` shares walked by ns streams: one step per
   * entry of order by the role it names (then round robin until none is left), or, order null, by the
   * roles running at once on the pool. One entry per claimed row group; y is its output's offset in the
   * parts' outputs back to back.
   */
  spanSplitClaims(partN: readonly number[], shares: number, ns: number, order: Int32Array | null): SpanClaimRow[] {
    const op = "spanSplitClaims";
    if (this.#addon.spanSplitClaims === undefined) throw new DependencyError(`${op}: the addon predates the decode split`, { hint: BUILD_HINT });
    if (partN.length < 1 || partN.length > 4) throw new UsageError(`${op}: 1 to 4 parts`, { field: "partN", expected: "1…4 row counts", found: String(partN.length) });
    partN.forEach((n) => checkInt(op, "partN", n, 1));
    checkInt(op, "shares", shares, 1);
    checkInt(op, "ns", ns, 1);
    if (shares > 64 || ns > 64) throw new UsageError(`${op}: at most 64 shares and streams`, { field: "shares", expected: "≤ 64", found: `${shares}, ${ns}` });
    if (order?.some((r) => r < 0 || r >= shares)) throw new UsageError(`${op}: order names a role past the shares`, { field: "order", expected: `roles 0…${shares - 1}` });
    const rgAt = [0];
    for (const n of partN) rgAt.push(rgAt.at(-1)! + Math.ceil(n / 16));
    const a = this.#addon.spanSplitClaims(Float64Array.from(rgAt), Float64Array.from(partN), shares, ns, order);
    const rows: SpanClaimRow[] = [];
    for (let i = 0; i < a.length; i += 8) {
      rows.push({ role: a[i]!, share: a[i + 1]!, step: a[i + 2]!, back: a[i + 3] === 1, rg: a[i + 4]!, y: a[i + 5]!, valid: a[i + 6]!, ldy: a[i + 7]! });
    }
    return rows;
  }

  attention(q: Float32Array, k: KvRows, v: KvRows, shape: AttentionShape, out: Float32Array, next?: readonly LinearWeight[]): void {
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
    const blocks = shape.keyBlocks === true;
    const kLen = blocks ? Math.ceil((pos0 + T) / KEY_BLOCK) * KEY_BLOCK * nKvHead * d : kvLen;  // whole blocks
    checkF32(op, "q", q, qLen, `q [T=${T}, nHead·headDim=${nHead * d}]`);
    if (blocks && this.toF16Keys === undefined) throw new DependencyError(`${op}: the addon predates the blocked key cache`, { hint: BUILD_HINT });
    if (blocks && !(k instanceof Uint16Array)) {
      throw new UsageError(`${op}: keyBlocks needs an f16 cache`, { field: "k", expected: "Uint16Array (f16 bits) in blocks of 32 positions", found: describeArray(k) });
    }
    if (k instanceof Uint16Array || v instanceof Uint16Array) {  // an f16 cache: both halves
      for (const [name, a, len] of [["k", k, kLen], ["v", v, kvLen]] as const) {
        if (!(a instanceof Uint16Array) || a.length < len) {
          throw new UsageError(`${op}: ${name} must be a Uint16Array (f16 bits) of at least ${len} elements, as the other half of the cache`, {
            field: name, expected: len === kvLen ? `Uint16Array [pos0+T=${pos0 + T}, nKvHead·headDim=${nKvHead * d}]` : `Uint16Array [${len / (KEY_BLOCK * nKvHead * d)} blocks, nKvHead·headDim=${nKvHead * d}, ${KEY_BLOCK}]`,
            found: `${(a as object).constructor?.name ?? typeof a} of ${a.length} elements`, hint: "k and v of one cache share its element type",
          });
        }
      }
    } else {
      checkF32(op, "k", k, kvLen, `k [pos0+T=${pos0 + T}, nKvHead·headDim=${nKvHead * d}]`);
      checkF32(op, "v", v, kvLen, `v [pos0+T=${pos0 + T}, nKvHead·headDim=${nKvHead * d}]`);
    }
    checkF32(op, "out", out, qLen, `out [T=${T}, nHead·headDim=${nHead * d}]`);
    checkNoOverlap(op, out, qLen, { q: [q, qLen], k: [k, kLen], v: [v, kvLen] });
    if (this.#rec !== null) {
      // hints are not recorded: the plan runs attention without prefetches (prefetchHints is off by default)
      const kind = blocks ? OpKind.attentionF16Blocks : k instanceof Uint16Array ? OpKind.attentionF16 : OpKind.attention;
      this.#rec.op(kind, { ints: [T, pos0 - this.#rec.pos, nHead, nKvHead, d], ptrs: [q, k, v, out], fixed: [1, 2] });
      return;
    }
    const hint = next !== undefined && this.prefetchHints ? this.hintHandles(next) : null;
    if (T > 0) this.#addon.attention(q, k, v, T, pos0, nHead, nKvHead, d, out, hint, blocks);
  }

  /** Backend.recordStep (native-graph.ts): absent when the addon predates plans or the elementwise ops. */
  get recordStep(): ((caller: Backend, kvRows: readonly KvRows[], pos: number, rowElements: number, body: () => void) => StepPlan | string) | undefined {
    const a = this.#addon;
    if (a.graphBuild === undefined || a.graphRun === undefined || this.#ew === null) return undefined;
    return (caller, kvRows, pos, rowElements, body) => {
      // A wrapper (a Proxy that times, replaces or hides calls) would not see the replayed calls.
      if (caller !== this) return "a wrapped backend";
      if (this.#rec !== null) throw new Error("recordStep: a step is already being recorded");
      const rec = new StepRecorder(kvRows, pos, rowElements);
      this.#rec = rec;
      this.#ew!.rec = rec;
      try {
        body();
      } finally {
        this.#rec = null;
        this.#ew!.rec = null;
      }
      return rec.failed ?? rec.build(a as GraphAddon);
    };
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
   * A file mapped read-only (MAP_SHARED, page tables filled up front: the pages are usually
   * already in the page cache) for view16; null when this platform or file system refuses,
   * and loaders then copy through pack16.
   */
  mapFile(path: string): MappedFile | null {
    if (typeof path !== "string" || path === "") throw new UsageError("mapFile: path must be a file path", { field: "path", expected: "a non-empty string", found: String(path) });
    const r = this.#addon.mapFile(path, true);
    if (Array.isArray(r)) return null;
    return new NativeMappedFile(path, r.bytes, r.handle, (h) => this.#addon.mapRelease(h));
  }

  /** 16-bit weights in place: a row-major view [N, K] of a mapped file's bytes ("f16-rows" / "bf16-rows", native/LAYOUTS.md "Row-major views"). */
  view16(a: View16Args): PackedWeight {
    const handle = NativeMappedFile.handleOf(a.file, "view16");
    validateView16(a);
    const info = this.#addon.view16(handle, a.offset, a.dtype === "bf16", a.N, a.K);
    if (info === null) throw new UsageError("view16: the tensor passes the end of the mapping", { file: a.file.path, field: "offset", expected: `≤ ${a.file.bytes - 2 * a.N * a.K}`, found: String(a.offset) });
    return new PackedWeight(a.dtype === "bf16" ? "bf16-rows" : "f16-rows", info, (h) => this.#addon.packedFree(h));
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

  /**
   * q, k, v (or gate, up) packed weights of one K and layout → one concatenated matrix
   * (native packedConcat: the parts' row groups back to back in one arena), returned as a
   * view per part, which replace the inputs (disposed here). Null, inputs untouched, when
   * they cannot share one call: not all plain packed weights, 2…4 of them, of one layout,
   * group plan, scale width and act-order perm.
   */
  fuse(ws: readonly LinearWeight[]): PackedWeight[] | Int8PackedWeight[] | null {
    if (ws.length < 2 || ws.length > 4) return null;
    if (ws.every((w) => w instanceof Int8PackedWeight)) return this.int8.fuse(ws as Int8PackedWeight[]); // LLM.int8(): int8Concat
    const parts: PackedWeight[] = [];
    for (const w of ws) if (w instanceof PackedWeight && w.fused === null && !w.disposed) parts.push(w); else return null;
    const p0 = parts[0]!;
    if (parts.some((p) => p.layout !== p0.layout || p.K !== p0.K)) return null;
    const r = this.#addon.packedConcat(parts.map((p) => PackedWeight.handleOf(p, "fuse")));
    if (Array.isArray(r)) {
      if (r[0] === 2) return null;
      packedOrThrow("fuse", null, parts.reduce((a, p) => a + p.N, 0), p0.K);
      throw new Error("unreachable");
    }
    const free = (h: unknown): void => this.#addon.packedFree(h);
    const group = new FusedPacked(new PackedWeight(p0.layout, r, free));
    group.parts = parts.map((p, i) => new PackedWeight(p.layout, this.#addon.packedView(r.handle, i), free, { group, index: i }));
    for (const p of parts) p.dispose();
    return [...group.parts];
  }

  /** Backend.matmulMany: one native call on the views of one fused weight (in order), else a matmul per part. */
  matmulMany(x: Float32Array, M: number, K: number, parts: readonly ManyPart[]): void {
    const w0 = parts[0]?.w;
    if (w0 instanceof Int8PackedWeight && w0.fused !== null && parts.length === w0.fused.group.views.length && parts.every((p, i) => p.w === w0.fused!.group.views[i] && p.N === p.w.N)) {
      if (K !== w0.K) throw new UsageError("matmulMany: K does not match the weights", { field: "K", expected: String(w0.K), found: String(K) });
      this.#rec?.fail("LLM.int8() weights");
      this.int8.matmulParts(x, parts.map((p) => p.w as Int8PackedWeight), M, parts.map((p) => p.bias), parts.map((p) => p.out));
      return;
    }
    const f = w0 instanceof PackedWeight ? w0.fused : null;
    if (f === null || parts.length !== f.group.parts.length || parts.some((p, i) => p.w !== f.group.parts[i])) {
      for (const p of parts) this.matmul(x, p.w as Parameters<NativeBackend["matmul"]>[1], M, K, p.N, p.bias, p.out);
      return;
    }
    const op = "matmulMany";
    checkInt(op, "M", M, 0);
    checkF32(op, "x", x, M * K, `x [M=${M}, K=${K}]`);
    if (K !== f.group.whole.K) throw new UsageError(`${op}: K does not match the weights`, { field: "K", expected: String(f.group.whole.K), found: String(K) });
    const outs: Float32Array[] = [], biases: (Float32Array | null)[] = [];
    const used: Record<string, [Float32Array, number]> = { x: [x, M * K] };
    parts.forEach((p, i) => {
      const w = p.w as PackedWeight;
      if (p.N !== w.N) throw new UsageError(`${op}: parts[${i}].N does not match its weight`, { field: `parts[${i}].N`, expected: String(w.N), found: String(p.N) });
      checkF32(op, `parts[${i}].out`, p.out, M * w.N, `out [M=${M}, N=${w.N}]`);
      if (p.bias !== undefined) checkF32(op, `parts[${i}].bias`, p.bias, w.N, `bias [N=${w.N}]`);
      checkNoOverlap(op, p.out, M * w.N, { ...used, ...(p.bias ? { bias: [p.bias, w.N] as [Float32Array, number] } : {}) });
      used[`parts[${i}].out`] = [p.out, M * w.N];
      outs.push(p.out);
      biases.push(p.bias ?? null);
    });
    const handle = PackedWeight.handleOf(f.group.whole, op);
    if (this.#rec !== null) {
      const pad = <T>(a: T[]): (T | null)[] => Array.from({ length: 4 }, (_, i) => a[i] ?? null);
      this.#rec.op(OpKind.matmulParts, { w: { weight: f.group.whole, handle }, ints: [M, outs.length], ptrs: [x, ...pad(biases), ...pad(outs)] });
    } else if (M > 0) this.#addon.matmulPackedParts(x, handle, M, biases, outs, false);
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
    if (w instanceof Int8PackedWeight) { this.#rec?.fail("LLM.int8() weights"); return this.int8.matmul(x, w, M, bias, out).y; }
    if (w instanceof PackedSum) this.#rec?.fail("int8 planes (PackedSum: parts summed in TS)");
    if (w instanceof PackedSum) return matmulPackedSum(w, M, bias, out, (p, b, o) => this.matmulPacked(x, p as PackedWeight, M, b, o, opts));
    const { y, f32Acts } = validateMatmulPacked(x, w, M, bias, out, opts);
    const handle = PackedWeight.handleOf(w, "matmulPacked");
    if (this.#rec !== null) this.#rec.op(OpKind.matmulPacked, { w: { weight: w, handle }, f32Acts, ints: [M], ptrs: [x, bias ?? null, y] });
    else if (M > 0) this.#addon.matmulPacked(x, handle, M, bias ?? null, y, f32Acts);
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

  /**
   * The packed (int4 / int8 / 16-bit) kernels the current level runs: "amx" is the VNNI
   * level with AMX-INT8 tiles for M ≥ 16 (offered when the CPU, OS and process permit
   * tiles), "avx512" the VNNI level (needs AVX-512 F/BW/VL/VNNI; the f32 level "avx512"
   * on a CPU without VNNI runs "avx2" packed kernels), then "avx2", "scalar".
   */
  get packedKernelLevel(): KernelLevel {
    return this.#addon.packedKernelLevel();
  }

  // ---------------------------------------------------------------- GPTQ kernels (native-gptq.ts, native/src/gptq.h)

  /** sum[K, K] = beta·sum + alpha · x[T, K]ᵀ · x, both triangles; sum may be f32 or f64. */
  syrkAccumulate(...a: Parameters<GptqKernels["syrkAccumulate"]>): void {
    this.#gptq.syrkAccumulate(...a);
  }

  /** syrkAccumulate on a worker thread (cancellable between output tiles). */
  syrkAccumulateAsync(...a: Parameters<GptqKernels["syrkAccumulateAsync"]>): Promise<void> {
    return this.#gptq.syrkAccumulateAsync(...a);
  }

  /** out = Hinv of h permuted (perm) with its diagonal replaced by diag; false = not positive definite. */
  gptqHinv(...a: Parameters<GptqKernels["gptqHinv"]>): boolean {
    return this.#gptq.gptqHinv(...a);
  }

  /** gptqHinv on a worker thread (cancellable between diagonal blocks). */
  gptqHinvAsync(...a: Parameters<GptqKernels["gptqHinvAsync"]>): Promise<boolean> {
    return this.#gptq.gptqHinvAsync(...a);
  }

  /** The lazy-batch GPTQ sweep (see GptqKernelArgs); returns the loss. */
  gptqQuantize(a: GptqKernelArgs): number {
    return this.#gptq.gptqQuantize(a);
  }

  /** The sweep on a worker thread: cancellable between column blocks, progress in (task, block) units. */
  gptqQuantizeAsync(a: GptqKernelArgs, opts: KernelCallOptions = {}): Promise<number> {
    return this.#gptq.gptqQuantizeAsync(a, opts);
  }

  // ---------------------------------------------------------------- AWQ kernels (native-awq.ts, native/src/awq.h)

  /** out[N, K] = Q(w·diag(s))·diag(s)⁻¹ on the AWQ grid (s null: Q(w)); out may be w. Bit-identical to awq-grid.ts awqScaledFakeQuantize. */
  awqFakeQuantize(...a: Parameters<AwqKernels["awqFakeQuantize"]>): Promise<void> {
    return this.#awq.awqFakeQuantize(...a);
  }

  /** maxVal [N, K/g] = the AWQ clip search of w [N, K] on x [T, K] (awqClipSearchLayer of awq-clip.ts, bit-identical). */
  awqClipSearch(...a: Parameters<AwqKernels["awqClipSearch"]>): Promise<void> {
    return this.#awq.awqClipSearch(...a);
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

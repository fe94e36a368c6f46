/**
 * The LLM.int8() part of the native backend (native/src/llm_int8*.cc): packed per-row
 * int8 weights held in native memory, and the int8 × int8 → int32 matmul with the f32
 * outlier-column decomposition. native.ts constructs this with its addon (it stays the
 * only importer of the .node file); every argument is validated here.
 */
import { UsageError } from "../util/errors.ts";
import { describeArray } from "./native-call.ts";
import type { Int8Linear } from "../tensor/int8.ts";

/** "vnni" (AVX-512 VNNI vpdpbusd), "avx2" (vpmaddubsw sign trick), "scalar" (reference). */
export type Int8Level = "vnni" | "avx2" | "scalar";

/** The addon's LLM.int8() exports (native/src/llm_int8_napi.h). */
export interface Int8Addon {
  int8Pack(cb: Int8Array, scb: Float32Array, N: number, K: number): unknown;
  int8Unpack(handle: unknown, out: Int8Array): void;
  int8Bytes(handle: unknown): number;
  int8Dispose(handle: unknown): void;
  int8Levels(): Int8Level[];
  int8Matmul(x: Float32Array, handle: unknown, M: number, threshold: number, staticCols: Int32Array | null,
    bias: Float32Array | null, out: Float32Array, level: Int8Level | null): number;
}

/** Run-time settings of one int8 linear. */
export interface Int8RunOptions {
  /** Outlier threshold: input columns with any |x| ≥ threshold go to the f32 path; 0 = plain dynamic int8. */
  threshold: number;
  /** Fixed outlier columns (ascending, < K) instead of the per-batch scan; null = dynamic. */
  staticCols: Int32Array | null;
}

/**
 * A packed LLM.int8() weight in native memory (16-row interleaved codes, SCB, row sums):
 * a backend.ts PackedWeight. Freed when collected, or now by dispose().
 */
export class Int8PackedWeight {
  readonly layout = "llm-int8/i16" as const;
  /** Calls made and outlier columns used, summed over calls (eval: mean outlier columns per matmul). */
  readonly stats = { calls: 0, outlierCols: 0 };
  #handle: unknown;
  #addon: Int8Addon;
  constructor(addon: Int8Addon, handle: unknown, readonly N: number, readonly K: number, readonly run: Int8RunOptions) {
    this.#addon = addon;
    this.#handle = handle;
  }
  /** Bytes of native memory held. */
  get bytes(): number { return this.#handle === null ? 0 : this.#addon.int8Bytes(this.#handle); }
  /** @internal the addon handle */
  get handle(): unknown {
    if (this.#handle === null) throw new UsageError("int8 weight used after dispose()", { hint: "do not reuse a disposed model" });
    return this.#handle;
  }
  dispose(): void {
    if (this.#handle !== null) this.#addon.int8Dispose(this.#handle);
    this.#handle = null;
  }
}

export class Int8Kernels {
  readonly #addon: Int8Addon;
  constructor(addon: Int8Addon) { this.#addon = addon; }

  /** Levels this CPU runs, fastest first. */
  levels(): Int8Level[] { return this.#addon.int8Levels(); }

  pack(q: Int8Linear, run: Int8RunOptions): Int8PackedWeight {
    const { N, K, CB, SCB } = q;
    const op = "int8Pack";
    if (!(Number.isInteger(N) && N >= 1 && Number.isInteger(K) && K >= 1)) {
      throw new UsageError(`${op}: bad shape`, { field: "N, K", expected: "positive integers", found: `${N}, ${K}` });
    }
    if (!(CB instanceof Int8Array) || CB.length !== N * K) {
      throw new UsageError(`${op}: CB has the wrong length or type`, { field: "CB", expected: `Int8Array [N=${N}, K=${K}]`, found: describeArray(CB) });
    }
    if (!(SCB instanceof Float32Array) || SCB.length !== N) {
      throw new UsageError(`${op}: SCB has the wrong length or type`, { field: "SCB", expected: `Float32Array [N=${N}]`, found: describeArray(SCB) });
    }
    checkRun(op, run, K);
    return new Int8PackedWeight(this.#addon, this.#addon.int8Pack(CB, SCB, N, K), N, K, run);
  }

  /** CB [N, K] back out of the packed layout (tests: pack/unpack identity). */
  unpack(w: Int8PackedWeight): Int8Array {
    const out = new Int8Array(w.N * w.K);
    this.#addon.int8Unpack(w.handle, out);
    return out;
  }

  /**
   * y [M, N] = LLM.int8()(x [M, K], w) + bias, bit-identical to int8MatmulRef
   * (src/methods/int8.ts). Returns y and the number of outlier columns used.
   */
  matmul(x: Float32Array, w: Int8PackedWeight, M: number, bias?: Float32Array, out?: Float32Array, level?: Int8Level): { y: Float32Array; outliers: number } {
    const op = "int8Matmul";
    const { N, K } = w;
    if (!(Number.isInteger(M) && M >= 0)) throw new UsageError(`${op}: bad M`, { field: "M", expected: "an integer ≥ 0", found: String(M) });
    if (!(x instanceof Float32Array) || x.length < M * K) {
      throw new UsageError(`${op}: x is too short`, { field: "x", expected: `Float32Array [M=${M}, K=${K}]`, found: describeArray(x) });
    }
    if (bias !== undefined && (!(bias instanceof Float32Array) || bias.length !== N)) {
      throw new UsageError(`${op}: bias has the wrong length`, { field: "bias", expected: `Float32Array [N=${N}]`, found: describeArray(bias) });
    }
    const y = out ?? new Float32Array(M * N);
    if (!(y instanceof Float32Array) || y.length < M * N) {
      throw new UsageError(`${op}: out is too short`, { field: "out", expected: `Float32Array [M=${M}, N=${N}]`, found: describeArray(y) });
    }
    if (y.buffer === x.buffer && y.byteOffset < x.byteOffset + M * K * 4 && x.byteOffset < y.byteOffset + M * N * 4) {
      throw new UsageError(`${op}: out overlaps x`, { field: "out", hint: "pass a separate output buffer" });
    }
    if (level !== undefined && !this.levels().includes(level)) {
      throw new UsageError(`${op}: level "${level}" is not available here`, { field: "level", expected: this.levels().join(", "), found: level });
    }
    if (M === 0) return { y, outliers: 0 };
    const outliers = this.#addon.int8Matmul(x, w.handle, M, w.run.threshold, w.run.staticCols, bias ?? null, y, level ?? null);
    w.stats.calls++;
    w.stats.outlierCols += outliers;
    return { y, outliers };
  }
}

function checkRun(op: string, run: Int8RunOptions, K: number): void {
  if (!(Number.isFinite(run.threshold) && run.threshold >= 0)) {
    throw new UsageError(`${op}: bad outlier threshold`, { field: "threshold", expected: "a finite number ≥ 0 (0 = no outlier columns)", found: String(run.threshold) });
  }
  const c = run.staticCols;
  if (c === null) return;
  if (!(c instanceof Int32Array)) throw new UsageError(`${op}: staticCols must be an Int32Array`, { field: "staticCols", found: describeArray(c) });
  for (let i = 0; i < c.length; i++) {
    if (!(c[i]! >= 0 && c[i]! < K) || (i > 0 && c[i]! <= c[i - 1]!)) {
      throw new UsageError(`${op}: staticCols must be ascending column indices below K`, {
        field: `staticCols[${i}]`, expected: `strictly ascending, in [0, ${K})`, found: String(c[i]),
      });
    }
  }
}

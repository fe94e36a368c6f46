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
  /** The parts' rows as one weight (native int8Concat), or null when they cannot be. */
  int8Concat(handles: unknown[]): unknown;
  /** Rows rows[p]..rows[p+1]−1 of the weight into outs[p]: one quantization of x, one pool wake-up. */
  int8MatmulParts(x: Float32Array, handle: unknown, M: number, threshold: number, staticCols: Int32Array | null,
    rows: number[], biases: (Float32Array | null)[], outs: Float32Array[], level: Int8Level | null): number;
}

/**
 * The weights of one input (q, k, v; gate, up) concatenated into one native matrix
 * (Int8Kernels.fuse), and the views that stand for them in the model: a matmulMany over the
 * views in order is one kernel call; a view alone multiplies only its rows. The memory is
 * freed when every view is disposed, or when the group is collected.
 */
export class Int8FusedGroup {
  views: readonly Int8PackedWeight[] = [];
  /** Row bounds of the parts: views[p] is rows rows[p]..rows[p+1]−1. */
  readonly rows: number[];
  constructor(readonly handle: unknown, Ns: readonly number[], readonly bytes: number) {
    this.rows = [0];
    for (const n of Ns) this.rows.push(this.rows.at(-1)! + n);
  }
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
  /** Set on a view of part `index` of a concatenated weight (its handle is the group's). */
  readonly fused: { group: Int8FusedGroup; index: number } | null;
  constructor(addon: Int8Addon, handle: unknown, readonly N: number, readonly K: number, readonly run: Int8RunOptions,
    fused: { group: Int8FusedGroup; index: number } | null = null) {
    this.#addon = addon;
    this.#handle = handle;
    this.fused = fused;
  }
  /** Bytes of native memory held (a view: its rows' share of the group). */
  get bytes(): number {
    if (this.#handle === null) return 0;
    const f = this.fused;
    return f === null ? this.#addon.int8Bytes(this.#handle) : Math.round((f.group.bytes * this.N) / f.group.rows.at(-1)!);
  }
  get disposed(): boolean { return this.#handle === null; }
  /** @internal the addon handle */
  get handle(): unknown {
    if (this.#handle === null) throw new UsageError("int8 weight used after dispose()", { hint: "do not reuse a disposed model" });
    return this.#handle;
  }
  dispose(): void {
    if (this.#handle === null) return;
    const f = this.fused;
    if (f === null || f.group.views.every((v) => v === this || v.disposed)) this.#addon.int8Dispose(this.#handle);
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
    const f = w.fused;
    const outliers = f === null
      ? this.#addon.int8Matmul(x, w.handle, M, w.run.threshold, w.run.staticCols, bias ?? null, y, level ?? null)
      : this.#addon.int8MatmulParts(x, w.handle, M, w.run.threshold, w.run.staticCols, f.group.rows.slice(f.index, f.index + 2), [bias ?? null], [y], level ?? null);
    w.stats.calls++;
    w.stats.outlierCols += outliers;
    return { y, outliers };
  }

  /**
   * Int8 weights of one input and one run rule (q, k, v; gate, up) → one concatenated native
   * matrix, returned as a view per part that replaces it (the inputs are disposed). Null, inputs
   * untouched, when they cannot share one call: 2…4 undisposed unfused weights of one K,
   * threshold and static columns, every part but the last a multiple of 16 rows.
   */
  fuse(ws: readonly Int8PackedWeight[]): Int8PackedWeight[] | null {
    if (ws.length < 2 || ws.length > 4) return null;
    const w0 = ws[0]!;
    const sameCols = (a: Int32Array | null, b: Int32Array | null): boolean =>
      a === b || (a !== null && b !== null && a.length === b.length && a.every((v, i) => v === b[i]));
    const ok = ws.every((w, i) => w.fused === null && !w.disposed && w.K === w0.K && w.run.threshold === w0.run.threshold
      && sameCols(w.run.staticCols, w0.run.staticCols) && (i === ws.length - 1 || w.N % 16 === 0));
    if (!ok) return null;
    const h = this.#addon.int8Concat(ws.map((w) => w.handle));
    if (h === null) return null;
    const group = new Int8FusedGroup(h, ws.map((w) => w.N), this.#addon.int8Bytes(h));
    group.views = ws.map((w, index) => new Int8PackedWeight(this.#addon, h, w.N, w.K, w.run, { group, index }));
    for (const w of ws) w.dispose();
    return [...group.views];
  }

  /**
   * outs[p] [M, N_p] = LLM.int8()(x, views[p]) + biases[p] for the views of one fused group, in
   * order: one native call, the same bits as a matmul per view. Arguments as matmul's.
   */
  matmulParts(
    x: Float32Array, views: readonly Int8PackedWeight[], M: number, biases: readonly (Float32Array | undefined)[], outs: readonly Float32Array[], level?: Int8Level,
  ): number {
    const op = "int8MatmulParts";
    const f = views[0]?.fused;
    if (f === undefined || f === null || views.length !== f.group.views.length || views.some((v, i) => v !== f.group.views[i])) {
      throw new UsageError(`${op}: the weights are not the views of one fused group, in order`, { field: "views", hint: "use Int8Kernels.fuse's result as returned" });
    }
    const K = views[0]!.K;
    if (!(Number.isInteger(M) && M >= 0)) throw new UsageError(`${op}: bad M`, { field: "M", expected: "an integer ≥ 0", found: String(M) });
    if (!(x instanceof Float32Array) || x.length < M * K) {
      throw new UsageError(`${op}: x is too short`, { field: "x", expected: `Float32Array [M=${M}, K=${K}]`, found: describeArray(x) });
    }
    const spans: [number, number][] = [[x.byteOffset, x.byteOffset + 4 * M * K]];
    views.forEach((v, p) => {
      const b = biases[p], y = outs[p];
      if (b !== undefined && (!(b instanceof Float32Array) || b.length !== v.N)) {
        throw new UsageError(`${op}: biases[${p}] has the wrong length`, { field: `biases[${p}]`, expected: `Float32Array [N=${v.N}]`, found: describeArray(b) });
      }
      if (!(y instanceof Float32Array) || y.length < M * v.N) {
        throw new UsageError(`${op}: outs[${p}] is too short`, { field: `outs[${p}]`, expected: `Float32Array [M=${M}, N=${v.N}]`, found: describeArray(y) });
      }
      const o0 = y.byteOffset, o1 = o0 + 4 * M * v.N;
      if ((x.buffer === y.buffer && spans.some(([a0, a1]) => o0 < a1 && a0 < o1))
        || outs.slice(0, p).some((z, q) => z.buffer === y.buffer && o0 < z.byteOffset + 4 * M * views[q]!.N && z.byteOffset < o1)) {
        throw new UsageError(`${op}: outs[${p}] overlaps x or another output`, { field: `outs[${p}]`, hint: "pass separate output buffers" });
      }
    });
    if (level !== undefined && !this.levels().includes(level)) {
      throw new UsageError(`${op}: level "${level}" is not available here`, { field: "level", expected: this.levels().join(", "), found: level });
    }
    if (M === 0) return 0;
    const w0 = views[0]!;
    const outliers = this.#addon.int8MatmulParts(x, w0.handle, M, w0.run.threshold, w0.run.staticCols, f.group.rows, biases.map((b) => b ?? null), [...outs], level ?? null);
    for (const v of views) { v.stats.calls++; v.stats.outlierCols += outliers; }
    return outliers;
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

/**
 * Packed weights on the native backend: the typed contract, argument validation and
 * the handle class. NativeBackend (native.ts) exposes these as packQ4 / packQ8 /
 * pack16 / matmulPacked; the layouts are described byte by byte in native/LAYOUTS.md.
 *
 * Canonical inputs (backend.ts PackQ4Args / PackQ8Args / Pack16Args, one tensor at a time):
 *   int4  codes [N, K] 0..15 (one byte each), scales [N, G], mins [N, G] | null:
 *         w[n, k] = scales[n, g]·codes[n, k] + mins[n, g], g = ⌊k / groupSize⌋;
 *         mins = null means w = scales·(codes − 8).
 *   int8  codes [N, K] −128..127, scales [N, G]: w = scales·codes.
 *   16-bit data [N, K] f16 or bf16 bit patterns (pack16: copied into f16x16 / bf16x16), or
 *         in place, row-major as stored in a mapped file (mapFile + view16: "f16-rows" /
 *         "bf16-rows", native/LAYOUTS.md "Row-major views").
 *   perm  [K] | null (act-order): the columns are already in the permuted order, and
 *         y = x[:, perm] · Wᵀ, i.e. the kernel reads x'[k] = x[perm[k]].
 * groupSize must be a multiple of 32, or ≥ K (one group per row).
 */
import { UsageError } from "../util/errors.ts";
import { checkInt, checkPerm, describeArray } from "./native-call.ts";
import { noteWeightDisposed } from "./native-graph.ts";
import type { MappedFile, Pack16Args, PackedActivations, PackedWeight as BackendPackedWeight, PackQ4Args, PackQ8Args, SourceBlocks, View16Args } from "./backend.ts";

/** Runtime layouts (native/LAYOUTS.md): 16 interleaved rows each. */
export type PackedLayoutName = "q4x16" | "q8x16" | "f16x16" | "bf16x16" | "f16-rows" | "bf16-rows";

export type { Pack16Args, PackQ4Args, PackQ8Args } from "./backend.ts";

export interface MatmulPackedOptions {
  /**
   * "int8" (default for int4/int8 weights): activations quantized to int8 per block
   * of `activationBlock` k, as llama.cpp does; "f32": exact f32 activations with the
   * weights dequantized in registers (tight checks; slower). 16-bit weights always
   * use f32 activations.
   */
  activations?: PackedActivations;
}

/** What the addon returns from a pack call. */
export interface NativePackedInfo {
  handle: unknown;
  N: number;
  K: number;
  Np: number;
  Kp: number;
  G: number;
  groupSize: number;
  Ba: number;
  scaleBytes: number;
  mins: boolean;
  bytes: number;
  rowGroupBytes: number;
  /** A row-major view of mapped file bytes (view16): its memory is the file's page cache. */
  rowMajor: boolean;
}

/** The addon's packed-weight exports (native/src/addon.cc). */
export interface NativePackedAddon {
  packQ4(codes: Uint8Array, scales: Float32Array, mins: Float32Array | null, N: number, K: number, g: number, perm: Int32Array | null): NativePackedInfo | null;
  packQ8(codes: Int8Array, scales: Float32Array, N: number, K: number, g: number, perm: Int32Array | null): NativePackedInfo | null;
  pack16(data: Uint16Array, isBf16: boolean, N: number, K: number): NativePackedInfo | null;
  packedFree(handle: unknown): void;
  /** Stored bytes → layout (native/src/packed_repack.h): the PackedInfo, or [status, index] (1 no memory, 2 unsupported, 3/4 non-finite scale/min). */
  repack(
    source: number, data: Uint8Array, qzeros: Uint8Array | null, scales: Uint8Array | null, perm: Int32Array | null, rows: Int32Array | null,
    N: number, K: number, g: number, zeroAdd: number,
  ): NativePackedInfo | [number, number];
  /** A copy of a packed weight's bytes (tests: the repackers equal the packers). */
  packedBytes(handle: unknown): Uint8Array;
  /** Maps a file read-only (native/src/packed_map.cc): { handle, bytes }, or [status, errno] (1 open failed, 2 mmap failed, 3 not Linux). */
  mapFile(path: string, populate: boolean): { handle: unknown; bytes: number } | [number, number];
  /** Drops the caller's reference to a mapping (the views of it keep theirs). */
  mapRelease(handle: unknown): void;
  /** A row-major 16-bit view [N, K] at byte `offset` of a mapping; null when it passes the end of the file. */
  view16(map: unknown, offset: number, isBf16: boolean, N: number, K: number): NativePackedInfo | null;
  /** y[M, N] = x[M, K] · Wᵀ (+ bias) into out; synchronous. */
  matmulPacked(x: Float32Array, handle: unknown, M: number, bias: Float32Array | null, out: Float32Array, f32Acts: boolean): void;
  /** Row groups of the parts back to back in one new arena (native/src/packed_pack.cc packedConcat): its info, or [1] out of memory / [2] incompatible parts. */
  packedConcat(handles: unknown[]): NativePackedInfo | [number];
  /** Part `part` of a concatenated weight as a matrix sharing its memory. */
  packedView(handle: unknown, part: number): NativePackedInfo;
  /** out_p[M, N_p] = x · W_pᵀ (+ bias_p) for every part of a concatenated (or one plain) weight, one call. */
  matmulPackedParts(x: Float32Array, handle: unknown, M: number, biases: (Float32Array | null)[], outs: Float32Array[], f32Acts: boolean): void;
  /** GB/s of each of `reps` streaming-read passes over `bytes` on `threads` pool threads (benchmark probe). */
  readBandwidth(bytes: number, threads: number, reps: number): Float64Array;
  /** The packed kernels the current kernel level runs ("amx" = VNNI + AMX-INT8 GEMM, "avx512" = VNNI, "avx2", "scalar"; native/src/packed_matmul.cc packedKernelsFor). */
  packedKernelLevel(): "amx" | "avx512" | "avx2" | "scalar";
  /** The same on a libuv worker thread (native/src/async.h). */
  matmulPackedAsync(x: Float32Array, handle: unknown, M: number, bias: Float32Array | null, out: Float32Array, f32Acts: boolean, ctl: Int32Array | null): Promise<void>;
}

/** A file mapped by the addon (NativeBackend.mapFile); release() drops this reference, the views keep theirs. */
export class NativeMappedFile implements MappedFile {
  #handle: unknown;
  readonly #release: (h: unknown) => void;
  constructor(readonly path: string, readonly bytes: number, handle: unknown, release: (h: unknown) => void) {
    this.#handle = handle;
    this.#release = release;
  }

  release(): void {
    if (this.#handle === null) return;
    this.#release(this.#handle);
    this.#handle = null;
  }

  /** The native handle, for view16. */
  static handleOf(f: MappedFile, op: string): unknown {
    if (!(f instanceof NativeMappedFile) || f.#handle === null) {
      throw new UsageError(`${op}: file must be a live mapping of this backend`, {
        field: "file", expected: "the result of NativeBackend.mapFile, not yet released", found: f instanceof NativeMappedFile ? `released mapping of ${f.path}` : describeArray(f),
        hint: "map the file with the backend that makes the views, and release it after the last view16",
      });
    }
    return f.#handle;
  }
}

/** Checks view16's arguments: shape, dtype, and the byte range inside the mapped file. */
export function validateView16(a: View16Args): void {
  const op = "view16";
  checkInt(op, "N", a.N, 1);
  checkInt(op, "K", a.K, 1);
  checkInt(op, "offset", a.offset, 0);
  if (a.dtype !== "f16" && a.dtype !== "bf16") {
    throw new UsageError(`${op}: unknown dtype`, { field: "dtype", expected: '"f16" or "bf16"', found: String(a.dtype) });
  }
  const end = a.offset + 2 * a.N * a.K;
  if (end > a.file.bytes) {
    throw new UsageError(`${op}: the tensor passes the end of the file`, {
      file: a.file.path, field: "offset", expected: `offset + 2·N·K ≤ ${a.file.bytes} (the file's size)`, found: `${a.offset} + ${2 * a.N * a.K} = ${end}`,
      hint: "the file is shorter than its header says (truncated, or changed after it was opened?)",
    });
  }
}

/**
 * A concatenated weight (NativeBackend.fuse: native packedConcat) and the views that stand
 * for its parts in the model; the views hold it, so its memory lives as long as any of them.
 */
export class FusedPacked {
  parts: readonly PackedWeight[] = [];
  constructor(readonly whole: PackedWeight) {}
}

/**
 * A weight matrix in a packed runtime layout, in native memory (not a JS
 * ArrayBuffer): freed by dispose(), or when the handle is garbage-collected.
 */
export class PackedWeight implements BackendPackedWeight {
  readonly N: number;
  readonly K: number;
  readonly layout: PackedLayoutName;
  /** Bytes of native memory the layout occupies (codes, scales, padding). */
  readonly bytes: number;
  /** Group size along K (int4/int8), K for 16-bit. */
  readonly groupSize: number;
  /** k per int8 activation scale (int4/int8). */
  readonly activationBlock: number;
  /** 2: scales (and mins) stored as f16 (they were all exact f16 values); 4: f32. 0 for 16-bit. */
  readonly scaleBytes: number;
  readonly hasMins: boolean;
  readonly #handle: unknown;
  readonly #free: (h: unknown) => void;
  #disposed = false;
  #inFlight = 0;

  /** Set on a view of part `index` of a concatenated weight (its bytes are that part's share). */
  readonly fused: { group: FusedPacked; index: number } | null;

  constructor(layout: PackedLayoutName, info: NativePackedInfo, free: (h: unknown) => void, fused: { group: FusedPacked; index: number } | null = null) {
    this.fused = fused;
    this.layout = layout;
    this.N = info.N;
    this.K = info.K;
    this.bytes = info.bytes;
    this.groupSize = info.groupSize;
    this.activationBlock = info.Ba;
    this.scaleBytes = info.scaleBytes;
    this.hasMins = info.mins;
    this.#handle = info.handle;
    this.#free = free;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Bits of native memory per weight. */
  get bitsPerWeight(): number {
    return (8 * this.bytes) / (this.N * this.K);
  }

  /** Frees the native memory (now, or when the last async matmul on it ends); unusable afterwards. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    noteWeightDisposed();
    if (this.#inFlight === 0) this.#free(this.#handle);
  }

  /** Runs an async native call on this weight; dispose() during it waits for its end. */
  static async using<T>(w: PackedWeight, op: string, call: (handle: unknown) => Promise<T>): Promise<T> {
    const handle = PackedWeight.handleOf(w, op);
    w.#inFlight++;
    try {
      return await call(handle);
    } finally {
      if (--w.#inFlight === 0 && w.#disposed) w.#free(w.#handle);
    }
  }

  /** The native handle, for NativeBackend.matmulPacked. */
  static handleOf(w: PackedWeight, op: string): unknown {
    if (w.#disposed) {
      throw new UsageError(`${op}: the packed weight was disposed`, {
        field: "w", expected: "a live PackedWeight", found: `disposed ${w.layout} [${w.N}, ${w.K}]`,
        hint: "keep the weight until the last matmul that uses it, then dispose()",
      });
    }
    return w.#handle;
  }
}

// ---------------------------------------------------------------- validation

function checkArray(op: string, name: string, a: unknown, ctor: { new (n: number): ArrayBufferView; name: string }, n: number, shape: string): void {
  if (!(a instanceof ctor) || (a as unknown as { length: number }).length !== n) {
    throw new UsageError(`${op}: ${name} must be a ${ctor.name} of ${n} elements`, { field: name, expected: `${ctor.name} ${shape}`, found: describeArray(a) });
  }
}

function checkFinite(op: string, name: string, a: Float32Array): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) {
      throw new UsageError(`${op}: ${name} holds a non-finite value`, { field: `${name}[${i}]`, expected: "a finite number", found: String(a[i]) });
    }
  }
}

/** Shape and group size of an int4/int8 pack; returns G. */
function checkQuantShape(op: string, N: number, K: number, g: number): number {
  checkInt(op, "N", N, 1);
  checkInt(op, "K", K, 1);
  checkInt(op, "groupSize", g, 1);
  if (g < K && g % 32 !== 0) {
    throw new UsageError(`${op}: unsupported group size`, {
      field: "groupSize", expected: `a multiple of 32, or ≥ K=${K} (one group per row)`, found: String(g),
      hint: "the packed layouts hold 32 k per code block; regroup the scales to a multiple of 32",
    });
  }
  return Math.ceil(K / Math.min(g, K));
}

export function validatePackQ4(a: PackQ4Args): void {
  const op = "packQ4";
  const G = checkQuantShape(op, a.N, a.K, a.groupSize);
  checkArray(op, "codes", a.codes, Uint8Array, a.N * a.K, `[N=${a.N}, K=${a.K}]`);
  checkArray(op, "scales", a.scales, Float32Array, a.N * G, `[N=${a.N}, G=${G}]`);
  checkFinite(op, "scales", a.scales);
  if (a.mins !== null) {
    checkArray(op, "mins", a.mins, Float32Array, a.N * G, `[N=${a.N}, G=${G}]`);
    checkFinite(op, "mins", a.mins);
  }
  checkPerm(op, a.perm, a.K);
}

export function validatePackQ8(a: PackQ8Args): void {
  const op = "packQ8";
  const G = checkQuantShape(op, a.N, a.K, a.groupSize);
  checkArray(op, "codes", a.codes, Int8Array, a.N * a.K, `[N=${a.N}, K=${a.K}]`);
  checkArray(op, "scales", a.scales, Float32Array, a.N * G, `[N=${a.N}, G=${G}]`);
  checkFinite(op, "scales", a.scales);
  checkPerm(op, a.perm, a.K);
}

export function validatePack16(a: Pack16Args): void {
  const op = "pack16";
  checkInt(op, "N", a.N, 1);
  checkInt(op, "K", a.K, 1);
  if (a.dtype !== "f16" && a.dtype !== "bf16") {
    throw new UsageError(`${op}: unknown dtype`, { field: "dtype", expected: '"f16" or "bf16"', found: String(a.dtype) });
  }
  checkArray(op, "data", a.data, Uint16Array, a.N * a.K, `[N=${a.N}, K=${a.K}]`);
}

/** native/src/packed_repack.h RepackSource. */
export const REPACK_SOURCE = { gptq4: 0, gptq8: 1, awq: 2, Q4_0: 3, Q4_1: 4, Q4_K: 5, Q8_0: 6 } as const;

/** Bytes per block of the GGUF types repack reads ([elements, bytes]). */
const GGUF_BLOCKS = { Q4_0: [32, 18], Q4_1: [32, 20], Q4_K: [256, 144], Q8_0: [32, 34] } as const;

function checkBytes(op: string, name: string, a: unknown, bytes: number, shape: string): void {
  if (!(a instanceof Uint8Array) || a.length !== bytes) {
    throw new UsageError(`${op}: ${name} has the wrong size`, { field: name, expected: `a Uint8Array of ${bytes} bytes, ${shape}`, found: describeArray(a) });
  }
}

/**
 * Checks a SourceBlocks (shapes and byte sizes: the addon trusts them); returns the
 * addon's source code, group size and G.
 */
export function validateRepack(s: SourceBlocks): { source: number; g: number; G: number; q8: boolean } {
  const op = "repack";
  const { N, K } = s;
  if (s.kind === "gguf") {
    const blk = GGUF_BLOCKS[s.type];
    if (blk === undefined) throw new UsageError(`${op}: unknown GGUF type`, { field: "type", expected: Object.keys(GGUF_BLOCKS).join(", "), found: String(s.type) });
    checkInt(op, "N", N, 1);
    checkInt(op, "K", K, 1);
    if (K % blk[0] !== 0) throw new UsageError(`${op}: K is not whole ${s.type} blocks`, { field: "K", expected: `a multiple of ${blk[0]}`, found: String(K) });
    checkBytes(op, "bytes", s.bytes, (N * K / blk[0]) * blk[1], `[N=${N}, K=${K}] in ${s.type} blocks`);
    if (s.rows !== null) checkPerm(op, s.rows, N);
    return { source: REPACK_SOURCE[s.type], g: 32, G: K / 32, q8: s.type === "Q8_0" };
  }
  const bits = s.kind === "gptq" ? s.bits : 4;
  if (bits !== 4 && bits !== 8) throw new UsageError(`${op}: unsupported bit width`, { field: "bits", expected: "4 or 8", found: String(bits) });
  const G = checkQuantShape(op, N, K, s.groupSize), per = 32 / bits;
  if (s.kind === "gptq") {
    if (K % per !== 0 || N % per !== 0) throw new UsageError(`${op}: GPTQ shape is not whole words`, { field: "N, K", expected: `multiples of ${per}`, found: `${N}, ${K}` });
    checkBytes(op, "qweight", s.qweight, 4 * (K / per) * N, `[K/${per}, N] int32`);
    checkBytes(op, "qzeros", s.qzeros, 4 * G * (N / per), `[G=${G}, N/${per}] int32`);
    checkPerm(op, s.perm, K);
  } else {
    if (N % 8 !== 0) throw new UsageError(`${op}: AWQ N is not whole words`, { field: "N", expected: "a multiple of 8", found: String(N) });
    checkBytes(op, "qweight", s.qweight, 4 * K * (N / 8), "[K, N/8] int32");
    checkBytes(op, "qzeros", s.qzeros, 4 * G * (N / 8), `[G=${G}, N/8] int32`);
  }
  checkBytes(op, "scales", s.scales, 2 * G * N, `[G=${G}, N] f16`);
  return { source: s.kind === "awq" ? REPACK_SOURCE.awq : bits === 8 ? REPACK_SOURCE.gptq8 : REPACK_SOURCE.gptq4, g: Math.min(s.groupSize, K), G, q8: bits === 8 };
}

/** Throws when the addon could not allocate the layout. */
export function packedOrThrow(op: string, info: NativePackedInfo | null, N: number, K: number): NativePackedInfo {
  if (info === null) {
    throw new UsageError(`${op}: out of memory for a packed [${N}, ${K}] matrix`, {
      field: "N, K", expected: "memory for the packed layout", found: "mmap / aligned_alloc failed",
      hint: "free other models or use a machine with more memory",
    });
  }
  return info;
}

/** Checks matmulPacked's arguments; returns the output array and the f32-activation flag. */
export function validateMatmulPacked(
  x: Float32Array, w: PackedWeight, M: number, bias: Float32Array | undefined, out: Float32Array | undefined, opts: MatmulPackedOptions,
): { y: Float32Array; f32Acts: boolean } {
  const op = "matmulPacked";
  if (!(w instanceof PackedWeight)) {
    throw new UsageError(`${op}: w must be a PackedWeight`, { field: "w", expected: "the result of packQ4, packQ8 or pack16", found: describeArray(w) });
  }
  checkInt(op, "M", M, 0);
  checkArray(op, "x", x, Float32Array, M * w.K, `[M=${M}, K=${w.K}]`);
  if (bias !== undefined) checkArray(op, "bias", bias, Float32Array, w.N, `[N=${w.N}]`);
  const acts = opts.activations ?? "int8";
  if (acts !== "int8" && acts !== "f32") {
    throw new UsageError(`${op}: unknown activations option`, { field: "opts.activations", expected: '"int8" or "f32"', found: String(acts) });
  }
  const y = out ?? new Float32Array(M * w.N);
  if (out !== undefined) {
    if (!(out instanceof Float32Array) || out.length < M * w.N) {
      throw new UsageError(`${op}: out must be a Float32Array of at least M·N elements`, { field: "out", expected: `Float32Array [M=${M}, N=${w.N}]`, found: describeArray(out) });
    }
    for (const [name, a] of [["x", x], ["bias", bias]] as const) {
      if (a !== undefined && a.buffer === out.buffer && out.byteOffset < a.byteOffset + a.byteLength && a.byteOffset < out.byteOffset + out.byteLength) {
        throw new UsageError(`${op}: out overlaps ${name}`, { field: "out", expected: `memory disjoint from ${name}`, found: "shared bytes", hint: "pass a separate output array" });
      }
    }
  }
  return { y, f32Acts: acts === "f32" };
}

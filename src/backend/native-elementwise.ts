/**
 * The forward pass's elementwise ops on the native backend (native/src/elementwise.cc,
 * kernel_impl.h rmsNormRow / ropeRows / addRows / toF16Rows / argmaxRow): RMSNorm, RoPE, the
 * residual add, the f16 KV-row store and the greedy pick over the logits. nn/block.ts and nn/model.ts call them through the optional
 * Backend methods when the backend has them (and BlockContext.exactElementwise is off);
 * nn/block.ts rmsNorm, nn/rope.ts RopeTable.apply, `+` and tensor/dtype.ts f32ToF16 are the
 * specifications (test/kernels/elementwise.test.ts), generate/sampler.ts argmax argmax's. native.ts constructs this with its addon
 * when the addon has these exports; every argument is validated here.
 */
import { UsageError } from "../util/errors.ts";
import { checkF32, checkInt, checkNoOverlap, describeArray } from "./native-call.ts";
import { KEY_BLOCK } from "./backend.ts";
import { OpKind, type StepRecorder } from "./native-graph.ts";

/** The addon's elementwise exports (native/src/addon.cc). */
export interface ElementwiseAddon {
  rmsNorm(x: Float32Array, w: Float32Array, T: number, H: number, eps: number, out: Float32Array): void;
  rope(x: Float32Array, T: number, nHeads: number, headDim: number, pos0: number, cos: Float32Array, sin: Float32Array): void;
  add(a: Float32Array, b: Float32Array, out: Float32Array, n: number): void;
  toF16(src: Float32Array, dst: Uint16Array, n: number): void;
  /** absent in an addon built before the blocked key cache */
  toF16Keys?(src: Float32Array, dst: Uint16Array, T: number, pos0: number, nKvHead: number, headDim: number): void;
  /** absent in a build before it (NativeBackend.argmax is then undefined) */
  argmax?(x: Float32Array, n: number): number;
}

/** Whether `a` is exactly `out` in memory (same buffer, same first byte): the in-place call the kernels allow. */
function samePlace(a: ArrayBufferView, out: ArrayBufferView): boolean {
  return a.buffer === out.buffer && a.byteOffset === out.byteOffset;
}

export class ElementwiseKernels {
  readonly #addon: ElementwiseAddon;
  /** NativeBackend.recordStep's recorder while a step is recorded: the calls then add descriptors instead of running. */
  rec: StepRecorder | null = null;
  constructor(addon: ElementwiseAddon) {
    this.#addon = addon;
  }

  /** out[T, H] = x / sqrt(mean(x²) + eps) · w per row; out may be x (in place), not a part of it. */
  rmsNorm(x: Float32Array, w: Float32Array, T: number, H: number, eps: number, out: Float32Array): void {
    const op = "rmsNorm";
    checkInt(op, "T", T, 0);
    checkInt(op, "H", H, 1);
    if (!(eps >= 0 && Number.isFinite(eps))) throw new UsageError(`${op}: eps must be a finite number ≥ 0`, { field: "eps", expected: "≥ 0", found: String(eps) });
    checkF32(op, "x", x, T * H, `x [T=${T}, H=${H}]`);
    checkF32(op, "w", w, H, `w [H=${H}]`);
    checkF32(op, "out", out, T * H, `out [T=${T}, H=${H}]`);
    checkNoOverlap(op, out, T * H, { w: [w, H], ...(samePlace(x, out) ? {} : { x: [x, T * H] }) });
    if (this.rec !== null) this.rec.op(OpKind.rmsNorm, { eps, ints: [T, H], ptrs: [x, w, out] });
    else if (T > 0) this.#addon.rmsNorm(x, w, T, H, eps, out);
  }

  /** x [T, nHeads·headDim] rotated in place for positions pos0.. by the tables cos/sin [≥ pos0+T, headDim/2] (RopeTable). */
  rope(x: Float32Array, T: number, nHeads: number, headDim: number, pos0: number, cos: Float32Array, sin: Float32Array): void {
    const op = "rope";
    checkInt(op, "T", T, 0);
    checkInt(op, "nHeads", nHeads, 1);
    checkInt(op, "headDim", headDim, 2);
    checkInt(op, "pos0", pos0, 0);
    if (headDim % 2 !== 0) throw new UsageError(`${op}: headDim must be even`, { field: "headDim", expected: "an even number", found: String(headDim) });
    const half = headDim / 2, n = T * nHeads * headDim;
    checkF32(op, "x", x, n, `x [T=${T}, nHeads·headDim=${nHeads * headDim}]`);
    checkF32(op, "cos", cos, (pos0 + T) * half, `cos [pos0+T=${pos0 + T}, headDim/2=${half}]`);
    checkF32(op, "sin", sin, (pos0 + T) * half, `sin [pos0+T=${pos0 + T}, headDim/2=${half}]`);
    checkNoOverlap(op, x, n, { cos: [cos, (pos0 + T) * half], sin: [sin, (pos0 + T) * half] });
    if (this.rec !== null) this.rec.op(OpKind.rope, { ints: [T, nHeads, headDim, pos0 - this.rec.pos], ptrs: [x, cos, sin] });
    else if (T > 0) this.#addon.rope(x, T, nHeads, headDim, pos0, cos, sin);
  }

  /** out[i] = a[i] + b[i] for i < n; out may be a or b (in place), not a part of one. */
  add(a: Float32Array, b: Float32Array, out: Float32Array, n: number): void {
    const op = "add";
    checkInt(op, "n", n, 0);
    checkF32(op, "a", a, n, `a [n=${n}]`);
    checkF32(op, "b", b, n, `b [n=${n}]`);
    checkF32(op, "out", out, n, `out [n=${n}]`);
    checkNoOverlap(op, out, n, { ...(samePlace(a, out) ? {} : { a: [a, n] }), ...(samePlace(b, out) ? {} : { b: [b, n] }) });
    if (this.rec !== null) this.rec.op(OpKind.add, { ints: [n], ptrs: [a, b, out] });
    else if (n > 0) this.#addon.add(a, b, out, n);
  }

  /** dst[i] = f16 bits of src[i] (round to nearest even, as f32ToF16; a NaN stays a NaN) for i < n. */
  toF16(src: Float32Array, dst: Uint16Array, n: number): void {
    const op = "toF16";
    checkInt(op, "n", n, 0);
    checkF32(op, "src", src, n, `src [n=${n}]`);
    if (!(dst instanceof Uint16Array) || dst.length < n) {
      throw new UsageError(`${op}: dst must be a Uint16Array of at least ${n} elements`, { field: "dst", expected: `Uint16Array [n=${n}]`, found: describeArray(dst) });
    }
    if (src.buffer === dst.buffer && src.byteOffset < dst.byteOffset + 2 * n && dst.byteOffset < src.byteOffset + 4 * n) {
      throw new UsageError(`${op}: dst overlaps src`, { field: "dst", expected: "memory disjoint from src", found: "shared bytes", hint: "pass a separate dst array" });
    }
    if (this.rec !== null) this.rec.op(OpKind.toF16, { ints: [n], ptrs: [src, dst] });
    else if (n > 0) this.#addon.toF16(src, dst, n);
  }

  /**
   * Keys src [T, nKvHead·headDim] of positions pos0.. rounded as toF16 into the blocked key cache dst
   * (AttentionShape.keyBlocks: [⌈positions/32⌉][nKvHead][headDim][32]); dst holds whole blocks up to pos0+T.
   */
  toF16Keys(src: Float32Array, dst: Uint16Array, T: number, pos0: number, nKvHead: number, headDim: number): void {
    const op = "toF16Keys";
    checkInt(op, "T", T, 0);
    checkInt(op, "pos0", pos0, 0);
    checkInt(op, "nKvHead", nKvHead, 1);
    checkInt(op, "headDim", headDim, 1);
    const row = nKvHead * headDim, n = T * row, blocks = Math.ceil((pos0 + T) / KEY_BLOCK);
    checkF32(op, "src", src, n, `src [T=${T}, nKvHead·headDim=${row}]`);
    if (!(dst instanceof Uint16Array) || dst.length < blocks * KEY_BLOCK * row) {
      throw new UsageError(`${op}: dst must be a Uint16Array of whole blocks of ${KEY_BLOCK} positions up to pos0+T=${pos0 + T}`, {
        field: "dst", expected: `Uint16Array [${blocks} blocks, nKvHead·headDim=${row}, ${KEY_BLOCK}] = ${blocks * KEY_BLOCK * row} elements`, found: describeArray(dst),
        hint: "a blocked key cache's capacity rounds up to a multiple of 32 positions (KvCache)",
      });
    }
    if (src.buffer === dst.buffer) {
      throw new UsageError(`${op}: dst shares src's buffer`, { field: "dst", expected: "memory disjoint from src", found: "the same ArrayBuffer", hint: "pass a separate dst array" });
    }
    if (this.rec !== null) this.rec.op(OpKind.toF16Keys, { ints: [T, nKvHead, headDim, pos0 - this.rec.pos], ptrs: [src, dst], fixed: [1] });
    else if (T > 0) this.#addon.toF16Keys!(src, dst, T, pos0, nKvHead, headDim);
  }

  /** id[0] = the greedy pick over x[0, n) (Backend.argmax; n ≥ 1). */
  argmax(x: Float32Array, n: number, id: Int32Array): void {
    const op = "argmax";
    checkInt(op, "n", n, 1);
    checkF32(op, "x", x, n, `x [n=${n}]`);
    if (!(id instanceof Int32Array) || id.length < 1) {
      throw new UsageError(`${op}: id must be an Int32Array of at least 1 element`, { field: "id", expected: "Int32Array [1]", found: describeArray(id) });
    }
    if (this.rec !== null) this.rec.op(OpKind.argmax, { ints: [n], ptrs: [x, id] });
    else id[0] = this.#addon.argmax!(x, n);
  }
}

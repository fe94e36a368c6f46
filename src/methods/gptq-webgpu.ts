/// <reference types="@webgpu/types" />
/**
 * GPU-assisted GPTQ (issue 13 item 4): the Hessian and the lazy-batch sweep of each linear on
 * the GPU, f32 throughout; `quantize-llm gptq --device gpu` (src/quantize/pipeline.ts).
 *
 *   GpuHessianAccumulator  H = (2/n)·Σ x·xᵀ (kernels/syrk.wgsl) as the same running average as
 *                          HessianAccumulatorF32 (gptq-fast.ts, gptq.py add_batch), in one f32
 *                          [K, K] GPU buffer; x [T, K] uploaded per sequence, H read back once
 *                          (the CPU factorises it: Hinv = Cholesky(H⁻¹)ᵀ, as without the GPU).
 *   GpuGptq.quantize       the backend's gptqQuantize contract (GptqKernelArgs) on the GPU:
 *                          kernels/gptq.wgsl, the blocks of native/src/gptq.cc (blockEnds),
 *                          every dispatch of a layer in one submission.
 *
 * Numerics against the CPU kernel (native/src/gptq.cc): grids, codes and zero points are exact
 * functions of the f32 weights (gptq.wgsl), so with identical running weights the codes are
 * identical. The running weights can differ in their last bits: the GPU compiler may fuse
 * w − e·h into an FMA (the CPU's in-block update does not, its GEMM tile does), its f32
 * division may be off by an ulp (WGSL allows 2.5 ulp), and the loss is an f32 Kahan sum per
 * row (the CPU's is f64). A code that sits within that noise of a grid midpoint can then flip,
 * and the row's later errors follow it — the same effect, and the same bound, as the CPU
 * kernel's f32 against the f64 reference (test/webgpu/gptq.test.ts states what it measured).
 * The double rounding f64 → f32 → f16 of the CPU's scale is not reproduced (the GPU rounds
 * (xmax − xmin)/maxq to f32 correctly, once): they differ when that quotient lies within 2⁻⁵³
 * relative of an f32 midpoint.
 */
import type { GptqKernelArgs, KernelCallOptions } from "../backend/backend.ts";
import { USAGE, type GpuContext } from "../backend/webgpu-device.ts";
import { GpuKernels, grid2d, UniformArena, type KernelName, type Op } from "../backend/webgpu-kernels.ts";
import { numGroups } from "../tensor/quantized.ts";
import { invariant } from "../util/errors.ts";
import type { GptqSweepDevice } from "./gptq-fast.ts";

/** What the quantize pipeline needs of a Hessian accumulator (HessianAccumulatorF32 has the same shape). */
export interface HessianSink {
  addAsync(backend: unknown, x: Float32Array, T: number, opts?: KernelCallOptions): Promise<void>;
  hessian(): Float32Array | Promise<Float32Array>;
  readonly count: number;
}

export class GpuHessianAccumulator implements HessianSink {
  private sequences = 0;
  private readonly arena: UniformArena;
  private op: Op | null = null;
  /** H as last read back (null after an add). */
  private readBack: Float32Array | null = null;

  /**
   * `h` [K, K] and `x` [maxT, K] are the caller's GPU buffers (GpuGptq reuses them between
   * layers; H is cleared here), `storage` the CPU memory H is read back into (else a fresh array).
   */
  private constructor(
    private readonly k: GpuKernels, readonly K: number, readonly maxT: number,
    private readonly h: GPUBuffer, private readonly x: GPUBuffer, private readonly storage: Float32Array | undefined, private readonly owned: boolean,
  ) {
    this.arena = new UniformArena(k.device, 1);
    const enc = k.device.createCommandEncoder();
    enc.clearBuffer(h, 0, K * K * 4);
    k.device.queue.submit([enc.finish()]);
  }

  static async create(ctx: GpuContext | GpuKernels, K: number, maxT: number, bufs?: { h: GPUBuffer; x: GPUBuffer; storage?: Float32Array }): Promise<GpuHessianAccumulator> {
    const k = ctx instanceof GpuKernels ? ctx : new GpuKernels(ctx);
    const a = new GpuHessianAccumulator(
      k, K, maxT, bufs?.h ?? k.buffer(K * K * 4, `GPTQ Hessian [${K}, ${K}]`), bufs?.x ?? k.buffer(maxT * K * 4, `GPTQ layer inputs [${maxT}, ${K}]`),
      bufs?.storage, bufs === undefined,
    );
    const pipe = await k.pipeline("syrk");
    a.op = { name: "syrk", pipeline: pipe, slot: a.arena.alloc(), plan: null, bindGroup: k.bindGroup(pipe, [[0, a.arena.binding(0)], [1, a.x], [2, a.h]]) };
    return a;
  }

  /** Add one sequence's inputs x [T, K] (queued; ordered with later adds and the read-back). */
  add(x: Float32Array, T: number): void {
    const { K, op } = this;
    invariant(op !== null && T >= 1 && T <= this.maxT && x.length >= T * K, "GpuHessianAccumulator.add: x [T, K] with 1 ≤ T ≤ maxT");
    const n = this.sequences;
    const dev = this.k.device;
    dev.queue.writeBuffer(this.x, 0, x.buffer, x.byteOffset, T * K * 4);
    op.plan = { params: [T, K, { f: 2 / (n + 1) }, { f: n / (n + 1) }], groups: [Math.ceil(K / 16), Math.ceil(K / 16), 1] };
    this.arena.write(op.slot, op.plan.params);
    this.arena.flush(dev);
    const enc = dev.createCommandEncoder();
    this.k.encode(enc, [op]);
    dev.queue.submit([enc.finish()]);
    this.sequences++;
    this.readBack = null;
  }

  /** add() behind HessianAccumulatorF32's signature (the upload is queued, the kernel runs on the GPU). */
  async addAsync(_backend: unknown, x: Float32Array, T: number): Promise<void> { this.add(x, T); }

  get count(): number { return this.sequences; }

  /** H [K, K] = (2/n)·Σ x·xᵀ, read back (once per state: later calls return the same array until the next add). */
  async hessian(): Promise<Float32Array> {
    if (this.readBack === null) {
      const h = await this.k.read(this.h, this.K * this.K * 4);
      this.readBack = this.storage ? (this.storage.subarray(0, this.K * this.K).set(h), this.storage.subarray(0, this.K * this.K)) : h;
    }
    return this.readBack;
  }

  destroy(): void {
    this.arena.buffer.destroy();
    if (this.owned) { this.h.destroy(); this.x.destroy(); }
  }
}

/** Block ends of the sweep: native/src/gptq.cc blockEnds (cut so that, with current-weight grids, no group straddles two blocks). */
export function gptqBlockEnds(K: number, B: number, g: number, dynamic: boolean): number[] {
  const ends: number[] = [];
  for (let i1 = 0; i1 < K;) {
    let i2 = Math.min(K, i1 + B);
    if (dynamic) {
      const s = Math.floor((i2 - 1) / g) * g; // the last group start before i2
      if (s > i1 && Math.min(s + g, K) > i2) i2 = s;
    }
    ends.push(i2);
    i1 = i2;
  }
  return ends;
}

const SWEEP_KERNELS = ["gptq_load", "gptq_sweep", "gptq_update", "gptq_store"] as const satisfies readonly KernelName[];
const SYM = 1, STATIC = 2, BLOCK_START = 4;

/** The GPU half of `gptq --device gpu`: Hessian accumulators and the sweep, on one device, buffers reused between layers. */
export class GpuGptq implements GptqSweepDevice {
  private readonly pipes = new Map<string, GPUComputePipeline>();
  private readonly pool = new Map<string, GPUBuffer>();

  private constructor(readonly k: GpuKernels) {}

  static async open(ctx: GpuContext): Promise<GpuGptq> {
    const g = new GpuGptq(new GpuKernels(ctx));
    for (const name of [...SWEEP_KERNELS, "syrk"] as const) g.pipes.set(name, await g.k.pipeline(name));
    return g;
  }

  get description(): string { return this.k.ctx.info.description || this.k.ctx.info.device; }

  /** A GPU buffer of at least `bytes` for `role`, reused (grown) between layers. */
  private buf(role: string, bytes: number): GPUBuffer {
    const have = this.pool.get(role);
    if (have !== undefined && have.size >= bytes) return have;
    have?.destroy();
    const b = this.k.buffer(bytes, `GPTQ ${role}`);
    this.pool.set(role, b);
    return b;
  }

  /** A fresh Hessian accumulator in slot `slot` (its GPU buffers are reused; H is read back into `storage`). */
  hessian(slot: number, K: number, maxT: number, storage?: Float32Array): Promise<GpuHessianAccumulator> {
    return GpuHessianAccumulator.create(this.k, K, maxT, {
      h: this.buf(`Hessian ${slot}`, K * K * 4), x: this.buf(`Hessian ${slot} inputs`, maxT * K * 4), ...(storage ? { storage } : {}),
    });
  }

  /** Backend.gptqQuantize on the GPU: fills codes, dequantized, scales and zeros of `a`, returns the loss. */
  async quantize(a: GptqKernelArgs, call: KernelCallOptions = {}): Promise<number> {
    const { N, K } = a;
    const g = a.groupSize, G = numGroups(K, g);
    const dev = this.k.device;
    const isStatic = a.colGroup !== null;
    const blockStart = a.blockStartGrids === true && !isStatic;
    const ends = gptqBlockEnds(K, Math.max(1, a.blockSize), g, !isStatic && !blockStart);
    let Bmax = 0;
    ends.forEach((e, i) => { Bmax = Math.max(Bmax, e - (i === 0 ? 0 : ends[i - 1]!)); });
    call.signal?.throwIfAborted();

    // Inputs.
    const srcCol = new Int32Array(K); // [K] original column of permuted column i, −1 = dead
    const posOf = new Uint32Array(K); // [K] permuted position of original column c
    for (let i = 0; i < K; i++) {
      const c = a.perm ? a.perm[i]! : i;
      srcCol[i] = a.dead?.[c] ? -1 : c;
      posOf[c] = i;
    }
    const colGroup = a.colGroup ? Uint32Array.from(a.colGroup) : new Uint32Array(K); // [K]
    const state = new Float32Array(4 * N); // [4, N] scale, zero, loss, compensation
    state.fill(1, 0, N);
    const w = this.buf("weights", N * K * 4); // [N, K] in; then the dequantized output
    const wt = this.buf("running weights", N * K * 4); // [K, N]
    const hinv = this.buf("Hinv", K * K * 4); // [K, K]
    const blk = this.buf("block", 2 * Bmax * N * 4); // [2B, N]
    const scales = this.buf("scales", N * G * 4); // [N, G]
    const zeros = this.buf("zeros", N * G * 4); // [N, G]
    const cg = this.buf("column groups", K * 4);
    const src = this.buf("source columns", K * 4);
    const pos = this.buf("column positions", K * 4);
    const st = this.buf("row state", 4 * N * 4);
    const codes = this.buf("codes", Math.ceil((N * K) / 4) * 4);
    const q = dev.queue;
    q.writeBuffer(w, 0, a.w.buffer, a.w.byteOffset, N * K * 4);
    q.writeBuffer(hinv, 0, a.hinv.buffer, a.hinv.byteOffset, K * K * 4);
    q.writeBuffer(cg, 0, colGroup);
    q.writeBuffer(src, 0, srcCol);
    q.writeBuffer(pos, 0, posOf);
    q.writeBuffer(st, 0, state);
    if (isStatic) {
      q.writeBuffer(scales, 0, a.scales.buffer, a.scales.byteOffset, N * G * 4);
      q.writeBuffer(zeros, 0, Uint32Array.from(a.zeros));
    }

    // One uniform slot per dispatch, one submission for the layer.
    const arena = new UniformArena(dev, 2 + 2 * ends.length);
    const flags = (a.sym ? SYM : 0) | (isStatic ? STATIC : 0) | (blockStart ? BLOCK_START : 0);
    const maxq = 2 ** a.bits - 1;
    const enc = dev.createCommandEncoder();
    const dispatch = (name: (typeof SWEEP_KERNELS)[number], i1: number, i2: number, groups: [number, number, number], bufs: [number, GPUBuffer][]): void => {
      const slot = arena.alloc();
      arena.write(slot, [N, K, i1, i2, maxq, g, G, flags]);
      const pipe = this.pipes.get(name)!;
      const pass = enc.beginComputePass();
      pass.setPipeline(pipe);
      pass.setBindGroup(0, this.k.bindGroup(pipe, [[0, arena.binding(slot)], ...bufs]));
      pass.dispatchWorkgroups(...groups);
      pass.end();
    };
    const rowGroups = Math.ceil(N / 64);
    dispatch("gptq_load", 0, 0, [rowGroups, Math.min(K, 65535), Math.ceil(K / 65535)], [[1, w], [2, wt], [3, src]]);
    let i1 = 0;
    for (const i2 of ends) {
      const B = i2 - i1;
      if (blockStart) enc.copyBufferToBuffer(wt, i1 * N * 4, blk, B * N * 4, B * N * 4);
      dispatch("gptq_sweep", i1, i2, [rowGroups, 1, 1], [[2, wt], [4, hinv], [5, blk], [6, scales], [7, zeros], [8, cg], [9, st]]);
      if (i2 < K) dispatch("gptq_update", i1, i2, [rowGroups, Math.ceil((K - i2) / 64), 1], [[2, wt], [4, hinv], [5, blk]]);
      i1 = i2;
    }
    dispatch("gptq_store", 0, 0, grid2d(Math.ceil(Math.ceil((N * K) / 4) / 64)), [[2, wt], [6, scales], [7, zeros], [8, cg], [10, w], [11, codes], [12, pos]]);
    arena.flush(dev);
    q.submit([enc.finish()]);

    const [dq, cw, sc, zr, rs] = await Promise.all([
      this.k.read(w, N * K * 4), this.k.read(codes, Math.ceil((N * K) / 4) * 4),
      this.k.read(scales, N * G * 4), this.k.read(zeros, N * G * 4), this.k.read(st, 4 * N * 4),
    ]);
    arena.buffer.destroy();
    call.signal?.throwIfAborted();
    a.dequantized.set(dq.subarray(0, N * K));
    a.codes.set(new Uint8Array(cw.buffer, cw.byteOffset, N * K));
    if (!isStatic) {
      a.scales.set(sc.subarray(0, N * G));
      const zu = new Uint32Array(zr.buffer, zr.byteOffset, N * G);
      for (let i = 0; i < N * G; i++) a.zeros[i] = zu[i]!;
    }
    let loss = 0; // summed in row order, f64
    for (let n = 0; n < N; n++) loss += rs[2 * N + n]! - rs[3 * N + n]!;
    return loss / 2;
  }

  destroy(): void {
    for (const b of this.pool.values()) b.destroy();
    this.pool.clear();
  }
}

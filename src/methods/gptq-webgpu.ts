/// <reference types="@webgpu/types" />
/**
 * GPU-assisted GPTQ, first half (issue 13 item 4): the Hessian H = (2/n)·Σ x·xᵀ accumulated on
 * the GPU (kernels/syrk.wgsl) as the same running average as HessianAccumulatorF32
 * (gptq-fast.ts, gptq.py add_batch), H kept in one f32 [K, K] GPU buffer; x [T, K] is uploaded
 * per sequence and H read back once. The lazy-batch column update is not on the GPU yet, and
 * the quantize pipeline does not use this: eval/bench-webgpu.ts times it against the CPU's
 * syrk (the issue asks for the GPU path only where it beats the CPU on a real GPU).
 */
import type { GpuContext } from "../backend/webgpu-device.ts";
import { GpuKernels, UniformArena, type Op } from "../backend/webgpu-kernels.ts";
import { invariant } from "../util/errors.ts";

export class GpuHessianAccumulator {
  private sequences = 0;
  private readonly k: GpuKernels;
  private readonly arena: UniformArena;
  /** [K, K] the running H */
  private readonly h: GPUBuffer;
  /** [maxT, K] one sequence's inputs */
  private readonly x: GPUBuffer;
  private op: Op | null = null;

  private constructor(ctx: GpuContext, readonly K: number, readonly maxT: number) {
    this.k = new GpuKernels(ctx);
    this.arena = new UniformArena(ctx.device, 1);
    this.h = this.k.buffer(K * K * 4, `GPTQ Hessian [${K}, ${K}]`);
    this.x = this.k.buffer(maxT * K * 4, `GPTQ layer inputs [${maxT}, ${K}]`);
  }

  static async create(ctx: GpuContext, K: number, maxT: number): Promise<GpuHessianAccumulator> {
    const a = new GpuHessianAccumulator(ctx, K, maxT);
    const pipe = await a.k.pipeline("syrk");
    a.op = { name: "syrk", pipeline: pipe, slot: a.arena.alloc(), plan: null, bindGroup: a.k.bindGroup(pipe, [[0, a.arena.binding(0)], [1, a.x], [2, a.h]]) };
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
  }

  get count(): number { return this.sequences; }

  /** H [K, K] = (2/n)·Σ x·xᵀ, read back. */
  async hessian(): Promise<Float32Array> {
    return this.k.read(this.h, this.K * this.K * 4);
  }

  destroy(): void { this.h.destroy(); this.x.destroy(); }
}

/// <reference types="@webgpu/types" />
/**
 * The GPU ops of the forward pass, each mirroring one step of src/nn/ (the specification):
 * matmul (backend.matmul), rmsNorm, RopeTable.apply, attention (backend.attention),
 * embedding gather, SiLU·up. An op is built once with its buffers; `plan*` sets the
 * parameters and grid for one step.
 */
import { invariant } from "../util/errors.ts";
import { GpuError } from "./webgpu-device.ts";
import { GpuKernels, grid2d, UniformArena, type KernelName, type Op, type WeightFormat } from "./webgpu-kernels.ts";
import { layoutBytes, type GpuWeightLayout } from "./webgpu-weights.ts";

/** A linear layer's weights on the GPU. */
export interface GpuLinear {
  format: WeightFormat;
  N: number;
  K: number;
  Kw: number;
  G: number;
  gw: number;
  /** q4: codes, scales, zeros; f16: rows */
  buffers: GPUBuffer[];
  bias: GPUBuffer | null;
  /** act-order column gather (q4), or null */
  perm: GPUBuffer | null;
  bytes: number;
}

export function uploadLinear(k: GpuKernels, l: GpuWeightLayout, label: string, bias?: Float32Array): GpuLinear {
  const base = { N: l.N, K: l.K, Kw: l.Kw, bias: bias ? k.buffer(bias, `${label}.bias`) : null, bytes: layoutBytes(l) + (bias?.byteLength ?? 0) };
  if (l.format === "f16") return { ...base, format: "f16", G: 1, gw: l.Kw, buffers: [k.buffer(l.rows, `${label} (f16 [${l.N}, ${l.K}])`)], perm: null };
  return {
    ...base, format: "q4", G: l.G, gw: l.gw,
    buffers: [k.buffer(l.codes, `${label}.codes`), k.buffer(l.scales, `${label}.scales`), k.buffer(l.zeros, `${label}.zeros`)],
    perm: l.perm ? k.buffer(l.perm, `${label}.perm`) : null,
  };
}

/** Rows of M below which the decode kernel (one workgroup per output) is used. */
export const GEMV_MAX_ROWS = 8;
/** Rows of M from which the subgroup-matrix kernel is used when the device has it. */
export const SGMAT_MIN_ROWS = 16;

export interface MatmulPipelines { gemv: GPUComputePipeline; gemm: GPUComputePipeline; sgmat: GPUComputePipeline | null }

/**
 * The matmul pipelines of one weight format. The subgroup-matrix kernel is compiled only where
 * the device offers the feature; if it does not compile there (it has never run on a real
 * GPU yet), the tiled kernel stands in and the reason is kept in k.sgmatErrors (reported by
 * eval/bench-webgpu.ts and failed by test/webgpu/kernels.test.ts) rather than taking the whole
 * GPU path down.
 */
export async function matmulPipelines(k: GpuKernels, fmt: WeightFormat, useSgmat: boolean): Promise<MatmulPipelines> {
  let sgmat: GPUComputePipeline | null = null;
  if (useSgmat && k.sgmatConfig !== null) {
    try {
      sgmat = await k.pipeline(`sgmat-${fmt}`);
    } catch (e) {
      if (!(e instanceof GpuError)) throw e;
      k.sgmatErrors.set(fmt, e.message);
    }
  }
  return { gemv: await k.pipeline(`gemv-${fmt}`), gemm: await k.pipeline(`gemm-${fmt}`), sgmat };
}

export class MatmulOp {
  readonly ops: Op[] = [];
  private readonly gather: Op | null = null;
  private readonly mm: Op;
  constructor(
    private readonly k: GpuKernels, arena: UniformArena, private readonly pipes: MatmulPipelines, gatherPipe: GPUComputePipeline | null,
    readonly lin: GpuLinear, x: GPUBuffer, y: GPUBuffer, scratch: GPUBuffer | null, readonly name: string,
  ) {
    let xin = x;
    if (lin.perm !== null) {
      invariant(scratch !== null && gatherPipe !== null, "act-order matmul needs a scratch buffer");
      const slot = arena.alloc();
      this.gather = { name: `${name}.gather`, pipeline: gatherPipe, slot, plan: null,
        bindGroup: k.bindGroup(gatherPipe, [[0, arena.binding(slot)], [6, x], [7, lin.perm], [8, scratch]]) };
      this.ops.push(this.gather);
      xin = scratch;
    }
    const slot = arena.alloc();
    const w: [number, GPUBuffer][] = lin.format === "q4" ? [[3, lin.buffers[0]!], [4, lin.buffers[1]!], [5, lin.buffers[2]!]] : [[3, lin.buffers[0]!]];
    this.mm = {
      name, pipeline: pipes.gemm, slot, plan: null,
      bindGroup: k.bindGroup(pipes.gemm, [[0, arena.binding(slot)], [1, xin], [2, y], ...w, [6, lin.bias ?? k.dummy]], k.matmulLayout(lin.format)),
    };
    this.ops.push(this.mm);
  }

  /** y[outOff + m·N + n] (+)= x[M, K] · Wᵀ (+ bias). */
  plan(arena: UniformArena, M: number, outOff: number, accumulate: boolean): void {
    const { N, K, Kw, G, gw } = this.lin;
    if (this.gather !== null) {
      this.gather.plan = { params: [M * K, K], groups: grid2d(Math.ceil((M * K) / 64)) };
      arena.write(this.gather.slot, this.gather.plan.params);
    }
    const params = [M, N, K, Kw, G, gw, outOff, (this.lin.bias ? 1 : 0) | (accumulate ? 2 : 0)];
    const sg = this.k.sgmatConfig;
    if (M < GEMV_MAX_ROWS) {
      const [gx, gy] = grid2d(N);
      this.mm.plan = { params, groups: [gx, gy, M], pipeline: this.pipes.gemv };
    } else if (this.pipes.sgmat !== null && sg !== null && M >= SGMAT_MIN_ROWS) {
      this.mm.plan = { params, groups: [Math.ceil(N / (2 * sg.N)), Math.ceil(M / (2 * sg.M)), 1], pipeline: this.pipes.sgmat };
    } else {
      this.mm.plan = { params, groups: [Math.ceil(N / 32), Math.ceil(M / 32), 1], pipeline: this.pipes.gemm }; // 8×8 invocations × 4×4 outputs
    }
    arena.write(this.mm.slot, params);
  }
}

/** An op over a fixed set of bindings with auto layout. */
export function simpleOp(k: GpuKernels, arena: UniformArena, pipeline: GPUComputePipeline, name: KernelName | string, buffers: [number, GPUBuffer][]): Op {
  const slot = arena.alloc();
  return { name, pipeline, slot, plan: null, bindGroup: k.bindGroup(pipeline, [[0, arena.binding(slot)], ...buffers]) };
}

export function setPlan(arena: UniformArena, op: Op, params: Parameters<UniformArena["write"]>[1], groups: [number, number, number]): void {
  op.plan = { params, groups };
  arena.write(op.slot, params);
}

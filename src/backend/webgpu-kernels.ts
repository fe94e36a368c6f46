/// <reference types="@webgpu/types" />
/**
 * WGSL kernels (kernels/*.wgsl) as pipelines, and the small toolkit the GPU runner and the
 * kernel tests share: buffers with limit checks, one uniform arena written once per step,
 * and "ops" (a pipeline + bind group + a plan giving its parameters and grid for a step).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { invariant } from "../util/errors.ts";
import { GpuError, MAP_READ, USAGE, type GpuContext } from "./webgpu-device.ts";

const KERNEL_DIR = fileURLToPath(new URL("../../kernels/", import.meta.url));
const sources = new Map<string, string>();
function source(file: string): string {
  let s = sources.get(file);
  if (s === undefined) { s = readFileSync(KERNEL_DIR + file, "utf8"); sources.set(file, s); }
  return s;
}

function fill(template: string, slots: Record<string, string>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
    const v = slots[k];
    invariant(v !== undefined, `kernel template slot {{${k}}} has no value`);
    return v;
  });
}

export type WeightFormat = "q4" | "f16";
export type MatmulKind = "gemv" | "gemm" | "sgmat";
export type KernelName = `${MatmulKind}-${WeightFormat}` | "rmsnorm" | "rope" | "attention" | "attention_f16" | "kv_store" | "embed" | "silu_mul" | "gather_cols" | "syrk"
  | "gptq_load" | "gptq_sweep" | "gptq_update" | "gptq_store";

/** Kernels that are one entry point of a shared file (the entry point is the kernel's name). */
const ENTRY_FILES: Partial<Record<KernelName, string>> = {
  embed: "elementwise", silu_mul: "elementwise", gather_cols: "elementwise",
  gptq_load: "gptq", gptq_sweep: "gptq", gptq_update: "gptq", gptq_store: "gptq",
};

/** Kernels whose file is not named after them (their entry point is main). */
const OTHER_FILES: Partial<Record<KernelName, string>> = { attention_f16: "attention", kv_store: "kv-store" };

/** The KV cache bindings and reads (the KV slot) of each attention kernel: f32 or f16 rows. */
const KV_READS: Partial<Record<KernelName, string>> = { attention: "kv-f32.wgsl", attention_f16: "kv-f16.wgsl" };

/** The kernel file of each matmul kind. */
const MATMUL_FILES: Record<MatmulKind, string> = { gemv: "gemv.wgsl", gemm: "gemm.wgsl", sgmat: "gemm-sgmat.wgsl" };

/** A kernel parameter: a u32, or an f32 when wrapped. */
export type Param = number | { f: number };

type Access = "uniform" | "read" | "rw";
const MATMUL_BINDINGS: Record<WeightFormat, [number, Access][]> = {
  q4: [[0, "uniform"], [1, "read"], [2, "rw"], [3, "read"], [4, "read"], [5, "read"], [6, "read"]],
  f16: [[0, "uniform"], [1, "read"], [2, "rw"], [3, "read"], [6, "read"]],
};

/** Max workgroups per grid dimension that every WebGPU device supports. */
const MAX_GROUPS = 65535;

/** A flat grid of `groups` workgroups as [x, y] (kernels linearize wid.x + wid.y·nwg.x). */
export function grid2d(groups: number): [number, number, number] {
  const x = Math.min(groups, MAX_GROUPS);
  return [x, Math.ceil(groups / x), 1];
}

export interface StepPlan { params: Param[]; groups: [number, number, number]; pipeline?: GPUComputePipeline }

/** One dispatch of a step: fixed bindings, a plan per step. */
export interface Op {
  name: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  slot: number;
  plan: StepPlan | null;
}

/** Uniform parameters of every op of a step, in one buffer (256-byte slots), written once per step. */
export class UniformArena {
  static readonly SLOT = 256;
  readonly buffer: GPUBuffer;
  private readonly data: DataView;
  private used = 0;
  /** One past the highest slot written since creation (programs built before a reset still write theirs). */
  private written = 0;
  constructor(device: GPUDevice, readonly slots: number) {
    this.buffer = device.createBuffer({ size: slots * UniformArena.SLOT, usage: USAGE.UNIFORM | USAGE.COPY_DST, label: "uniforms" });
    this.data = new DataView(new ArrayBuffer(slots * UniformArena.SLOT));
  }
  /** Forget all slots (ops built before hold stale slots: rebuild them). */
  reset(): void { this.used = 0; }
  alloc(): number {
    invariant(this.used < this.slots, "uniform arena full");
    return this.used++;
  }
  binding(slot: number): GPUBufferBinding { return { buffer: this.buffer, offset: slot * UniformArena.SLOT, size: 32 }; }
  write(slot: number, params: Param[]): void {
    invariant(params.length <= 8, "at most 8 parameters per kernel");
    this.written = Math.max(this.written, slot + 1);
    params.forEach((p, i) => {
      const o = slot * UniformArena.SLOT + 4 * i;
      if (typeof p === "number") this.data.setUint32(o, p, true); else this.data.setFloat32(o, p.f, true);
    });
  }
  flush(device: GPUDevice): void { device.queue.writeBuffer(this.buffer, 0, this.data.buffer, 0, Math.max(this.used, this.written) * UniformArena.SLOT); }
}

export class GpuKernels {
  readonly device: GPUDevice;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly layouts = new Map<WeightFormat, GPUBindGroupLayout>();
  /** A 16-byte storage buffer bound where a kernel's optional input is absent. */
  readonly dummy: GPUBuffer;
  /** Weight format → why its subgroup-matrix kernel could not be built (the tiled kernel is used instead). */
  readonly sgmatErrors = new Map<WeightFormat, string>();

  constructor(readonly ctx: GpuContext) {
    this.device = ctx.device;
    this.dummy = this.buffer(16, "dummy");
  }

  get subgroups(): boolean { return this.ctx.info.subgroups; }

  /** The subgroup-matrix config the sgmat kernels use (the first f16→f32 one), or null. */
  get sgmatConfig(): { M: number; N: number; K: number } | null {
    return this.ctx.info.subgroupMatrixFeature === null ? null : (this.ctx.info.subgroupMatrixConfigs[0] ?? null);
  }

  /** The WGSL of a kernel, every slot filled (exported for the GPU check report). */
  wgsl(name: KernelName): string {
    const sg = this.subgroups;
    const head = ["enable f16;", ...(sg ? ["enable subgroups;"] : [])];
    const slots: Record<string, string> = {
      REDUCE: source(sg ? "reduce-subgroup.wgsl" : "reduce-workgroup.wgsl"),
      SGID_PARAM: sg ? ", @builtin(subgroup_invocation_id) sgid: u32" : "",
      SGID: sg ? "sgid" : "0u",
    };
    const kv = KV_READS[name];
    if (kv !== undefined) slots["KV"] = source(kv);
    const dash = name.indexOf("-");
    if (dash < 0) return [...head, fill(source(`${ENTRY_FILES[name] ?? OTHER_FILES[name] ?? name}.wgsl`), slots)].join("\n");
    const kind = name.slice(0, dash) as MatmulKind, fmt = name.slice(dash + 1) as WeightFormat;
    slots["MATMUL_COMMON"] = fill(source("matmul-common.wgsl"), { WEIGHTS: source(`weights-${fmt}.wgsl`) });
    if (kind === "sgmat") {
      const c = this.sgmatConfig;
      invariant(c !== null, "subgroup-matrix kernel requested without the feature");
      head.push("enable chromium_experimental_subgroup_matrix;");
      Object.assign(slots, { SM: String(c.M), SN: String(c.N), SK: String(c.K), SG: String(this.ctx.info.subgroupMaxSize) });
    }
    return [...head, fill(source(MATMUL_FILES[kind]), slots)].join("\n");
  }

  matmulLayout(fmt: WeightFormat): GPUBindGroupLayout {
    let l = this.layouts.get(fmt);
    if (l === undefined) {
      l = this.device.createBindGroupLayout({
        label: `matmul-${fmt}`,
        entries: MATMUL_BINDINGS[fmt].map(([binding, a]) => ({
          binding, visibility: 4 /* COMPUTE */,
          buffer: { type: a === "uniform" ? "uniform" : a === "rw" ? "storage" : "read-only-storage" },
        })),
      });
      this.layouts.set(fmt, l);
    }
    return l;
  }

  /** Compile (once) and return a pipeline; a WGSL or validation error becomes a GpuError. */
  async pipeline(name: KernelName): Promise<GPUComputePipeline> {
    const have = this.pipelines.get(name);
    if (have !== undefined) return have;
    const code = this.wgsl(name);
    const module = this.device.createShaderModule({ code, label: name });
    const info = await module.getCompilationInfo();
    const errs = info.messages.filter((m) => m.type === "error");
    if (errs.length > 0) {
      throw new GpuError(`WGSL kernel ${name} does not compile`, {
        field: name, found: errs.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; "),
        hint: "a driver/Dawn incompatibility; report it with the adapter description, and use --device cpu",
      });
    }
    const dash = name.indexOf("-");
    const entryPoint = dash < 0 && ENTRY_FILES[name] !== undefined ? name : "main";
    const layout: GPUPipelineLayout | "auto" = dash < 0 ? "auto"
      : this.device.createPipelineLayout({ bindGroupLayouts: [this.matmulLayout(name.slice(dash + 1) as WeightFormat)] });
    // Synchronous creation on purpose: dawn.node's createComputePipelineAsync aborts the
    // process on Mesa lavapipe (futex error from a worker thread).
    this.device.pushErrorScope("validation");
    let p: GPUComputePipeline | Error;
    try { p = this.device.createComputePipeline({ layout, compute: { module, entryPoint }, label: name }); } catch (e) { p = e as Error; }
    const err = await this.device.popErrorScope();
    if (p instanceof Error || err !== null) {
      throw new GpuError(`WebGPU pipeline ${name} could not be created`, {
        field: name, found: p instanceof Error ? p.message : err!.message, hint: "use --device cpu",
      });
    }
    this.pipelines.set(name, p);
    return p;
  }

  /** A storage buffer (optionally filled); checks the device's binding limit first. */
  buffer(data: ArrayBufferView | number, label: string, extraUsage = 0): GPUBuffer {
    const bytes = typeof data === "number" ? data : data.byteLength;
    const size = Math.max(16, Math.ceil(bytes / 4) * 4);
    const limit = Math.min(this.device.limits.maxStorageBufferBindingSize, this.device.limits.maxBufferSize);
    if (size > limit) {
      throw new GpuError("buffer too large for this GPU", {
        field: label, expected: `at most ${fmtBytes(limit)} per buffer (maxStorageBufferBindingSize of ${this.ctx.info.description || this.ctx.info.device})`,
        found: fmtBytes(size),
        hint: "use a 4-bit quantized model (int4 is 4× smaller than f16), a shorter --ctx, or a GPU whose driver allows larger storage buffers; or --device cpu",
      });
    }
    const mapped = typeof data !== "number";
    const b = this.device.createBuffer({ size, usage: USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC | extraUsage, mappedAtCreation: mapped, label });
    if (mapped) {
      new Uint8Array(b.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      b.unmap();
    }
    return b;
  }

  bindGroup(pipeline: GPUComputePipeline, entries: [number, GPUBuffer | GPUBufferBinding][], layout?: GPUBindGroupLayout): GPUBindGroup {
    return this.device.createBindGroup({
      layout: layout ?? pipeline.getBindGroupLayout(0),
      entries: entries.map(([binding, r]) => ({ binding, resource: "buffer" in r ? r : { buffer: r } })),
    });
  }

  /** Encode ops (those with a plan) in one compute pass; uniforms must be flushed first. */
  encode(enc: GPUCommandEncoder, ops: readonly Op[]): void {
    const pass = enc.beginComputePass();
    for (const op of ops) {
      if (op.plan === null) continue;
      pass.setPipeline(op.plan.pipeline ?? op.pipeline);
      pass.setBindGroup(0, op.bindGroup);
      pass.dispatchWorkgroups(...op.plan.groups);
    }
    pass.end();
  }

  /** Copy `bytes` of `src` back to the CPU (one staging buffer, one map). */
  async read(src: GPUBuffer, bytes: number, enc?: GPUCommandEncoder): Promise<Float32Array> {
    const staging = this.device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 4) * 4), usage: MAP_READ | USAGE.COPY_DST });
    const e = enc ?? this.device.createCommandEncoder();
    e.copyBufferToBuffer(src, 0, staging, 0, Math.ceil(bytes / 4) * 4);
    this.device.queue.submit([e.finish()]);
    await staging.mapAsync(MAP_READ);
    const out = new Float32Array(staging.getMappedRange(0, Math.ceil(bytes / 4) * 4).slice(0, bytes));
    staging.unmap();
    staging.destroy();
    const err = this.ctx.takeError();
    if (err !== null) throw err;
    return out;
  }
}

export function fmtBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} bytes`;
}

/**
 * Load any model the CPU path reads onto the GPU, through the same loaders (src/load/*):
 * every linear is read in its canonical packing form (canonical.ts: HF-GPTQ and AWQ int4,
 * GGUF Q4_0/Q4_1/Q4_K, int8 grids, f16/bf16, f32) and packed here into a GPU layout
 * (webgpu-weights.ts): int4 with f16 scales/zeros for every 4-bit source, f16 for the
 * rest. The host-side layouts are then uploaded once (GpuModel.create) and dropped.
 */
import type { Backend, Pack16Args, PackedWeight, PackQ4Args, PackQ8Args } from "../backend/backend.ts";
import { LINEAR_NAMES } from "../arch/registry.ts";
import { loadModel, type LoadedModel } from "./hf-folder.ts";
import type { LoadOptions } from "./packed-weights.ts";
import { embeddingRow, type ModelWeights } from "../nn/weights.ts";
import type { LinearWeight } from "../backend/backend.ts";
import { f32ToF16 } from "../tensor/dtype.ts";
import { invariant } from "../util/errors.ts";
import { refBackend } from "../backend/ref.ts";
import type { GpuContext } from "../backend/webgpu-device.ts";
import { GpuModel, type GpuModelOptions, type GpuModelWeights } from "../nn/webgpu-model.ts";
import { layoutBytes, pack16Gpu, packF16Gpu, packQ4Gpu, packQ8AsF16Gpu, type GpuWeightLayout } from "../backend/webgpu-weights.ts";

/** A host-side GPU layout, handed through the loaders as a PackedWeight. */
export class GpuHostWeight implements PackedWeight {
  constructor(readonly l: GpuWeightLayout) {}
  get N(): number { return this.l.N; }
  get K(): number { return this.l.K; }
  get layout(): string { return `webgpu-${this.l.format}`; }
  get bytes(): number { return layoutBytes(this.l); }
}

/**
 * The packing side of a Backend for the loaders: pack* build GPU layouts on the host.
 * Its matmul/attention are the reference ones (the loaders never call them; the CPU Model
 * the loaders build around these handles is not run).
 */
export const gpuPacker: Backend = {
  ...refBackend,
  name: "ref",
  packQ4: (a: PackQ4Args) => { const q = packQ4Gpu(a); return new GpuHostWeight(q ?? packF16Gpu(dequantQ4(a), a.N, a.K)); },
  packQ8: (a: PackQ8Args) => new GpuHostWeight(packQ8AsF16Gpu(a)),
  pack16: (a: Pack16Args) => new GpuHostWeight(pack16Gpu(a)),
};

/** Canonical int4 → f32 [N, K] in the original column order (for group sizes the q4 layout cannot hold). */
function dequantQ4(a: PackQ4Args): Float32Array {
  const { N, K, groupSize } = a;
  const G = Math.ceil(K / groupSize);
  const w = new Float32Array(N * K); // [N, K]
  for (let n = 0; n < N; n++) {
    for (let p = 0; p < K; p++) {
      const g = n * G + Math.floor(p / groupSize), q = a.codes[n * K + p]!;
      w[n * K + (a.perm === null ? p : a.perm[p]!)] = a.mins === null ? Math.fround(a.scales[g]! * (q - 8)) : Math.fround(Math.fround(a.scales[g]! * q) + a.mins[g]!);
    }
  }
  return w;
}

/** ModelWeights whose linears are GpuHostWeight handles (or f32 arrays) → the runner's upload. */
export function gpuWeights(weights: ModelWeights<LinearWeight>, V: number, H: number): { weights: GpuModelWeights; q4: number; f16: number } {
  let q4 = 0, f16 = 0;
  const layout = (w: LinearWeight, N: number, K: number, what: string): GpuWeightLayout => {
    // f32 canonicals (F32 tensors) come back from the loaders as f32 arrays
    invariant(w instanceof Float32Array || w instanceof GpuHostWeight, `${what}: a weight packed by another backend`);
    const l = w instanceof Float32Array ? packF16Gpu(w, N, K) : w.l;
    if (l.format === "q4") q4++; else f16++;
    return l;
  };
  const blocks = weights.blocks.map((b, i) => ({
    attnNorm: b.attnNorm, mlpNorm: b.mlpNorm,
    linears: Object.fromEntries(LINEAR_NAMES.map((n) => {
      const l = b.linears[n];
      return [n, { layout: layout(l.weight, l.N, l.K, `layers.${i}.${n}`), bias: l.bias }];
    })) as GpuModelWeights["blocks"][number]["linears"],
  }));
  const embed = new Uint16Array(V * H); // [V, H] f16 bits
  const row = new Float32Array(H);
  for (let v = 0; v < V; v++) {
    embeddingRow(weights.embed, v, H, row, 0);
    for (let i = 0; i < H; i++) embed[v * H + i] = f32ToF16(row[i]!);
  }
  return { weights: { embed, blocks, finalNorm: weights.finalNorm, lmHead: layout(weights.lmHead, V, H, "lm_head") }, q4, f16 };
}

export interface GpuLoadedModel extends Omit<LoadedModel, "model"> {
  gpu: GpuModel;
  /** Linears uploaded as int4 / as f16 (the head included). */
  q4Linears: number;
  f16Linears: number;
}

export async function loadGpuModel(path: string, ctx: GpuContext, opts: GpuModelOptions & Pick<LoadOptions, "warn"> = {}): Promise<GpuLoadedModel> {
  const loaded = await loadModel(path, gpuPacker, { weights: "packed", ...(opts.warn ? { warn: opts.warn } : {}) });
  const { cfg } = loaded;
  const { weights, q4, f16 } = gpuWeights(loaded.model.weights, cfg.vocabSize, cfg.hiddenSize);
  const gpu = await GpuModel.create(ctx, cfg, weights, opts);
  const { model: _cpu, ...rest } = loaded;
  return { ...rest, gpu, q4Linears: q4, f16Linears: f16 };
}

/** e.g. "webgpu on NVIDIA H200, subgroup reductions, subgroup-matrix GEMM 16×16×16, 28 int4 / 1 f16 linears, f32 activations". */
export function describeGpuPath(ctx: GpuContext, m: Pick<GpuLoadedModel, "q4Linears" | "f16Linears" | "gpu">): string {
  const i = ctx.info;
  const sg = m.gpu.kernels.sgmatConfig;
  return `webgpu on ${i.description || i.device}${i.software ? " (software adapter)" : ""}, ` +
    `${i.subgroups ? "subgroup" : "workgroup-memory"} reductions, ${sg !== null && m.gpu.usesSubgroupMatrix ? `subgroup-matrix GEMM ${sg.M}×${sg.N}×${sg.K}, ` : ""}` +
    `${m.gpu.kernels.sgmatErrors.size > 0 ? "subgroup-matrix GEMM offered but not built (tiled GEMM instead), " : ""}` +
    `${m.q4Linears} int4 / ${m.f16Linears} f16 linears, f32 activations`;
}

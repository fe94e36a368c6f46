/**
 * Load a model's weights packed: each linear is read in its stored form, converted to
 * canonical inputs (canonical.ts) and packed by the backend, one tensor at a time, so
 * resident memory is the packed weights plus one tensor's transient arrays. Norms and
 * biases are small and stay f32; the embedding stays in its stored form (rows decoded
 * per lookup). The f32 alternative is nn/weights.ts `loadModelWeights` (dequantized:
 * the reference path).
 */
import type { ModelConfig } from "../arch/config.ts";
import { linearTensorName, type LinearName } from "../arch/registry.ts";
import type { Backend, LinearWeight, MappedFile } from "../backend/backend.ts";
import { expectShape, hasBias, linearShapes, loadModelWeights, type BlockWeights, type Linear, type ModelWeights, type TensorSource } from "../nn/weights.ts";
import { UsageError } from "../util/errors.ts";
import { canPack, packWeight, Scratch } from "./canonical.ts";
import type { BnbRunOptions } from "./bnb-int8-source.ts";

/** How a loader stores linear weights: packed (backend layouts), f32 (dequantized reference), or packed when the backend can. */
export type WeightMode = "auto" | "packed" | "f32";

/**
 * How 16-bit (F16/BF16) linears of a safetensors folder are held when packed: "map" runs
 * them in place, as row-major views of a read-only mapping of the file (no copy; the
 * pages are the page cache's, shared with other processes); "copy" packs them into the
 * interleaved f16x16 / bf16x16 layout in fresh memory (native/LAYOUTS.md).
 */
export type Weights16Mode = "map" | "copy";

export interface LoadOptions {
  weights?: WeightMode;
  /** 16-bit linears in place or copied (default "map"; a backend or file that cannot map copies). */
  weights16?: Weights16Mode;
  /** bitsandbytes 8-bit folders: threshold override, static outlier columns (bnb-int8-source.ts). */
  int8?: BnbRunOptions;
  /** Non-fatal notes (a layer that had to stay f32, ...); default: stderr. */
  warn?: (msg: string) => void;
}

export const defaultWarn = (msg: string): void => { process.stderr.write(`warning: ${msg}\n`); };

/**
 * "auto" packs whenever the backend implements the packing contract (native: every
 * quantized source on its int4/int8 layouts, 16-bit checkpoints on 16-bit layouts);
 * the ref backend does not, so `--backend ref` loads the dequantized f32 weights (the
 * specification path). "packed" refuses a backend that cannot pack.
 */
export function resolveWeightMode(mode: WeightMode | undefined, backend: Backend): "packed" | "f32" {
  const m = mode ?? "auto";
  if (m === "f32") return "f32";
  if (canPack(backend)) return "packed";
  if (m === "packed") {
    throw new UsageError(`the ${backend.name} backend cannot run packed weights`, {
      field: "weights", expected: "a backend with packQ4/packQ8/pack16 (native)", found: backend.name,
      hint: "use --backend native, or load the dequantized f32 weights",
    });
  }
  return "f32";
}

interface PackContext {
  src: TensorSource;
  backend: Backend;
  warn: (msg: string) => void;
  scratch: Scratch;
  /** Files mapped for 16-bit views, by path (null: mapping refused, copy instead); released after the load. */
  maps: Map<string, MappedFile | null> | null;
}

/** A 16-bit weight as a view of its mapped file, or null (not stored as F16/BF16, or the file cannot be mapped). */
function viewPacked(c: PackContext, name: string, N: number, K: number): LinearWeight | null {
  const { backend, maps } = c;
  if (maps === null || backend.mapFile === undefined || backend.view16 === undefined || c.src.locate16 === undefined) return null;
  const at = c.src.locate16(name);
  if (at === null) return null;
  if (!maps.has(at.path)) maps.set(at.path, backend.mapFile(at.path));
  const file = maps.get(at.path)!;
  return file === null ? null : backend.view16({ file, offset: at.offset, dtype: at.dtype, N, K });
}

function readPacked(c: PackContext, name: string, N: number, K: number): LinearWeight {
  expectShape(c.src, name, [N, K]);
  const view = viewPacked(c, name, N, K);
  if (view !== null) return view;
  if (c.backend.repack !== undefined && c.src.readSource !== undefined) {
    // Stored bytes straight into the layout (native/src/packed_repack.cc); the canonical path is the fallback.
    const s = c.src.readSource(name, c.scratch);
    const w = s === null ? null : c.backend.repack(s);
    if (w !== null) return w;
  }
  // A source without a canonical reader (e.g. bitsandbytes folders) serves its f32 weights.
  const cw = c.src.readCanonical !== undefined ? c.src.readCanonical(name, c.scratch) : { kind: "f32" as const, N, K, data: c.src.readF32Sync(name) };
  return packWeight(c.backend, cw, (msg) => c.warn(`${name}: ${msg}`));
}

function read(src: TensorSource, name: string, shape: readonly number[]): Float32Array {
  expectShape(src, name, shape);
  return src.readF32Sync(name);
}

function loadPackedBlock(cfg: ModelConfig, c: PackContext, i: number): BlockWeights<LinearWeight> {
  const { src } = c;
  const a = cfg.arch, H = cfg.hiddenSize, p = a.blockPrefix(i);
  const shapes = linearShapes(cfg);
  const linears = {} as Record<LinearName, Linear<LinearWeight>>;
  for (const spec of a.linears) {
    const [N, K] = shapes[spec.name];
    const l: Linear<LinearWeight> = { weight: readPacked(c, linearTensorName(a, i, spec), N, K), N, K };
    if (hasBias(cfg, spec.name)) l.bias = read(src, linearTensorName(a, i, spec, "bias"), [N]);
    linears[spec.name] = l;
  }
  fuseLinears(c.backend, linears, FUSED_GROUPS);
  return { attnNorm: read(src, `${p}.${a.attnNorm.hf}.weight`, [H]), mlpNorm: read(src, `${p}.${a.mlpNorm.hf}.weight`, [H]), linears };
}

/** Linears of one input that nn/block.ts multiplies in one matmulMany call, in its order. */
const FUSED_GROUPS: readonly (readonly LinearName[])[] = [["q", "k", "v"], ["gate", "up"]];

/**
 * Concatenates each group's packed weights into one matrix (Backend.fuse; native/LAYOUTS.md
 * "Concatenated weights"), so a decode step makes one kernel call per group; each linear then
 * holds a view of its rows. A group the backend cannot fuse (other layouts, act-order perms
 * that differ) stays separate: same results, one call per linear.
 */
function fuseLinears(backend: Backend, linears: Record<LinearName, Linear<LinearWeight>>, groups: readonly (readonly LinearName[])[]): void {
  if (backend.fuse === undefined) return;
  for (const g of groups) {
    const ls = g.map((n) => linears[n]);
    const views = backend.fuse(ls.map((l) => l.weight));
    if (views !== null) ls.forEach((l, i) => { l.weight = views[i]!; });
  }
}

export function loadPackedModelWeights(
  cfg: ModelConfig, src: TensorSource, backend: Backend, warn: (msg: string) => void = defaultWarn, weights16: Weights16Mode = "map",
): ModelWeights<LinearWeight> {
  const maps = weights16 === "map" ? new Map<string, MappedFile | null>() : null;
  const scratch = new Scratch();
  try {
    return loadPacked(cfg, { src, backend, warn, scratch, maps });
  } finally {
    for (const f of maps?.values() ?? []) f?.release(); // the views hold the mappings from here on
    scratch.release(); // the backend copied what it keeps
  }
}

function loadPacked(cfg: ModelConfig, c: PackContext): ModelWeights<LinearWeight> {
  const { src } = c;
  const { arch: a, vocabSize: V, hiddenSize: H } = cfg;
  expectShape(src, a.embed.hf, [V, H]);
  const embed = src.readEmbedding !== undefined ? src.readEmbedding(a.embed.hf) : src.readF32Sync(a.embed.hf);
  const blocks: BlockWeights<LinearWeight>[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    blocks.push(loadPackedBlock(cfg, c, i));
  }
  const finalNorm = read(src, a.finalNorm.hf, [H]);
  // Tied: pack the embedding matrix a second time as the head (the table keeps the stored rows).
  const headName = src.has(a.lmHead.hf) || !cfg.tieWordEmbeddings ? a.lmHead.hf : a.embed.hf;
  const lmHead = readPacked(c, headName, V, H);
  return { embed, blocks, finalNorm, lmHead };
}

/** Weights in the resolved mode: packed through the backend, or dequantized f32. */
export function loadWeights(
  cfg: ModelConfig, src: TensorSource, backend: Backend, mode: "packed" | "f32", warn: (msg: string) => void = defaultWarn, weights16: Weights16Mode = "map",
): ModelWeights<LinearWeight> {
  return mode === "packed" ? loadPackedModelWeights(cfg, src, backend, warn, weights16) : loadModelWeights(cfg, src);
}

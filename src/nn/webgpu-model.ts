/// <reference types="@webgpu/types" />
/**
 * The whole forward pass on the GPU: weights uploaded once (int4 with f16 scales/zeros, or
 * f16), activations in f32 GPU buffers, the KV cache f16 (default, as on the CPU) or f32, every
 * op of a step encoded in one compute pass and ONE read-back (the logits) per step.
 *
 * Why a model-level runner and not a Backend: Backend's calls are synchronous and return
 * host arrays, and WebGPU can only read results back asynchronously — a per-op backend would
 * also pay a read-back per matmul. Shared semantics with src/nn/ (the specification): the
 * step below follows Model.forward and blockForward op by op (same order, same residual
 * adds, same RoPE tables from RopeTable, the same rmsNorm / attention / SiLU formulas), each
 * kernel is tested against the nn/ or ref.ts function it mirrors (test/webgpu/kernels.test.ts),
 * and the whole model is tested against the CPU path (test/webgpu/model.test.ts: perplexity, greedy ids).
 *
 * Activations stay f32 in storage (f16 only inside the subgroup-matrix kernel's tiles):
 * the perplexity tolerance (1e-3 relative) is then spent on weights only. An f16 cache holds
 * the k (after RoPE) and v rows rounded to nearest even as the CPU's (kv-store.wgsl, bit for
 * bit f32ToF16), and attention widens them to f32 as read: CPU and GPU round the same values.
 */
import type { ModelConfig } from "../arch/config.ts";
import { LINEAR_NAMES, type LinearName } from "../arch/registry.ts";
import { decodeStep, type GenerateOptions } from "./generate.ts";
import { RopeTable } from "./rope.ts";
import type { KvDType } from "./model.ts";
import { mulberry32 } from "../util/random.ts";
import { invariant, UsageError } from "../util/errors.ts";
import { GpuError, type GpuContext } from "../backend/webgpu-device.ts";
import { GpuKernels, grid2d, UniformArena, type Op } from "../backend/webgpu-kernels.ts";
import { MatmulOp, matmulPipelines, setPlan, simpleOp, uploadLinear, type GpuLinear, type MatmulPipelines } from "../backend/webgpu-ops.ts";
import type { GpuWeightLayout } from "../backend/webgpu-weights.ts";

export interface GpuLinearWeights { layout: GpuWeightLayout; bias?: Float32Array | undefined }

/** What the runner uploads (built by webgpu-load.ts from a loaded model). */
export interface GpuModelWeights {
  /** [V, H] f16 bits */
  embed: Uint16Array;
  blocks: { attnNorm: Float32Array; mlpNorm: Float32Array; linears: Record<LinearName, GpuLinearWeights> }[];
  /** [H] */
  finalNorm: Float32Array;
  lmHead: GpuWeightLayout;
}

/** The KV cache on the GPU; same bookkeeping as nn/model.ts KvCache. */
export class GpuKvCache {
  pos = 0;
  constructor(
    readonly capacity: number, /** [capacity, nKv·d] per layer, f32 or f16 (pairs in u32) */ readonly k: GPUBuffer[], readonly v: GPUBuffer[],
    readonly dtype: KvDType,
  ) {}
  reset(): void { this.pos = 0; }
  destroy(): void { for (const b of [...this.k, ...this.v]) b.destroy(); }
}

export interface GpuForwardOptions { logits?: "all" | "last" | "none" }

interface LayerOps {
  /** store: the new k/v rows into an f16 cache (null: k and v go straight into an f32 cache) */
  attnNorm: Op; q: MatmulOp; k: MatmulOp; v: MatmulOp; ropeQ: Op; ropeK: Op; store: Op | null; attn: Op; o: MatmulOp;
  mlpNorm: Op; gate: MatmulOp; up: MatmulOp; silu: Op; down: MatmulOp;
}
interface Program { embed: Op; layers: LayerOps[]; finalNorm: Op; head: MatmulOp; all: Op[]; cos: GPUBuffer }

export interface GpuModelOptions {
  /** Rows per step (longer inputs run in chunks); default min(512, what the binding limit allows). */
  maxRows?: number;
  /** Use the subgroup-matrix GEMM when the device has it (default true). */
  subgroupMatrix?: boolean;
}

export class GpuModel {
  readonly kernels: GpuKernels;
  readonly maxRows: number;
  /** Bytes of weights on the GPU. */
  readonly weightBytes: number;
  /** Whether prefill GEMMs (M ≥ SGMAT_MIN_ROWS) run on the subgroup-matrix kernel. */
  get usesSubgroupMatrix(): boolean { return this.pipes.q4.sgmat !== null; }
  private readonly rope: RopeTable;
  private ropeBufs: [GPUBuffer, GPUBuffer] | null = null;
  private readonly programs = new WeakMap<GpuKvCache, Program>();
  private readonly arena: UniformArena;
  private readonly buf: Record<"tokens" | "x" | "xn" | "q" | "kn" | "vn" | "att" | "g" | "u" | "logits", GPUBuffer>;
  private readonly scratch: GPUBuffer | null;

  private constructor(
    readonly ctx: GpuContext, readonly cfg: ModelConfig, private readonly embedTable: GPUBuffer, private readonly norms: GPUBuffer[],
    private readonly linears: Record<LinearName, GpuLinear>[], private readonly head: GpuLinear,
    private readonly pipes: Record<"q4" | "f16", MatmulPipelines>, private readonly small: Record<"rmsnorm" | "rope" | "attention" | "attention_f16" | "kv_store" | "embed" | "silu_mul" | "gather_cols", GPUComputePipeline>,
    maxRows: number, kernels: GpuKernels,
  ) {
    this.kernels = kernels;
    this.maxRows = maxRows;
    this.rope = new RopeTable(cfg);
    const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: d, vocabSize: V } = cfg;
    const k = this.kernels;
    const R = maxRows;
    this.buf = {
      tokens: k.buffer(R * 4, "tokens"), x: k.buffer(R * H * 4, "residual [rows, H]"), xn: k.buffer(R * H * 4, "normed [rows, H]"),
      q: k.buffer(R * nH * d * 4, "q [rows, nH·d]"),
      kn: k.buffer(R * nKv * d * 4, "new k rows [rows, nKv·d]"), vn: k.buffer(R * nKv * d * 4, "new v rows [rows, nKv·d]"), att: k.buffer(R * nH * d * 4, "attention out [rows, nH·d]"),
      g: k.buffer(R * I * 4, "gate [rows, I]"), u: k.buffer(R * I * 4, "up [rows, I]"), logits: k.buffer(R * V * 4, "logits [rows, V]"),
    };
    const needsPerm = [...linears.flatMap((l) => Object.values(l)), head].some((l) => l.perm !== null);
    this.scratch = needsPerm ? k.buffer(R * Math.max(H, I, nH * d) * 4, "act-order gather [rows, K]") : null;
    this.arena = new UniformArena(ctx.device, 4 + cfg.numLayers * 21);
    this.weightBytes = embedTable.size + norms.reduce((a, b) => a + b.size, 0) + [...linears.flatMap((l) => Object.values(l)), head].reduce((a, l) => a + l.bytes, 0);
  }

  /** Upload the weights and compile the kernels. */
  static async create(ctx: GpuContext, cfg: ModelConfig, w: GpuModelWeights, opts: GpuModelOptions = {}): Promise<GpuModel> {
    const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: d, vocabSize: V } = cfg;
    if (d > 256 || d % 2 !== 0 || nH % nKv !== 0) {
      throw new GpuError("model shape not supported by the GPU kernels", {
        field: "head_dim / num_key_value_heads", expected: "an even head_dim ≤ 256 and num_attention_heads a multiple of num_key_value_heads",
        found: `head_dim ${d}, ${nH} heads / ${nKv} kv heads`, hint: "use --device cpu",
      });
    }
    const k = new GpuKernels(ctx);
    const limit = Math.min(ctx.device.limits.maxStorageBufferBindingSize, ctx.device.limits.maxBufferSize);
    const rowBytes = 4 * Math.max(V, I, H, nH * d);
    const maxRows = Math.max(1, Math.min(opts.maxRows ?? 512, Math.floor(limit / rowBytes)));
    const embed = k.buffer(w.embed, "model.embed_tokens (f16 [V, H])");
    const norms = w.blocks.flatMap((b, i) => [k.buffer(b.attnNorm, `layers.${i}.input_layernorm`), k.buffer(b.mlpNorm, `layers.${i}.post_attention_layernorm`)]);
    norms.push(k.buffer(w.finalNorm, "norm"));
    const linears = w.blocks.map((b, i) => Object.fromEntries(LINEAR_NAMES.map((n) => [n, uploadLinear(k, b.linears[n].layout, `layers.${i}.${n}`, b.linears[n].bias)])) as Record<LinearName, GpuLinear>);
    const head = uploadLinear(k, w.lmHead, "lm_head");
    const sgmat = opts.subgroupMatrix !== false;
    const pipes = { q4: await matmulPipelines(k, "q4", sgmat), f16: await matmulPipelines(k, "f16", sgmat) };
    const small = {
      rmsnorm: await k.pipeline("rmsnorm"), rope: await k.pipeline("rope"), attention: await k.pipeline("attention"),
      attention_f16: await k.pipeline("attention_f16"), kv_store: await k.pipeline("kv_store"),
      embed: await k.pipeline("embed"), silu_mul: await k.pipeline("silu_mul"), gather_cols: await k.pipeline("gather_cols"),
    };
    void H;
    const err = ctx.takeError();
    if (err !== null) throw err;
    return new GpuModel(ctx, cfg, embed, norms, linears, head, pipes, small, maxRows, k);
  }

  /** A cache of `kv` elements; f32 by default as Model.newCache (a Session picks engine.ts DEFAULT_KV, f16, on either device). */
  newCache(capacity = this.cfg.maxPositionEmbeddings, kv: KvDType = "f32"): GpuKvCache {
    const kvDim = this.cfg.numKvHeads * this.cfg.headDim;
    const k = this.kernels;
    const bytes = kv === "f16" ? 2 : 4;
    const mk = (what: string) => Array.from({ length: this.cfg.numLayers }, (_, i) => k.buffer(capacity * kvDim * bytes, `KV cache ${what} layer ${i} (${kv} [${capacity}, ${kvDim}])`));
    return new GpuKvCache(capacity, mk("k"), mk("v"), kv);
  }

  private ropeTables(positions: number): [GPUBuffer, GPUBuffer] {
    if (this.ropeBufs === null || this.rope.capacity < positions) {
      this.rope.ensure(positions);
      this.ropeBufs?.forEach((b) => b.destroy());
      this.ropeBufs = [this.kernels.buffer(this.rope.cos, "rope cos"), this.kernels.buffer(this.rope.sin, "rope sin")];
    }
    return this.ropeBufs;
  }

  private program(cache: GpuKvCache): Program {
    const have = this.programs.get(cache);
    const [cos, sin] = this.ropeTables(cache.capacity);
    if (have !== undefined && have.cos === cos) return have;
    const k = this.kernels, a = this.arena, b = this.buf, s = this.small;
    a.reset();
    const mm = (lin: GpuLinear, x: GPUBuffer, y: GPUBuffer, name: string) =>
      new MatmulOp(k, a, this.pipes[lin.format], s.gather_cols, lin, x, y, this.scratch, name);
    const embed = simpleOp(k, a, s.embed, "embed", [[1, b.tokens], [2, this.embedTable], [3, b.x]]);
    // an f32 cache takes k and v straight into its rows; an f16 one gets them from kn/vn, rounded
    const f16 = cache.dtype === "f16";
    const layers = this.linears.map((L, i): LayerOps => ({
      attnNorm: simpleOp(k, a, s.rmsnorm, `${i}.attn_norm`, [[1, b.x], [2, this.norms[2 * i]!], [3, b.xn]]),
      q: mm(L.q, b.xn, b.q, `${i}.q`), k: mm(L.k, b.xn, f16 ? b.kn : cache.k[i]!, `${i}.k`), v: mm(L.v, b.xn, f16 ? b.vn : cache.v[i]!, `${i}.v`),
      ropeQ: simpleOp(k, a, s.rope, `${i}.rope_q`, [[1, b.q], [2, cos], [3, sin]]),
      ropeK: simpleOp(k, a, s.rope, `${i}.rope_k`, [[1, f16 ? b.kn : cache.k[i]!], [2, cos], [3, sin]]),
      store: f16 ? simpleOp(k, a, s.kv_store, `${i}.kv_store`, [[1, b.kn], [2, b.vn], [3, cache.k[i]!], [4, cache.v[i]!]]) : null,
      attn: simpleOp(k, a, f16 ? s.attention_f16 : s.attention, `${i}.attention`, [[1, b.q], [2, cache.k[i]!], [3, cache.v[i]!], [4, b.att]]),
      o: mm(L.o, b.att, b.x, `${i}.o`),
      mlpNorm: simpleOp(k, a, s.rmsnorm, `${i}.mlp_norm`, [[1, b.x], [2, this.norms[2 * i + 1]!], [3, b.xn]]),
      gate: mm(L.gate, b.xn, b.g, `${i}.gate`), up: mm(L.up, b.xn, b.u, `${i}.up`),
      silu: simpleOp(k, a, s.silu_mul, `${i}.silu_mul`, [[4, b.g], [5, b.u]]),
      down: mm(L.down, b.g, b.x, `${i}.down`),
    }));
    const finalNorm = simpleOp(k, a, s.rmsnorm, "final_norm", [[1, b.x], [2, this.norms[this.norms.length - 1]!], [3, b.xn]]);
    const head = mm(this.head, b.xn, b.logits, "lm_head");
    const all: Op[] = [embed];
    for (const l of layers) {
      all.push(l.attnNorm, ...l.q.ops, ...l.k.ops, ...l.v.ops, l.ropeQ, l.ropeK, ...(l.store ? [l.store] : []), l.attn, ...l.o.ops, l.mlpNorm, ...l.gate.ops, ...l.up.ops, l.silu, ...l.down.ops);
    }
    all.push(finalNorm, ...head.ops);
    const p = { embed, layers, finalNorm, head, all, cos };
    this.programs.set(cache, p);
    return p;
  }

  /**
   * Feed `tokens` at positions cache.pos.. and advance the cache; as Model.forward:
   * logits [T, V] ("all"), [1, V] ("last") or an empty array ("none").
   */
  async forward(tokens: ArrayLike<number>, cache: GpuKvCache, opts: GpuForwardOptions = {}): Promise<Float32Array> {
    const T = tokens.length;
    const { cfg } = this;
    const V = cfg.vocabSize;
    if (cache.pos + T > cache.capacity) {
      throw new UsageError("sequence longer than the KV cache", {
        expected: `at most ${cache.capacity} positions`, found: `${cache.pos + T}`, hint: "use a shorter context (--ctx) or a larger cache",
      });
    }
    for (let t = 0; t < T; t++) {
      const id = tokens[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new UsageError("token id out of range", { field: `tokens[${t}]`, expected: `an integer in [0, ${V})`, found: String(id) });
    }
    const mode = opts.logits ?? "all";
    const out = new Float32Array(mode === "all" ? T * V : mode === "last" ? V : 0);
    for (let c0 = 0; c0 < T; c0 += this.maxRows) {
      const n = Math.min(this.maxRows, T - c0);
      const lastChunk = c0 + n === T;
      const rows = mode === "all" ? n : mode === "last" && lastChunk ? 1 : 0;
      const logits = await this.step(Array.from({ length: n }, (_, i) => tokens[c0 + i]!), cache, rows);
      if (rows > 0) out.set(logits, mode === "all" ? c0 * V : 0);
    }
    return out;
  }

  /** One step of n ≤ maxRows tokens; returns the logits of the last `rows` rows (0: none, no read-back). */
  private async step(tokens: number[], cache: GpuKvCache, rows: number): Promise<Float32Array> {
    const T = tokens.length, pos0 = cache.pos;
    const { cfg, arena: a } = this;
    const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: d, vocabSize: V } = cfg;
    const kvDim = nKv * d, half = d / 2;
    const f16 = cache.dtype === "f16";
    const kvRow0 = f16 ? 0 : pos0; // the row of kn/vn or of the f32 cache the new k/v rows start at
    const p = this.program(cache);
    const dev = this.ctx.device;
    dev.queue.writeBuffer(this.buf.tokens, 0, Uint32Array.from(tokens));
    const eps = { f: cfg.rmsNormEps };
    setPlan(a, p.embed, [T * H, H], grid2d(Math.ceil((T * H) / 64)));
    for (const l of p.layers) {
      setPlan(a, l.attnNorm, [T, H, 0, eps], [T, 1, 1]);
      l.q.plan(a, T, 0, false);
      l.k.plan(a, T, kvRow0 * kvDim, false);
      l.v.plan(a, T, kvRow0 * kvDim, false);
      setPlan(a, l.ropeQ, [T, nH, half, pos0, 0], grid2d(Math.ceil((T * nH * half) / 64)));
      setPlan(a, l.ropeK, [T, nKv, half, pos0, kvRow0], grid2d(Math.ceil((T * nKv * half) / 64)));
      if (l.store !== null) setPlan(a, l.store, [(T * kvDim) / 2, (pos0 * kvDim) / 2], grid2d(Math.ceil((T * kvDim) / 2 / 64)));
      setPlan(a, l.attn, [T, pos0, nH, nKv, d, { f: 1 / Math.sqrt(d) }], [nH, T, 1]);
      l.o.plan(a, T, 0, true);
      setPlan(a, l.mlpNorm, [T, H, 0, eps], [T, 1, 1]);
      l.gate.plan(a, T, 0, false);
      l.up.plan(a, T, 0, false);
      setPlan(a, l.silu, [T * I, I], grid2d(Math.ceil((T * I) / 64)));
      l.down.plan(a, T, 0, true);
    }
    if (rows > 0) {
      setPlan(a, p.finalNorm, [rows, H, T - rows, eps], [rows, 1, 1]);
      p.head.plan(a, rows, 0, false);
    } else {
      p.finalNorm.plan = null;
      for (const op of p.head.ops) op.plan = null;
    }
    a.flush(dev);
    const enc = dev.createCommandEncoder();
    this.kernels.encode(enc, p.all);
    cache.pos = pos0 + T;
    if (rows === 0) {
      dev.queue.submit([enc.finish()]);
      await dev.queue.onSubmittedWorkDone();
      const err = this.ctx.takeError();
      if (err !== null) throw err;
      return new Float32Array(0);
    }
    invariant(rows * V <= this.maxRows * V, "logits rows");
    return this.kernels.read(this.buf.logits, rows * V * 4, enc);
  }

  destroy(): void { this.ctx.device.destroy(); }
}

/** nn/generate.ts generate() on the GPU runner: same sampling, same stop rule, one logits read-back per token. */
export async function generateGpu(model: GpuModel, prompt: readonly number[], opts: Omit<GenerateOptions, "cache"> & { cache?: GpuKvCache }): Promise<number[]> {
  const cache = opts.cache ?? model.newCache(Math.min(model.cfg.maxPositionEmbeddings, prompt.length + opts.maxTokens));
  const rand = mulberry32(opts.seed ?? 0);
  const out: number[] = [];
  let logits = await model.forward(prompt, cache, { logits: "last" }); // [1, V]
  for (let i = 0; i < opts.maxTokens; i++) {
    const id = decodeStep(logits, opts, rand, out, i, cache);
    if (id === null) break;
    logits = await model.forward([id], cache, { logits: "last" });
  }
  return out;
}

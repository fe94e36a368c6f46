/**
 * The layer-by-layer quantization pipeline (ARCHITECTURE.md "QUANTIZE"):
 *
 *   calibration windows → embeddings → X₀ (inputs of block 0)
 *   for each block b (only this block's weights are resident):
 *     [awq]  search scales/clips on X_b → fold scales, clip
 *     [gptq] for each true-sequential group: forward with taps → Hessians → quantize
 *     pack → the output (output.ts: appended to the final shards, or a block file) → journal
 *     X_{b+1} = forward(block)  — the QUANTIZED block for GPTQ/RTN (ALGORITHMS.md §2.10),
 *                                  the ORIGINAL block for AWQ (§3: AWQ never propagates quantized outputs)
 *   [--quantize-lm-head] lm_head from X_L through the final norm (quantize/lm-head.ts)
 *   complete <out>.partial/final (the rest of the shards, configs), rename it to <out>
 *
 * Peak memory: one block of f32 weights + the calibration activations (X_b, advanced to
 * X_{b+1} in place) + one layer's Hessian and Hinv. It does not grow with the number of
 * layers: every array that lives longer than a few kernel calls is allocated once and reused
 * block after block (`buffers`: weights, codes, grids, Hessians, the packed tensors; the
 * forward's `workspace`), and the checkpoint tensors copied into the output go through a 1 MiB
 * buffer (output.ts), so a block leaves no garbage that only a full collection would free
 * (eval/memory-gptq.ts, without any gc(): flat from block 1 on; issue 8 item 4).
 *
 * ~440 lines: one function holds the block loop, because resume, interrupt and the
 * true-sequential propagation of X all act on the same locals (journal, X, blockWrite).
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import type { ModelConfig } from "../arch/config.ts";
import { linearTensorName, type LinearInput, type LinearName } from "../arch/registry.ts";
import { linearShapes } from "../arch/shapes.ts";
import type { Backend } from "../backend/backend.ts";
import { openCheckpoint } from "../io/checkpoint.ts";
import { weightKernels } from "../backend/weight-kernels.ts";
import { Scratch } from "../load/canonical.ts";
import { readStored } from "../load/raw-read.ts";
import { checkpointSource, readModelConfig } from "../load/hf-folder.ts";
import { blockForward, BlockWorkspace, type BlockContext, type LayerCache } from "../nn/block.ts";
import { RopeTable } from "../nn/rope.ts";
import { loadBlock, type BlockWeights } from "../nn/weights.ts";
import { awqQuantizeLinear } from "../methods/awq-grid.ts";
import { assertFinite, InterruptedError, nonFiniteError, NumericError, UsageError } from "../util/errors.ts";
import { awqSearchBlock } from "../methods/awq.ts";
import type { AwqBlockSearch } from "../methods/awq-types.ts";
import { applyAwqClip, applyAwqScales } from "../methods/awq-apply.ts";
import { checkAwqSearchFits, readAwqSearch, writeAwqSearch, type AwqSearchSettings } from "../methods/awq-result.ts";
import { calibrationInputs } from "./calibrate.ts";
import { gptqQuantizeLinearAsync, HessianAccumulatorF32 } from "../methods/gptq-fast.ts";
import type { GpuGptq, HessianSink } from "../methods/gptq-webgpu.ts";
import { checkResumable, JOURNAL_MAGIC, JOURNAL_VERSION, readJournal, writeJournal, type Journal } from "./journal.ts";
import type { FinishInput, GridFormatId } from "./formats/format.ts";
import { quantizeLmHead, type LmHeadReport } from "./lm-head.ts";
import { openBlockOutput, type BlockOutput } from "./output.ts";
import { FORMAT_FLAGS, FORMATS } from "./formats/table.ts";
import { relOutputErrorAsync, relWeightError, type LayerReport } from "./report.ts";
import { rtnQuantizeLinear, rtnQuantizeRows } from "../methods/rtn.ts";
import { AWQ_DEFAULTS, calibSamplingOf, usesAwq, validateSettings, type QuantSettings } from "./settings.ts";
import { dequantize, groupLength, numGroups, type QuantizedLinear } from "../tensor/quantized.ts";

export { VERSION } from "./formats/hf-folder.ts";

export type PipelineEvent =
  | { type: "calibrated"; samples: number; seqlen: number }
  | { type: "block-start"; block: number; blocks: number }
  | { type: "awq-search"; block: number; seconds: number; alphas: number[]; loaded: boolean }
  | { type: "layer-start"; block: number; layer: LinearName }
  | { type: "layer"; report: LayerReport }
  | { type: "block-done"; block: number; blocks: number; seconds: number; resumed: boolean }
  | { type: "finalize" };

export interface QuantizeJob {
  modelDir: string;
  /** The output folder, or file for a file format (GGUF). */
  outDir: string;
  settings: QuantSettings;
  /** Output format (formats/table.ts); default: the HF folder natural to the method (`--format hf`). */
  format?: GridFormatId;
  backend: Backend;
  /** Continue an interrupted run from its journal. */
  resume?: boolean;
  /** Replace an existing output folder. */
  overwrite?: boolean;
  /** Shard size limit of the output (bytes of tensor data). */
  maxShardBytes?: number;
  /** AWQ: also write the search result (scales, clips) to this file. */
  saveSearch?: string;
  onEvent?: (e: PipelineEvent) => void;
  /** Aborting stops between layers; the journal is kept for --resume. */
  signal?: AbortSignal;
  /**
   * GPTQ on the GPU (`--device gpu`): every linear's Hessian and lazy-batch sweep there, the
   * Hinv and everything else on `backend` (src/methods/gptq-webgpu.ts). Not part of the
   * settings (the output is the CPU's within the bound stated there), but part of the resume key.
   */
  gpu?: GpuGptq;
}

export interface QuantizeResult {
  outDir: string;
  format: GridFormatId;
  layers: LayerReport[];
  seconds: number;
  files: string[];
  /** The per-layer report file. */
  report: string;
  /** The format's one-line description of what it wrote (may be empty). */
  summary: string;
  /** lm_head's report line when QuantSettings.lmHead quantized it. */
  lmHead?: LmHeadReport;
}

export { InterruptedError } from "../util/errors.ts";

/** Calibration inputs are needed by every method but plain RTN, which uses them only for its report. */
function needsCalibration(s: QuantSettings): boolean {
  return s.method !== "rtn" || s.calibSamples > 0;
}

/** The true-sequential groups, or everything at once. */
function groupsOf(cfg: ModelConfig, s: QuantSettings): LinearName[][] {
  return s.trueSequential ? cfg.arch.sequentialGroups.map((g) => [...g]) : [cfg.arch.linears.map((l) => l.name)];
}

/** Everything a search depends on, grid and calibration included (checked on --load-search). */
function awqSettings(s: QuantSettings): AwqSearchSettings {
  return {
    bits: s.bits, groupSize: s.groupSize, duoScaling: s.duoScaling ?? AWQ_DEFAULTS.duoScaling, clip: s.clip ?? true, sym: s.sym,
    clipSampling: s.clipSampling ?? AWQ_DEFAULTS.clipSampling,
    calibration: {
      textSha256: createHash("sha256").update(readFileSync(s.calibText)).digest("hex"), samples: s.calibSamples, seqlen: s.calibSeqlen, seed: s.calibSeed,
      sampling: calibSamplingOf(s),
    },
  };
}

/**
 * The slots that layers of different shapes share (hessian:<j>, work, dequantized), taken at
 * their largest size before block 0: a slot that grew later would leave its smaller buffer as
 * garbage that only a full collection frees (the first block's peak RSS).
 */
function reserveSharedSlots(cfg: ModelConfig, s: QuantSettings, buffers: Scratch): void {
  const shapes = linearShapes(cfg);
  let NK = 0, KK = 0;
  const hessian = new Map<number, number>(); // j → largest K²
  for (const group of groupsOf(cfg, s)) {
    const inputs: LinearInput[] = [];
    for (const name of group) {
      const [N, K] = shapes[name];
      NK = Math.max(NK, N * K);
      KK = Math.max(KK, K * K);
      const input = cfg.arch.linears.find((l) => l.name === name)!.input;
      if (!inputs.includes(input)) inputs.push(input);
      const j = inputs.indexOf(input);
      hessian.set(j, Math.max(hessian.get(j) ?? 0, K * K));
    }
  }
  buffers.f32("dequantized", NK);
  if (s.method === "awq" || !needsCalibration(s)) return; // no Hessians, no Hinv, no output error
  for (const [j, n] of hessian) buffers.f32(`hessian:${j}`, n);
  buffers.f32("work", Math.max(KK, NK)); // GPTQ's Hinv [K, K], then the output error's [N, K]
  if (s.method === "rtn") buffers.f32("report:D", NK); // the output error's W − Q (GPTQ's comes from its loss)
}

export async function quantizeModel(job: QuantizeJob): Promise<QuantizeResult> {
  const t0 = performance.now();
  const s = job.settings;
  const modelDir = resolve(job.modelDir);
  const outDir = resolve(job.outDir);
  const cfg = readModelConfig(modelDir);
  const format = FORMATS[job.format ?? FORMAT_FLAGS.hf(s.method, s.bits)];
  validateSettings(cfg, s, modelDir);
  format.check(s, cfg, modelDir, outDir);
  const loaded = usesAwq(s.method) && s.loadSearch ? readAwqSearch(s.loadSearch) : null;
  const searchSettings = usesAwq(s.method) ? awqSettings(s) : null;
  if (loaded) checkAwqSearchFits(cfg, loaded, searchSettings!, s.loadSearch!);
  if (existsSync(outDir) && !job.overwrite) {
    throw new UsageError(`output ${format.kind} already exists`, { file: outDir, hint: "choose another -o, or pass --overwrite" });
  }
  const work = `${outDir}.partial`;
  const journalPath = join(work, "journal.json");
  const searchPath = join(work, "awq-search.json");
  // The device is part of the resume key: a GPU sweep's codes equal the CPU's on the same Hessian,
  // but the Hessians differ by f32 summation order, so later blocks differ (test/webgpu/gptq-cli.test.ts:
  // 87.6% of the codes identical); a resumed run mixing the two would match neither run.
  const settingsKey = JSON.stringify({ ...s, output: format.id, device: job.gpu !== undefined ? "gpu" : "cpu" });
  // --overwrite (without --resume) discards an interrupted run unread (issue 10); otherwise say both ways out
  let journal: Journal | null = job.overwrite && !job.resume ? null : readJournal(journalPath);
  if (journal && !job.resume) {
    throw new UsageError("an interrupted run of this output exists", {
      file: work, hint: "pass --resume to continue it, or --overwrite to discard it and start over",
    });
  }
  if (journal) checkResumable(journal, modelDir, settingsKey, journalPath);
  const fresh = !journal;
  if (!journal) {
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    journal = { magic: JOURNAL_MAGIC, version: JOURNAL_VERSION, model: modelDir, settings: settingsKey, blocks: [] };
    await writeJournal(journalPath, journal);
  }
  // AWQ searches of finished blocks (for resume and --save-search).
  const searches: AwqBlockSearch[] = existsSync(searchPath) ? readAwqSearch(searchPath).blocks : [];

  const ckpt = await openCheckpoint(modelDir);
  const src = checkpointSource(ckpt, modelDir);
  const { backend } = job;
  const kernels = weightKernels(backend);
  // Plain RTN (no calibration): each linear goes from its stored bytes to codes in one kernel
  // pass (rtnQuantizeRows), with no f32 copy, no dequantized copy and no second scan.
  const rtnDirect = s.method === "rtn" && !needsCalibration(s);
  const H = cfg.hiddenSize;
  const L = s.calibSeqlen;
  // Reused memory, one slot per role (a slot's view is valid until that slot's next use):
  //   raw, block:*            the stored bytes being read, this block's f32 weights (loadBlock)
  //   codes:<set>:<layer>     a layer's codes until its block file is packed; two sets for plain
  //                           RTN, whose block file is written while the next block computes
  //   hessian:<j>             the j-th Hessian of a group (one per group when true-sequential)
  //   dequantized, work, report:D   one layer's Q; GPTQ's Hinv, then the error's [N, K] scratch
  const buffers = new Scratch();
  if (!rtnDirect) reserveSharedSlots(cfg, s, buffers);
  const codesSlot = (b: number, name: LinearName): string => `codes:${rtnDirect ? b & 1 : 0}:${name}`;
  //   grid:<set>:<layer>:*   a layer's scales, zeros, g_idx, kept with its codes
  const gridSlots = (b: number, name: LinearName, N: number, K: number) => {
    const G = numGroups(K, groupLength(s.groupSize, K)), set = codesSlot(b, name).replace(/^codes:/, "grid:");
    return { scales: buffers.f32(`${set}:scales`, N * G), zeros: buffers.u8(`${set}:zeros`, N * G), gIdx: buffers.i32(`${set}:g_idx`, K) };
  };
  //   pack:<set>:<layer>:<array>   block b's packed tensors until written (the same two sets)
  const packAlloc = (b: number) => (slot: string, n: number): Uint8Array => buffers.u8(`pack:${rtnDirect ? b & 1 : 0}:${slot}`, n);
  // The forward's buffers for one calibration window; taps see them (valid until the next forward).
  const ctx: BlockContext = { cfg, backend, rope: new RopeTable(cfg), exactElementwise: true, workspace: needsCalibration(s) ? new BlockWorkspace(cfg, L) : undefined };
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const scratch: LayerCache = { k: new Float32Array(L * kvDim), v: new Float32Array(L * kvDim) };
  const layers: LayerReport[] = journal.blocks.flatMap((b) => b.layers);
  // Yield to the event loop so a SIGINT handler can run between layers, then honour it.
  const checkAbort = async (): Promise<void> => {
    await new Promise((r) => setImmediate(r));
    if (job.signal?.aborted) throw new InterruptedError(work);
  };

  let blockWrite: Promise<void> = Promise.resolve();
  let output: BlockOutput | null = null;
  try {
    output = await openBlockOutput({ format, cfg, s, ckpt, work, journal, journalPath, maxShardBytes: job.maxShardBytes ?? 4 * 2 ** 30, fresh });
    // --- calibration: X [samples][L·H] entering block 0 ---
    let X: Float32Array[] = [];
    if (needsCalibration(s)) {
      X = calibrationInputs({ cfg, modelDir, ckpt, src, textFile: s.calibText }, { samples: s.calibSamples, seqlen: L, seed: s.calibSeed, sampling: calibSamplingOf(s) }, buffers);
      job.onEvent?.({ type: "calibrated", samples: X.length, seqlen: L });
    }
    // X_b → X_{b+1}, each window updated in place (blockForward may write over its input).
    const advance = (b: number, w: BlockWeights): void => {
      for (const x of X) blockForward(ctx, b, w, x, L, 0, scratch, x);
    };
    // Capture the inputs of `needed` taps, stopping each forward as soon as the last one was seen.
    const STOP = Symbol("stop");
    // The tapped inputs are workspace buffers, each written once per forward and left unchanged
    // until the next one, so they are used without a copy; their Hessian updates (syrk) run off
    // the JS thread after each forward (before the next), so a Ctrl-C is honoured between them.
    const residual = buffers.f32("residual", L * H); // [L, H] a capture's block output, discarded
    const capture = async (b: number, w: BlockWeights, needed: Map<LinearInput, HessianSink>): Promise<void> => {
      for (const x of X) {
        const got: { acc: HessianSink; x: Float32Array; T: number }[] = [];
        try {
          blockForward({ ...ctx, tap: (ev) => {
            const acc = needed.get(ev.input);
            if (!acc) return;
            got.push({ acc, x: ev.x, T: ev.T });
            if (got.length === needed.size) throw STOP; // the rest of the block is not needed for these Hessians
          } }, b, w, x, L, 0, scratch, residual); // X_b itself stays as it is
        } catch (e) {
          if (e !== STOP) throw e;
        }
        try {
          for (const g of got) await g.acc.addAsync(backend, g.x, g.T, { signal: job.signal });
        } catch (e) {
          if (job.signal?.aborted) throw new InterruptedError(work);
          throw e;
        }
        if (job.signal?.aborted) throw new InterruptedError(work);
      }
    };

    for (let b = 0; b < cfg.numLayers; b++) {
      const tb = performance.now();
      job.onEvent?.({ type: "block-start", block: b, blocks: cfg.numLayers });
      const done = journal.blocks.find((x) => x.index === b);
      // f32 weights of this block only (into the same memory as the last block's); plain RTN reads
      // each matrix in its stored dtype (rtnDirect)
      const w = loadBlock(cfg, src, b, { linearWeights: !rtnDirect, buffers });

      // --- AWQ: search (or re-apply) scales and clips, keep the original block's outputs ---
      let advanced = false; // X holds X_{b+1} already
      if (usesAwq(s.method)) {
        const ta = performance.now();
        const known = loaded?.blocks.find((x) => x.block === b) ?? searches.find((x) => x.block === b);
        const search = known ?? await awqSearchBlock({
          cfg, backend, rope: ctx.rope, block: b, weights: w, inputs: X, seqlen: L,
          bits: s.bits, groupSize: s.groupSize, duoScaling: s.duoScaling ?? AWQ_DEFAULTS.duoScaling, clip: s.clip ?? true,
          clipSampling: s.clipSampling ?? AWQ_DEFAULTS.clipSampling, signal: job.signal,
        }).catch((e: unknown) => {
          if (job.signal?.aborted) throw new InterruptedError(work);
          throw e;
        });
        if (!known) job.onEvent?.({ type: "awq-search", block: b, seconds: (performance.now() - ta) / 1000, alphas: search.scales.map((g) => g.alpha), loaded: false });
        if (s.method === "awq") { advance(b, w); advanced = true; } // the ORIGINAL block's outputs feed the next block
        applyAwqScales(cfg, w, search);
        applyAwqClip(w, search);
        if (!searches.some((x) => x.block === b)) {
          searches.push(search);
          await writeAwqSearch(searchPath, modelDir, searchSettings!, searches);
        }
      }

      if (done) {
        // Resumed: quantized weights come back from the block file, bit-identical to the first run's.
        if (needsCalibration(s) && !advanced) {
          const f = await output.read(b);
          try {
            for (const spec of cfg.arch.linears) dequantize(format.readLinear(f.reader, cfg, s, b, spec, f.file), w.linears[spec.name].weight);
          } finally { await f.close(); }
          advance(b, w);
        }
        job.onEvent?.({ type: "block-done", block: b, blocks: cfg.numLayers, seconds: (performance.now() - tb) / 1000, resumed: true });
        continue;
      }

      const results = new Map<LinearName, QuantizedLinear>();
      const blockLayers: LayerReport[] = [];
      const record = (name: LinearName, q: QuantizedLinear, relWeightErr: number, extra: Pick<LayerReport, "loss" | "damp" | "relOutputError">, tl: number): void => {
        const l = w.linears[name];
        const report: LayerReport = { block: b, layer: name, shape: [l.N, l.K], ...extra, relWeightError: relWeightErr, seconds: (performance.now() - tl) / 1000 };
        results.set(name, l.bias ? { ...q, bias: l.bias } : q);
        blockLayers.push(report);
        job.onEvent?.({ type: "layer", report });
      };

      if (s.method === "awq") {
        for (const spec of cfg.arch.linears) {
          await checkAbort();
          const tl = performance.now();
          const l = w.linears[spec.name];
          assertFinite(l.weight, linearTensorName(cfg.arch, b, spec), modelDir);
          const q = awqQuantizeLinear({ weight: l.weight, rows: l.N, cols: l.K, bits: s.bits, groupSize: s.groupSize });
          record(spec.name, q, relWeightError(l.weight, dequantize(q, buffers.f32("dequantized", l.N * l.K))), { loss: null, damp: null, relOutputError: null }, tl);
        }
      } else {
        for (const group of groupsOf(cfg, s)) {
          await checkAbort();
          const specs = group.map((n) => cfg.arch.linears.find((l) => l.name === n)!);
          // Hessians of the inputs this group reads, from the block as quantized so far.
          const hess = new Map<LinearInput, HessianSink>();
          if (needsCalibration(s)) {
            for (const sp of specs) {
              const K = w.linears[sp.name].K;
              if (hess.has(sp.input)) continue;
              const storage = buffers.f32(`hessian:${hess.size}`, K * K);
              hess.set(sp.input, job.gpu ? await job.gpu.hessian(hess.size, K, L, storage) : new HessianAccumulatorF32(K, storage));
            }
            await capture(b, w, hess);
          }
          for (const sp of specs) {
            await checkAbort();
            job.onEvent?.({ type: "layer-start", block: b, layer: sp.name });
            const tl = performance.now();
            const l = w.linears[sp.name];
            if (rtnDirect) {
              const name = linearTensorName(cfg.arch, b, sp);
              const { data, dtype } = readStored(ckpt, name, buffers);
              const r = rtnQuantizeRows(kernels, data, dtype, l.N, l.K, s.bits, s.groupSize, s.sym, buffers.u8(codesSlot(b, sp.name), l.N * l.K));
              if (r.nonFinite >= 0) throw nonFiniteError(name, r.nonFinite, dtype === "F32" ? data[r.nonFinite]! : ckpt.readF32Sync(name)[r.nonFinite]!, modelDir);
              record(sp.name, r.q, r.den > 0 ? r.num / r.den : 0, { loss: null, damp: null, relOutputError: null }, tl);
              continue;
            }
            const Hm = (await hess.get(sp.input)?.hessian()) ?? null;
            assertFinite(l.weight, linearTensorName(cfg.arch, b, sp), modelDir);
            if (Hm) assertFinite(Hm, `Hessian of ${linearTensorName(cfg.arch, b, sp)}`, modelDir);
            let q: QuantizedLinear, Q: Float32Array, loss: number | null = null, damp: number | null = null;
            if (s.method === "rtn") {
              q = rtnQuantizeLinear({ weight: l.weight, rows: l.N, cols: l.K, bits: s.bits, groupSize: s.groupSize, sym: s.sym, codes: buffers.u8(codesSlot(b, sp.name), l.N * l.K) });
              Q = dequantize(q, buffers.f32("dequantized", l.N * l.K));
            } else {
              let res;
              try {
                // Off the JS thread: a Ctrl-C within this layer cancels the kernel (issue 8 item 7).
                res = await gptqQuantizeLinearAsync({
                  backend, weight: l.weight, rows: l.N, cols: l.K, hessian: Hm!, bits: s.bits, groupSize: s.groupSize, sym: s.sym,
                  actOrder: s.actOrder, staticGroups: s.staticGroups, damp: s.damp, blockSize: s.blockSize, groupGrid: s.groupGrid, sweep: job.gpu,
                  out: {
                    codes: buffers.u8(codesSlot(b, sp.name), l.N * l.K), dequantized: buffers.f32("dequantized", l.N * l.K), hinv: buffers.f32("work", l.K * l.K),
                    grids: gridSlots(b, sp.name, l.N, l.K),
                  },
                }, { signal: job.signal });
              } catch (e) {
                if (job.signal?.aborted) throw new InterruptedError(work);
                // name the layer (the method knows only the matrix)
                if (e instanceof NumericError && e.details.field === undefined) throw new NumericError(e.message.split("\n")[0]!, { ...e.details, file: modelDir, field: linearTensorName(cfg.arch, b, sp) });
                throw e;
              }
              const { dequantized, ...r } = res;
              q = r; Q = dequantized; loss = r.loss; damp = r.dampUsed;
            }
            record(sp.name, q, relWeightError(l.weight, Q), { loss, damp, relOutputError: Hm ? await relOutputErrorAsync(backend, l.weight, Q, Hm, l.N, l.K, { signal: job.signal }, loss !== null && damp !== null ? { loss, dampUsed: damp } : undefined, buffers).catch((e: unknown) => {
              if (job.signal?.aborted) throw new InterruptedError(work);
              throw e;
            }) : null }, tl);
            l.weight.set(Q); // later groups see the quantized layer (true-sequential); Q's slot is the next layer's
          }
        }
      }
      await checkAbort();
      const tensors = format.blockTensors(cfg, s, b, w, results, kernels, packAlloc(b));
      const seconds = (performance.now() - tb) / 1000;
      // The block is written (and synced) while the next block computes (plain RTN); the journal lists it only once it is on disk.
      await blockWrite;
      blockWrite = output.write({ index: b, layers: blockLayers, seconds }, tensors);
      blockWrite.catch(() => {}); // handled where it is awaited (the next block, or before finishing)
      // Only plain RTN overlaps (its blocks are cheap to hold); GPTQ/AWQ keep one block's output at a time.
      if (!rtnDirect) await blockWrite;
      layers.push(...blockLayers);
      if (needsCalibration(s) && !advanced) advance(b, w);
      job.onEvent?.({ type: "block-done", block: b, blocks: cfg.numLayers, seconds, resumed: false });
    }

    await blockWrite;
    // --- lm_head (GPTQModel lm_head: true): after the last block, from its outputs ---
    let lmHead: FinishInput["lmHead"];
    if (s.lmHead) {
      await checkAbort();
      try {
        lmHead = await quantizeLmHead({
          cfg, s: { ...s, lmHead: s.lmHead }, ckpt, modelDir, backend, kernels, X, finalNorm: src.readF32Sync(cfg.arch.finalNorm.hf), gpu: job.gpu,
          ...(job.signal !== undefined ? { signal: job.signal } : {}),
        });
      } catch (e) {
        if (job.signal?.aborted) throw new InterruptedError(work);
        throw e;
      }
      X = [];
    }
    // --- complete the final output (the format's finish), then rename it into place ---
    job.onEvent?.({ type: "finalize" });
    const done = await output.finish({
      out: outDir, cfg, s, modelDir, ckpt, maxShardBytes: job.maxShardBytes ?? 4 * 2 ** 30,
      layers, seconds: (performance.now() - t0) / 1000, ...(lmHead !== undefined ? { lmHead } : {}),
    });
    if (job.saveSearch && usesAwq(s.method)) copyFileSync(searchPath, resolve(job.saveSearch));
    if (existsSync(outDir)) rmSync(outDir, { recursive: true, force: true });
    renameSync(output.path, outDir);
    rmSync(work, { recursive: true, force: true });
    const report = format.kind === "folder" ? join(outDir, done.report) : done.report;
    return {
      outDir, format: format.id, layers, seconds: (performance.now() - t0) / 1000, files: done.files, report, summary: done.summary,
      ...(lmHead !== undefined ? { lmHead: lmHead.report } : {}),
    };
  } finally {
    await blockWrite.catch(() => {}); // an interrupted run keeps the block being written (journaled once on disk)
    await output?.close();
    await ckpt.close();
  }
}

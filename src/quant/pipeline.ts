/**
 * The layer-by-layer quantization pipeline (ARCHITECTURE.md "QUANTIZE"):
 *
 *   calibration windows → embeddings → X₀ (inputs of block 0)
 *   for each block b (only this block's weights are resident):
 *     for each true-sequential group: forward with taps → Hessians → quantize
 *     pack → block file (atomic) → journal
 *     forward the QUANTIZED block → X_{b+1}
 *   assemble shards + configs into <out>.partial/final, rename to <out>
 *
 * Peak memory: one block of f32 weights + the calibration activations (two copies:
 * X_b and X_{b+1}) + one layer's Hessian. It does not grow with the number of layers.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ModelConfig } from "../arch/config.ts";
import { linearTensorName, type LinearInput, type LinearName, type LinearSpec } from "../arch/registry.ts";
import type { Backend } from "../backend/backend.ts";
import { openCheckpoint, writeShardedSafetensors, type Checkpoint } from "../io/checkpoint.ts";
import { openSafetensors, writeSafetensors, type TensorSource as WriteSource } from "../io/safetensors.ts";
import { checkpointSource, readModelConfig } from "../load/hf-folder.ts";
import { blockForward, type BlockContext, type LayerCache } from "../nn/block.ts";
import { RopeTable } from "../nn/rope.ts";
import { loadBlock, loadEmbedding, type BlockWeights } from "../nn/weights.ts";
import { packGptq, unpackGptq } from "../pack/hf-gptq.ts";
import { fromF32, type DType } from "../tensor/dtype.ts";
import { loadTokenizer } from "../tokenizer/tokenizer.ts";
import { QuantizeLlmError, UsageError } from "../util/errors.ts";
import { calibrationWindows } from "./calibrate.ts";
import { gptqQuantizeLinear } from "./gptq.ts";
import { HessianAccumulator } from "./hessian.ts";
import { checkResumable, JOURNAL_MAGIC, JOURNAL_VERSION, readJournal, writeJournal, type Journal } from "./journal.ts";
import { relOutputError, relWeightError, type LayerReport } from "./report.ts";
import { rtnQuantizeLinear } from "./rtn.ts";
import { gptqQuantizationConfig, validateSettings, type QuantSettings } from "./settings.ts";
import { dequantize, type QuantizedLinear } from "./types.ts";

export const VERSION = "0.1.0";

export type PipelineEvent =
  | { type: "calibrated"; samples: number; seqlen: number }
  | { type: "block-start"; block: number; blocks: number }
  | { type: "layer"; report: LayerReport }
  | { type: "block-done"; block: number; blocks: number; seconds: number; resumed: boolean }
  | { type: "finalize" };

export interface QuantizeJob {
  modelDir: string;
  outDir: string;
  settings: QuantSettings;
  backend: Backend;
  /** Continue an interrupted run from its journal. */
  resume?: boolean;
  /** Replace an existing output folder. */
  overwrite?: boolean;
  /** Shard size limit of the output (bytes of tensor data). */
  maxShardBytes?: number;
  onEvent?: (e: PipelineEvent) => void;
  /** Aborting stops between layers; the journal is kept for --resume. */
  signal?: AbortSignal;
}

export interface QuantizeResult {
  outDir: string;
  layers: LayerReport[];
  seconds: number;
  files: string[];
}

export class InterruptedError extends QuantizeLlmError {
  constructor(work: string) {
    super("E_INTERRUPTED", "quantization interrupted", {
      file: work, hint: "run the same command with --resume to continue from the last finished block",
    });
  }
}

const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja", "tokenizer.model"];

/** One layer's quantizer, by method. */
function quantizeLinear(s: QuantSettings, W: Float32Array, N: number, K: number, H: Float64Array | null): QuantizedLinear & { loss: number | null; damp: number | null } {
  if (s.method === "gptq") {
    const r = gptqQuantizeLinear({
      weight: W, rows: N, cols: K, hessian: H!, bits: s.bits, groupSize: s.groupSize, sym: s.sym,
      actOrder: s.actOrder, staticGroups: s.staticGroups, damp: s.damp, blockSize: s.blockSize,
    });
    return { ...r, loss: r.loss, damp: r.dampUsed };
  }
  return { ...rtnQuantizeLinear({ weight: W, rows: N, cols: K, bits: s.bits, groupSize: s.groupSize, sym: s.sym }), loss: null, damp: null };
}

/** GPTQ needs calibration inputs; RTN uses them only to report each layer's output error. */
function needsCalibration(s: QuantSettings): boolean {
  return s.method !== "rtn" || s.calibSamples > 0;
}

/** The true-sequential groups, or everything at once. */
function groupsOf(cfg: ModelConfig, s: QuantSettings): LinearName[][] {
  return s.trueSequential ? cfg.arch.sequentialGroups.map((g) => [...g]) : [cfg.arch.linears.map((l) => l.name)];
}

function storageDtype(cfg: ModelConfig): "F32" | "F16" | "BF16" {
  return cfg.torchDtype;
}

function rawAs(ckpt: Checkpoint, name: string, dtype: "F32" | "F16" | "BF16"): Uint8Array {
  const info = ckpt.info(name);
  return info.dtype === dtype ? ckpt.readRawSync(name) : fromF32(dtype, ckpt.readF32Sync(name));
}

export async function quantizeModel(job: QuantizeJob): Promise<QuantizeResult> {
  const t0 = performance.now();
  const s = job.settings;
  const modelDir = resolve(job.modelDir);
  const outDir = resolve(job.outDir);
  const cfg = readModelConfig(modelDir);
  validateSettings(cfg, s, modelDir);
  if (existsSync(outDir) && !job.overwrite) {
    throw new UsageError("output folder already exists", { file: outDir, hint: "choose another -o, or pass --overwrite" });
  }
  const work = `${outDir}.partial`;
  const journalPath = join(work, "journal.json");
  const settingsKey = JSON.stringify(s);
  let journal: Journal | null = readJournal(journalPath);
  if (journal && !job.resume) {
    throw new UsageError("an interrupted run of this output exists", {
      file: work, hint: "pass --resume to continue it, or delete the folder to start over",
    });
  }
  if (journal) checkResumable(journal, modelDir, settingsKey, journalPath);
  if (!journal) {
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    journal = { magic: JOURNAL_MAGIC, version: JOURNAL_VERSION, model: modelDir, settings: settingsKey, blocks: [] };
    await writeJournal(journalPath, journal);
  }

  const ckpt = await openCheckpoint(modelDir);
  const src = checkpointSource(ckpt, modelDir);
  const { backend } = job;
  const ctx: BlockContext = { cfg, backend, rope: new RopeTable(cfg) };
  const H = cfg.hiddenSize;
  const L = s.calibSeqlen;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const scratch: LayerCache = { k: new Float32Array(L * kvDim), v: new Float32Array(L * kvDim) };
  const layers: LayerReport[] = journal.blocks.flatMap((b) => b.layers);
  // Yield to the event loop so a SIGINT handler can run between layers, then honour it.
  const checkAbort = async (): Promise<void> => {
    await new Promise((r) => setImmediate(r));
    if (job.signal?.aborted) throw new InterruptedError(work);
  };

  try {
    // --- calibration: X [samples][L·H] entering block 0 ---
    let X: Float32Array[] = [];
    if (needsCalibration(s)) {
      const tok = loadTokenizer(modelDir, cfg.eosTokenIds);
      const windows = calibrationWindows(tok, readFileSync(s.calibText, "utf8"), { samples: s.calibSamples, seqlen: L, seed: s.calibSeed }, s.calibText);
      const embed = loadEmbedding(cfg, src); // [V, H], dropped after this loop
      X = windows.map((w) => {
        const x = new Float32Array(L * H); // [L, H]
        w.forEach((id, t) => x.set(embed.subarray(id * H, (id + 1) * H), t * H));
        return x;
      });
      job.onEvent?.({ type: "calibrated", samples: X.length, seqlen: L });
    }
    const runBlock = (b: number, w: BlockWeights, tap?: BlockContext["tap"]): Float32Array[] =>
      X.map((x) => blockForward({ ...ctx, tap }, b, w, x, L, 0, scratch));

    for (let b = 0; b < cfg.numLayers; b++) {
      const tb = performance.now();
      job.onEvent?.({ type: "block-start", block: b, blocks: cfg.numLayers });
      const done = journal.blocks.find((x) => x.index === b);
      const w = loadBlock(cfg, src, b); // f32 weights of this block only
      if (done) {
        // Resumed: the quantized weights come back from the block file, bit-identical to the first run's.
        if (needsCalibration(s)) {
          const f = await openSafetensors(join(work, done.file));
          try {
            for (const spec of cfg.arch.linears) {
              const l = w.linears[spec.name];
              const base = `${cfg.arch.blockPrefix(b)}.${spec.hf}`;
              const q = unpackGptq({
                qweight: new Int32Array(f.readRawSync(`${base}.qweight`).slice().buffer),
                qzeros: new Int32Array(f.readRawSync(`${base}.qzeros`).slice().buffer),
                scales: new Uint16Array(f.readRawSync(`${base}.scales`).slice().buffer),
                gIdx: new Int32Array(f.readRawSync(`${base}.g_idx`).slice().buffer),
              }, { N: l.N, K: l.K, bits: s.bits, groupSize: s.groupSize, sym: s.sym, format: s.format, name: base, file: done.file });
              l.weight = dequantize(q);
            }
          } finally { await f.close(); }
          X = runBlock(b, w);
        }
        job.onEvent?.({ type: "block-done", block: b, blocks: cfg.numLayers, seconds: (performance.now() - tb) / 1000, resumed: true });
        continue;
      }

      const results = new Map<LinearName, QuantizedLinear>();
      const blockLayers: LayerReport[] = [];
      for (const group of groupsOf(cfg, s)) {
        await checkAbort();
        const specs = group.map((n) => cfg.arch.linears.find((l) => l.name === n)!);
        // Hessians of the inputs this group reads, from the block as quantized so far.
        const hess = new Map<LinearInput, HessianAccumulator>();
        if (needsCalibration(s)) {
          for (const sp of specs) if (!hess.has(sp.input)) hess.set(sp.input, new HessianAccumulator(w.linears[sp.name].K, L));
          runBlock(b, w, (ev) => { if (ev.block === b) hess.get(ev.input)?.add(backend, ev.x, ev.T); });
        }
        for (const sp of specs) {
          await checkAbort();
          const tl = performance.now();
          const l = w.linears[sp.name];
          const Hm = hess.get(sp.input)?.hessian() ?? null;
          assertFinite(l.weight, `${linearTensorName(cfg.arch, b, sp)}`, modelDir);
          if (Hm) assertFinite(Hm, `Hessian of ${linearTensorName(cfg.arch, b, sp)}`, modelDir);
          const q = quantizeLinear(s, l.weight, l.N, l.K, Hm);
          const Q = dequantize(q);
          const report: LayerReport = {
            block: b, layer: sp.name, shape: [l.N, l.K], loss: q.loss,
            relOutputError: Hm ? relOutputError(backend, l.weight, Q, Hm, l.N, l.K) : null,
            relWeightError: relWeightError(l.weight, Q), damp: q.damp, seconds: (performance.now() - tl) / 1000,
          };
          l.weight = Q; // later groups see the quantized layer (true-sequential)
          results.set(sp.name, l.bias ? { ...q, bias: l.bias } : q);
          blockLayers.push(report);
          job.onEvent?.({ type: "layer", report });
        }
      }
      await checkAbort();
      const file = `block-${String(b).padStart(4, "0")}.safetensors`;
      await writeSafetensors(join(work, file), blockTensors(cfg, s, b, w, results));
      const seconds = (performance.now() - tb) / 1000;
      journal.blocks.push({ index: b, file, layers: blockLayers, seconds });
      await writeJournal(journalPath, journal);
      layers.push(...blockLayers);
      if (needsCalibration(s)) X = runBlock(b, w);
      job.onEvent?.({ type: "block-done", block: b, blocks: cfg.numLayers, seconds, resumed: false });
    }

    // --- assemble the final folder, then rename it into place ---
    job.onEvent?.({ type: "finalize" });
    const final = join(work, "final");
    rmSync(final, { recursive: true, force: true });
    const dtype = storageDtype(cfg);
    const blockFiles = await Promise.all(journal.blocks.slice().sort((a, b) => a.index - b.index).map((jb) => openSafetensors(join(work, jb.file))));
    const tensors: WriteSource[] = [{ name: cfg.arch.embed.hf, dtype, shape: [cfg.vocabSize, H], data: () => rawAs(ckpt, cfg.arch.embed.hf, dtype) }];
    for (const f of blockFiles) {
      for (const [name, info] of f.tensors) tensors.push({ name, dtype: info.dtype, shape: info.shape, data: () => f.readRawSync(name) });
    }
    tensors.push({ name: cfg.arch.finalNorm.hf, dtype, shape: [H], data: () => rawAs(ckpt, cfg.arch.finalNorm.hf, dtype) });
    if (!cfg.tieWordEmbeddings || ckpt.has(cfg.arch.lmHead.hf)) {
      tensors.push({ name: cfg.arch.lmHead.hf, dtype, shape: [cfg.vocabSize, H], data: () => rawAs(ckpt, cfg.arch.lmHead.hf, dtype) });
    }
    const { files } = await writeShardedSafetensors(final, tensors, { maxShardBytes: job.maxShardBytes ?? 4 * 2 ** 30, metadata: { format: "pt", quantizer: `quantize-llm ${VERSION}` } });
    await Promise.all(blockFiles.map((f) => f.close()));
    const qc = gptqQuantizationConfig(s, VERSION);
    writeFileSync(join(final, "config.json"), JSON.stringify({ ...cfg.raw, quantization_config: qc }, null, 2) + "\n");
    writeFileSync(join(final, "quantize_config.json"), JSON.stringify(qc, null, 2) + "\n");
    for (const f of TOKENIZER_FILES) if (existsSync(join(modelDir, f))) copyFileSync(join(modelDir, f), join(final, f));
    const seconds = (performance.now() - t0) / 1000;
    writeFileSync(join(final, "quant-report.json"), JSON.stringify({ settings: s, model: modelDir, seconds, layers }, null, 1) + "\n");
    if (existsSync(outDir)) rmSync(outDir, { recursive: true, force: true });
    renameSync(final, outDir);
    rmSync(work, { recursive: true, force: true });
    return { outDir, layers, seconds, files };
  } finally {
    await ckpt.close();
  }
}

/** The tensors a block contributes to the checkpoint, in file order. */
function blockTensors(cfg: ModelConfig, s: QuantSettings, b: number, w: BlockWeights, q: Map<LinearName, QuantizedLinear>): WriteSource[] {
  const a = cfg.arch;
  const p = a.blockPrefix(b);
  const dtype: DType = storageDtype(cfg);
  const H = cfg.hiddenSize;
  const out: WriteSource[] = [
    { name: `${p}.${a.attnNorm.hf}.weight`, dtype, shape: [H], data: fromF32(storageDtype(cfg), w.attnNorm) },
    { name: `${p}.${a.mlpNorm.hf}.weight`, dtype, shape: [H], data: fromF32(storageDtype(cfg), w.mlpNorm) },
  ];
  for (const spec of a.linears as readonly LinearSpec[]) {
    const ql = q.get(spec.name)!;
    const t = packGptq(ql, s.format);
    const base = `${p}.${spec.hf}`;
    const G = t.scales.length / ql.N;
    out.push(
      { name: `${base}.qweight`, dtype: "I32", shape: [(ql.K * s.bits) / 32, ql.N], data: bytes(t.qweight) },
      { name: `${base}.qzeros`, dtype: "I32", shape: [G, (ql.N * s.bits) / 32], data: bytes(t.qzeros) },
      { name: `${base}.scales`, dtype: "F16", shape: [G, ql.N], data: bytes(t.scales) },
      { name: `${base}.g_idx`, dtype: "I32", shape: [ql.K], data: bytes(t.gIdx) },
    );
    if (ql.bias) out.push({ name: `${base}.bias`, dtype: "F16", shape: [ql.N], data: fromF32("F16", ql.bias) });
  }
  return out;
}

function bytes(a: Int32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function assertFinite(a: Float32Array | Float64Array, what: string, file: string): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!)) {
      throw new QuantizeLlmError("E_NONFINITE", `${what} contains NaN or Inf`, {
        file, field: `${what}[${i}]`, expected: "finite values", found: String(a[i]),
        hint: "the checkpoint is corrupt or overflowed in its dtype; check it with quantize-llm eval before quantizing",
      });
    }
  }
}

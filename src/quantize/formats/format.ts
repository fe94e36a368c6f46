/**
 * The output formats of the quantizer, as one table (ARCHITECTURE.md "Format"): each entry
 * holds everything one format needs, so the pipeline has no per-format branch.
 *
 *   check        the format's constraints on the settings and on every layer's shape,
 *                run BEFORE any compute (a bad combination fails in milliseconds)
 *   blockTensors the packer: one finished block (norms + quantized linears) → its tensors
 *                (the resume journal's unit)
 *   stream       (the HF folders) the whole output's tensors declared from the settings
 *                alone: the pipeline writes each block straight into the final shards, in
 *                one pass (io/safetensors-stream.ts); formats without it (GGUF, whose file
 *                is made from all blocks at the end) get one block file per block
 *   readLinear   the unpacker: one linear back from what blockTensors wrote, exactly as
 *                packed (resume)
 *   finish       the config writer + assembly: streamed shards or block files → the output
 *
 * An entry is typed by what its pipeline hands it (`Format<F extends FormatInputs>`): the
 * per-layer result, the settings, the per-layer report rows and a quantized lm_head. The
 * rtn/gptq/awq pipeline (pipeline.ts) hands GridInputs (QuantizedLinear, QuantSettings,
 * LayerReport) to the GRID_FORMAT_IDS entries; the LLM.int8() pipeline (int8-pipeline.ts)
 * hands Int8Inputs (formats/bnb-int8.ts: BnbLinear, Int8Settings, OutlierReport) to
 * "bnb-int8". Both drive an entry the same way: check, then per block blockTensors → the
 * output (quantize/output.ts: the streamed shards when the entry has `stream`, else a block
 * file; the int8 pipeline always writes block files), then finish.
 *
 * Adding a format (compressed-tensors, K-quants next):
 *   1. write its byte packer/unpacker in src/pack/ (with unpack(pack(x)) == x tested);
 *   2. add a file here exporting a `Format` (see hf-gptq.ts for a folder format, gguf.ts
 *      for a single file, bnb-int8.ts for one fed by the int8 pipeline), with its `check`
 *      naming the flag at fault;
 *   3. add it to FORMATS in table.ts (and to GRID_FORMAT_IDS when it stores grid codes) and,
 *      if users pick it with `--format`, to FORMAT_FLAGS there.
 * Nothing else changes: the pipelines and the CLI read the table.
 */
import type { ModelConfig } from "../../arch/config.ts";
import type { LinearSpec, LinearName } from "../../arch/registry.ts";
import type { Checkpoint } from "../../io/checkpoint.ts";
import type { SafetensorsFile, TensorDecl, TensorSource as WriteSource } from "../../io/safetensors.ts";
import type { BlockWeights } from "../../nn/weights.ts";
import type { WeightKernels } from "../../backend/weight-kernels.ts";
import type { PackAlloc } from "../../pack/bits.ts";
import type { QuantizedLinear } from "../../tensor/quantized.ts";
import type { LayerReport } from "../report.ts";
import type { LmHeadReport } from "../lm-head.ts";
import type { QuantSettings } from "../settings.ts";

/** The entries that store grid codes (rtn, gptq, awq): what `quantizeModel` writes. */
export type GridFormatId = "hf-gptq" | "awq-gemm" | "gguf";
/** Every entry of the table: the grid formats and bitsandbytes LLM.int8() (`quantize-llm int8`). */
export type FormatId = GridFormatId | "bnb-int8";

/** What a pipeline hands the entries it writes (table.ts lists which pipeline hands which). */
export interface FormatInputs {
  /** One quantized linear (blockTensors' input, readLinear's output). */
  linear: unknown;
  settings: unknown;
  /** One row of the per-layer report (quant-report.json). */
  report: unknown;
  /** A quantized lm_head, when the settings ask for one. */
  lmHead: unknown;
}

/** The rtn/gptq/awq pipeline's: grid codes. */
export interface GridInputs extends FormatInputs {
  linear: QuantizedLinear;
  settings: QuantSettings;
  report: LayerReport;
  lmHead: { q: QuantizedLinear; report: LmHeadReport };
}

export interface FinishInput<F extends FormatInputs = GridInputs> {
  /** Where to write the output (a folder or a file, per `kind`); the pipeline renames it to `out`. */
  path: string;
  /** The final output path the user asked for. */
  out: string;
  cfg: ModelConfig;
  s: F["settings"];
  modelDir: string;
  /** The original (unquantized) checkpoint: embeddings, final norm, lm_head. */
  ckpt: Checkpoint;
  /** Block-file formats: one per block, in block order (empty for a streamed format). */
  blockFiles: SafetensorsFile[];
  /** Streamed formats: the shard files (and index) already written into `path` (empty otherwise). */
  files: string[];
  maxShardBytes: number;
  /** The per-layer report rows (quant-report.json). */
  layers: F["report"][];
  seconds: number;
  /** lm_head quantized as the settings ask (QuantSettings.lmHead, Int8Settings.quantizeLmHead); absent: kept as stored. */
  lmHead?: F["lmHead"];
}

export interface FinishResult {
  /** Files written (names inside a folder output; the file itself for a file output). */
  files: string[];
  /** Where the per-layer report went. */
  report: string;
  /** One line about the contents, for the CLI (types, bits per weight…); empty when nothing to add. */
  summary: string;
  /** Bytes of tensor data written (folder formats: the shards' tensors, headers excluded); absent when not counted. */
  tensorBytes?: number;
}

/** A block's tensors as blockTensors wrote them (a block file, or the streamed output). */
export type BlockTensorReader = Pick<SafetensorsFile, "tensors" | "readRawSync" | "readF32Sync">;

/**
 * A tensor of a streamed layout. `readAt`, given when its output bytes are bytes of the original
 * checkpoint (an embedding, lm_head in their stored dtype), fills `dst` with the bytes from
 * `offset` on: the output copies it in pieces through one small buffer instead of holding it whole.
 */
export interface StreamSource extends WriteSource {
  readAt?: (dst: Uint8Array, offset: number) => void;
}

/** The output of a streamed format, in file order; every shape is known before any compute. */
export interface StreamLayout<F extends FormatInputs = GridInputs> {
  /** Tensors before block 0 (from the original checkpoint). */
  head: StreamSource[];
  /** Block b's declarations, in blockTensors' order. */
  block(b: number): TensorDecl[];
  /** Declarations of the tensors after the last block. */
  tail: TensorDecl[];
  /** Those tensors with their data, at the end (a quantized lm_head is made after the last block). */
  tailTensors(o: Pick<FinishInput<F>, "lmHead">): StreamSource[];
  /** `__metadata__` of every shard. */
  metadata: Record<string, string>;
}

/** F: what the pipeline hands the entry; Id: its key in the table. */
export interface Format<F extends FormatInputs = GridInputs, Id extends FormatId = GridFormatId> {
  id: Id;
  /** For messages and --help. */
  title: string;
  kind: "folder" | "file";
  /** Throws a UsageError naming the flag (and the layer) at fault. */
  check(s: F["settings"], cfg: ModelConfig, modelDir: string, out: string): void;
  /**
   * The tensors of block `b`: its norms from `w` (AWQ scales them) and every linear of `q`.
   * Their data must not alias `q`'s arrays: the pipeline reuses those for a later block
   * while this block may still be being written. `alloc`: reused memory for the packed
   * arrays (the pipeline's, one set per block being written), so a block leaves no
   * garbage behind; absent, fresh arrays.
   */
  blockTensors(cfg: ModelConfig, s: F["settings"], b: number, w: BlockWeights, q: ReadonlyMap<LinearName, F["linear"]>, kernels?: WeightKernels, alloc?: PackAlloc): WriteSource[];
  /** Streamed formats: the whole output's layout (see StreamLayout). */
  stream?(cfg: ModelConfig, s: F["settings"], ckpt: Checkpoint): StreamLayout<F>;
  /** One linear of block `b` back from what blockTensors wrote (`file` for messages). */
  readLinear(f: BlockTensorReader, cfg: ModelConfig, s: F["settings"], b: number, spec: LinearSpec, file: string): F["linear"];
  finish(o: FinishInput<F>): Promise<FinishResult>;
}

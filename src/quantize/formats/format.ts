/**
 * The output formats of the quantizer, as one table (ARCHITECTURE.md "Format"): each entry
 * holds everything one format needs, so the pipeline has no per-format branch.
 *
 *   check        the format's constraints on the settings and on every layer's shape,
 *                run BEFORE any compute (a bad combination fails in milliseconds)
 *   blockTensors the packer: one finished block (norms + quantized linears) → the tensors
 *                of its block file (the resume journal's unit)
 *   readLinear   the unpacker: one linear back from a block file, exactly as packed (resume)
 *   finish       the config writer + assembly: block files → the output folder or file
 *
 * An entry is typed by what its pipeline hands it (`Format<F extends FormatInputs>`): the
 * per-layer result, the settings, the per-layer report rows and a quantized lm_head. The
 * rtn/gptq/awq pipeline (pipeline.ts) hands GridInputs (QuantizedLinear, QuantSettings,
 * LayerReport) to the GRID_FORMAT_IDS entries; the LLM.int8() pipeline (int8-pipeline.ts)
 * hands Int8Inputs (formats/bnb-int8.ts: BnbLinear, Int8Settings, OutlierReport) to
 * "bnb-int8". Both drive an entry the same way: check, then per block blockTensors → block
 * file, then finish.
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
import type { SafetensorsFile, TensorSource as WriteSource } from "../../io/safetensors.ts";
import type { BlockWeights } from "../../nn/weights.ts";
import type { WeightKernels } from "../../backend/weight-kernels.ts";
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
  /** One per block, in block order. */
  blockFiles: SafetensorsFile[];
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

/** F: what the pipeline hands the entry; Id: its key in the table. */
export interface Format<F extends FormatInputs = GridInputs, Id extends FormatId = GridFormatId> {
  id: Id;
  /** For messages and --help. */
  title: string;
  kind: "folder" | "file";
  /** Throws a UsageError naming the flag (and the layer) at fault. */
  check(s: F["settings"], cfg: ModelConfig, modelDir: string, out: string): void;
  /** The block file's tensors for block `b`: its norms from `w` (AWQ scales them) and every linear of `q`. */
  blockTensors(cfg: ModelConfig, s: F["settings"], b: number, w: BlockWeights, q: ReadonlyMap<LinearName, F["linear"]>, kernels?: WeightKernels): WriteSource[];
  /** One linear of block `b` back from its block file (`file` for messages). */
  readLinear(f: SafetensorsFile, cfg: ModelConfig, s: F["settings"], b: number, spec: LinearSpec, file: string): F["linear"];
  finish(o: FinishInput<F>): Promise<FinishResult>;
}

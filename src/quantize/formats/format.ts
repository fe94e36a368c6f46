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
 * Adding a format (e.g. issue 12's bitsandbytes LLM.int8(), compressed-tensors, K-quants):
 *   1. write its byte packer/unpacker in src/pack/ (with unpack(pack(x)) == x tested);
 *   2. add a file here exporting a `Format` (see hf-gptq.ts for a folder format, gguf.ts
 *      for a single file), with its `check` naming the flag at fault;
 *   3. add it to FORMATS in table.ts and, if users pick it with `--format`, to FORMAT_FLAGS there.
 * Nothing else changes: the pipeline and the CLI read the table.
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

export type FormatId = "hf-gptq" | "awq-gemm" | "gguf";

export interface FinishInput {
  /** Where to write the output (a folder or a file, per `kind`); the pipeline renames it to `out`. */
  path: string;
  /** The final output path the user asked for. */
  out: string;
  cfg: ModelConfig;
  s: QuantSettings;
  modelDir: string;
  /** The original (unquantized) checkpoint: embeddings, final norm, lm_head. */
  ckpt: Checkpoint;
  /** One per block, in block order. */
  blockFiles: SafetensorsFile[];
  maxShardBytes: number;
  layers: LayerReport[];
  seconds: number;
  /** lm_head quantized with QuantSettings.lmHead (absent: kept as stored). */
  lmHead?: { q: QuantizedLinear; report: LmHeadReport };
}

export interface FinishResult {
  /** Files written (names inside a folder output; the file itself for a file output). */
  files: string[];
  /** Where the per-layer report went. */
  report: string;
  /** One line about the contents, for the CLI (types, bits per weight…); empty when nothing to add. */
  summary: string;
}

export interface Format {
  id: FormatId;
  /** For messages and --help. */
  title: string;
  kind: "folder" | "file";
  /** Throws a UsageError naming the flag (and the layer) at fault. */
  check(s: QuantSettings, cfg: ModelConfig, modelDir: string, out: string): void;
  /** The block file's tensors for block `b`: its norms from `w` (AWQ scales them) and every linear of `q`. */
  blockTensors(cfg: ModelConfig, s: QuantSettings, b: number, w: BlockWeights, q: ReadonlyMap<LinearName, QuantizedLinear>, kernels?: WeightKernels): WriteSource[];
  /** One linear of block `b` back from its block file (`file` for messages). */
  readLinear(f: SafetensorsFile, cfg: ModelConfig, s: QuantSettings, b: number, spec: LinearSpec, file: string): QuantizedLinear;
  finish(o: FinishInput): Promise<FinishResult>;
}

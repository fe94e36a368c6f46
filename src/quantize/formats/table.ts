/**
 * The table of output formats (see format.ts for what an entry holds and how to add one).
 * `--format` picks a grid entry through FORMAT_FLAGS: `hf` is the HF folder natural to the
 * method (AutoAWQ GEMM for AWQ at 4 bits, its only width; HF-GPTQ for everything else,
 * AWQ at 2/3/8 bits included), `gguf` one .gguf file for llama.cpp. `quantize-llm int8`
 * writes the "bnb-int8" entry.
 *
 *   entry       pipeline          inputs (format.ts FormatInputs): per layer, settings, report rows
 *   hf-gptq     pipeline.ts       GridInputs: QuantizedLinear, QuantSettings, LayerReport
 *   awq-gemm    pipeline.ts       GridInputs
 *   gguf        pipeline.ts       GridInputs
 *   bnb-int8    int8-pipeline.ts  Int8Inputs (bnb-int8.ts): BnbLinear, Int8Settings, OutlierReport
 */
import type { Method } from "../settings.ts";
import { awqGemmFormat } from "./awq-gemm.ts";
import { bnbInt8Format } from "./bnb-int8.ts";
import type { GridFormatId } from "./format.ts";
import { ggufFormat } from "./gguf.ts";
import { hfGptqFormat } from "./hf-gptq.ts";

export const FORMATS = {
  "hf-gptq": hfGptqFormat,
  "awq-gemm": awqGemmFormat,
  gguf: ggufFormat,
  "bnb-int8": bnbInt8Format,
} as const;

/** The entries that store grid codes, i.e. those `quantizeModel` (and `--format`) can pick. */
export const GRID_FORMAT_IDS: readonly GridFormatId[] = ["hf-gptq", "awq-gemm", "gguf"];

/** `--format` values → the entry they select for a method and bit width. */
export const FORMAT_FLAGS = {
  hf: (m: Method, bits: number): GridFormatId => (m === "awq" && bits === 4 ? "awq-gemm" : "hf-gptq"),
  gguf: (): GridFormatId => "gguf",
} as const;
export type FormatFlag = keyof typeof FORMAT_FLAGS;

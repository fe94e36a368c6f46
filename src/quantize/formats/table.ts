/**
 * The table of output formats (see format.ts for what an entry holds and how to add one).
 * `--format` picks an entry through FORMAT_FLAGS: `hf` is the HF folder natural to the
 * method (AutoAWQ GEMM for AWQ at 4 bits, its only width; HF-GPTQ for everything else,
 * AWQ at 2/3/8 bits included), `gguf` one .gguf file for llama.cpp.
 */
import type { Method } from "../settings.ts";
import { awqGemmFormat } from "./awq-gemm.ts";
import type { Format, FormatId } from "./format.ts";
import { ggufFormat } from "./gguf.ts";
import { hfGptqFormat } from "./hf-gptq.ts";

export const FORMATS: Readonly<Record<FormatId, Format>> = {
  "hf-gptq": hfGptqFormat,
  "awq-gemm": awqGemmFormat,
  gguf: ggufFormat,
};

/** `--format` values → the entry they select for a method and bit width. */
export const FORMAT_FLAGS = {
  hf: (m: Method, bits: number): FormatId => (m === "awq" && bits === 4 ? "awq-gemm" : "hf-gptq"),
  gguf: (): FormatId => "gguf",
} as const;
export type FormatFlag = keyof typeof FORMAT_FLAGS;

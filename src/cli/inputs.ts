/**
 * Model inputs a quantizer cannot take, refused before anything is loaded: a GGUF file
 * (already llama.cpp's format: quantized or f16 without the HF layout) and a folder that
 * is already quantized (GPTQ, AWQ, bitsandbytes ...).
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { readAwqLegacyConfig } from "../load/awq-source.ts";
import { readQuantizationConfig } from "../load/gptq-source.ts";
import { UsageError } from "../util/errors.ts";

/** True when `path` is a file starting with the GGUF magic (or named *.gguf). */
export function isGgufFile(path: string): boolean {
  let st;
  try { st = statSync(path); } catch { return path.toLowerCase().endsWith(".gguf"); }
  if (!st.isFile()) return false;
  if (path.toLowerCase().endsWith(".gguf")) return true;
  const fd = openSync(path, "r");
  try {
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 0) === 4 && b.toString("latin1") === "GGUF";
  } finally { closeSync(fd); }
}

export function refuseGgufInput(path: string, command: string): void {
  if (!isGgufFile(path)) return;
  throw new UsageError(`${command} needs a Hugging Face model folder, not a GGUF file`, {
    file: path, expected: "a folder with config.json, *.safetensors (BF16/F16/F32) and tokenizer.json", found: "a GGUF file",
    hint: `GGUF input is supported by eval and chat (quantize-llm eval ${path}); quantization needs the original full-precision `
      + "weights and the HF layout (a GGUF's weights are usually already quantized, and re-quantizing them compounds the error): "
      + "pass the model's HF folder",
  });
}

/** Refuse a folder whose config says it is already quantized. */
export function refuseQuantizedInput(dir: string, raw: Record<string, unknown>, command: string): void {
  const q = readQuantizationConfig(dir, raw) ?? readAwqLegacyConfig(dir);
  if (q === null) return;
  const c = q.config;
  const method = String(c["quant_method"] ?? (c["w_bit"] !== undefined ? "awq" : "gptq"));
  const bits = c["bits"] ?? c["w_bit"] ?? (c["load_in_4bit"] === true ? 4 : c["load_in_8bit"] === true ? 8 : "?");
  const group = c["group_size"] ?? c["q_group_size"];
  throw new UsageError(`the model is already quantized: ${command} needs full-precision weights`, {
    file: q.file, ...(/(^|\/)config\.json$/.test(q.file) ? { field: "quantization_config" } : {}),
    expected: "a folder without quantization_config (BF16/F16/F32 safetensors)",
    found: `${method}, ${String(bits)} bits${group !== undefined ? `, group size ${String(group)}` : ""}`,
    hint: "quantize the original model folder; this one can be evaluated (eval), exported to GGUF (export) or run (chat) as it is",
  });
}


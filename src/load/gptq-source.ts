/**
 * Read HF-GPTQ checkpoints (ours and third-party): a WeightSource that serves
 * `<layer>.weight` by unpacking `<layer>.qweight/qzeros/scales/g_idx` and
 * dequantizing to f32, so the one forward pass runs them unchanged.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { TensorSource } from "../nn/weights.ts";
import { unpackGptq, type GptqCheckpointFormat } from "../pack/hf-gptq.ts";
import { dequantize, type QuantizedLinear } from "../tensor/quantized.ts";
import { ConfigError, FormatError } from "../util/errors.ts";

export interface GptqConfig {
  bits: number;
  groupSize: number;
  sym: boolean;
  descAct: boolean;
  format: GptqCheckpointFormat;
}

/** quantization_config from config.json, else quantize_config.json; null when the model is not GPTQ-quantized. */
export function readQuantizationConfig(dir: string, raw: Record<string, unknown>): { config: Record<string, unknown>; file: string } | null {
  const inConfig = raw["quantization_config"];
  if (inConfig && typeof inConfig === "object") return { config: inConfig as Record<string, unknown>, file: join(dir, "config.json") };
  const qc = join(dir, "quantize_config.json");
  if (existsSync(qc)) {
    try { return { config: JSON.parse(readFileSync(qc, "utf8")) as Record<string, unknown>, file: qc }; } catch (e) {
      throw new ConfigError("quantize_config.json is not valid JSON", { file: qc, found: (e as Error).message });
    }
  }
  return null;
}

export function parseGptqConfig(c: Record<string, unknown>, file: string): GptqConfig {
  const bits = c["bits"] ?? c["w_bit"];
  const groupSize = c["group_size"] ?? c["q_group_size"] ?? -1;
  if (typeof bits !== "number" || ![2, 3, 4, 8].includes(bits)) {
    throw new ConfigError("unsupported GPTQ bits", { file, field: "quantization_config.bits", expected: "2, 3, 4 or 8", found: JSON.stringify(bits) });
  }
  if (typeof groupSize !== "number" || !Number.isInteger(groupSize) || (groupSize < 1 && groupSize !== -1)) {
    throw new ConfigError("invalid GPTQ group size", { file, field: "quantization_config.group_size", expected: "a positive integer or -1", found: JSON.stringify(groupSize) });
  }
  const fmt = c["checkpoint_format"] ?? c["format"] ?? "gptq";
  if (fmt !== "gptq" && fmt !== "gptq_v2") {
    throw new ConfigError("unsupported GPTQ checkpoint format", {
      file, field: "quantization_config.checkpoint_format", expected: '"gptq" or "gptq_v2"', found: JSON.stringify(fmt),
      hint: "Marlin/bitblas/exllama repacked checkpoints must be converted back to the gptq format first",
    });
  }
  return { bits, groupSize, sym: c["sym"] !== false, descAct: c["desc_act"] === true, format: fmt };
}

function int32(b: Uint8Array): Int32Array { return new Int32Array(b.slice().buffer); }

/** `<base>.weight` of an HF-GPTQ checkpoint → the layer's HF base name, or null when the layer is not quantized. */
export function gptqLayerBase(ckpt: Checkpoint, name: string): string | null {
  return name.endsWith(".weight") && ckpt.has(name.slice(0, -".weight".length) + ".qweight") ? name.slice(0, -".weight".length) : null;
}

/** Unpack one GPTQ layer (`<base>.qweight/qzeros/scales/g_idx`) to our QuantizedLinear (codes, scales, zeros, g_idx). */
export function readGptqLinear(ckpt: Checkpoint, origin: string, q: GptqConfig, base: string): QuantizedLinear {
  const qs = ckpt.info(`${base}.qweight`).shape; // [K·b/32, N]
  const N = qs[1]!, K = (qs[0]! * 32) / q.bits;
  for (const part of ["qzeros", "scales", "g_idx"]) {
    if (!ckpt.has(`${base}.${part}`)) {
      throw new FormatError(`GPTQ layer is missing ${part}`, { file: origin, field: `${base}.${part}`, expected: "qweight, qzeros, scales and g_idx", found: "no such tensor" });
    }
  }
  const scales = ckpt.readRawSync(`${base}.scales`);
  return unpackGptq({
    qweight: int32(ckpt.readRawSync(`${base}.qweight`)),
    qzeros: int32(ckpt.readRawSync(`${base}.qzeros`)),
    scales: new Uint16Array(scales.slice().buffer),
    gIdx: int32(ckpt.readRawSync(`${base}.g_idx`)),
  }, { N, K, bits: q.bits, groupSize: q.groupSize, sym: q.sym, format: q.format, name: base, file: origin });
}

export function gptqSource(ckpt: Checkpoint, origin: string, q: GptqConfig): TensorSource {
  const baseOf = (name: string): string | null => gptqLayerBase(ckpt, name);
  const shapeOf = (base: string): [number, number] => {
    const qs = ckpt.info(`${base}.qweight`).shape; // [K·b/32, N]
    return [qs[1]!, (qs[0]! * 32) / q.bits];
  };
  return {
    origin,
    has: (name) => ckpt.has(name) || baseOf(name) !== null,
    shape: (name) => { const b = baseOf(name); return b ? shapeOf(b) : ckpt.info(name).shape; },
    readF32Sync: (name) => {
      const base = baseOf(name);
      if (!base) return ckpt.readF32Sync(name);
      return dequantize(readGptqLinear(ckpt, origin, q, base));
    },
  };
}

/**
 * Read AutoAWQ "GEMM" checkpoints (ours and third-party; FORMATS.md §3): a TensorSource
 * that serves `<layer>.weight` by unpacking `<layer>.qweight/qzeros/scales` and
 * dequantizing to f32, so the one forward pass runs them unchanged. Layers left in
 * full precision (`modules_to_not_convert`) are plain `.weight` tensors and pass through.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { TensorSource } from "../nn/weights.ts";
import type { SourceBlocks } from "../backend/backend.ts";
import { AWQ_GEMM_BITS, awqGemmShapeProblem, unpackAwqGemm } from "../pack/awq-gemm.ts";
import { dequantize, type QuantizedLinear } from "../tensor/quantized.ts";
import { ConfigError, FormatError } from "../util/errors.ts";
import { fromQuantizedLinear, type Buffers } from "./canonical.ts";
import { checkpointRaw } from "./raw-read.ts";
import { checkpointCanonical } from "./checkpoint-canonical.ts";

export interface AwqConfig {
  bits: 4;
  groupSize: number;
  version: "gemm";
}

/** AutoAWQ's legacy side file (`quant_config.json`: w_bit, q_group_size, zero_point, version "GEMM"). */
export const AWQ_LEGACY_CONFIG_FILE = "quant_config.json";

/** The legacy AutoAWQ config file of a folder, or null. Use when config.json has no quantization_config. */
export function readAwqLegacyConfig(dir: string): { config: Record<string, unknown>; file: string } | null {
  const file = join(dir, AWQ_LEGACY_CONFIG_FILE);
  if (!existsSync(file)) return null;
  let raw: unknown;
  try { raw = JSON.parse(readFileSync(file, "utf8")); } catch (e) {
    throw new ConfigError(`${AWQ_LEGACY_CONFIG_FILE} is not valid JSON`, { file, found: (e as Error).message });
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new ConfigError(`${AWQ_LEGACY_CONFIG_FILE} is not a JSON object`, { file, found: typeof raw });
  return { config: raw as Record<string, unknown>, file };
}

/**
 * Parse `quantization_config` (transformers `AwqConfig`) or a legacy `quant_config.json`:
 * {quant_method: "awq", bits|w_bit: 4, group_size|q_group_size, zero_point: true, version: "gemm"|"GEMM"}.
 * quant_method may be absent (legacy file); version defaults to "gemm" like AwqConfig.
 */
export function parseAwqConfig(c: Record<string, unknown>, file: string): AwqConfig {
  const field = (k: string): string => `quantization_config.${k}`;
  const method = c["quant_method"];
  if (method !== undefined && method !== "awq") {
    throw new ConfigError("not an AWQ quantization config", { file, field: field("quant_method"), expected: '"awq"', found: JSON.stringify(method) });
  }
  const version = c["version"] ?? "gemm";
  if (typeof version !== "string" || version.toLowerCase() !== "gemm") {
    throw new ConfigError("unsupported AWQ checkpoint version", {
      file, field: field("version"), expected: '"gemm" (or "GEMM")', found: JSON.stringify(version),
      hint: "only AutoAWQ's GEMM layout is read; GEMV, GEMV-fast, Marlin, ExLlama and IPEX layouts pack the codes differently — re-export the model with version=\"gemm\"",
    });
  }
  const bits = c["bits"] ?? c["w_bit"];
  if (bits !== AWQ_GEMM_BITS) {
    throw new ConfigError("unsupported AWQ bit width", { file, field: field(c["bits"] !== undefined ? "bits" : "w_bit"), expected: "4 (the only width of the GEMM layout)", found: JSON.stringify(bits) });
  }
  const groupSize = c["group_size"] ?? c["q_group_size"];
  if (typeof groupSize !== "number" || !Number.isInteger(groupSize) || groupSize < 1) {
    throw new ConfigError("invalid AWQ group size", { file, field: field(c["group_size"] !== undefined ? "group_size" : "q_group_size"), expected: "a positive integer (usually 128)", found: JSON.stringify(groupSize) });
  }
  const zeroPoint = c["zero_point"] ?? true;
  if (zeroPoint !== true) {
    throw new ConfigError("unsupported AWQ zero_point setting", {
      file, field: field("zero_point"), expected: "true (asymmetric codes with stored zero points)", found: JSON.stringify(zeroPoint),
    });
  }
  return { bits: AWQ_GEMM_BITS, groupSize, version: "gemm" };
}

function int32(b: Uint8Array): Int32Array { return new Int32Array(b.slice().buffer); }

/** `<base>.weight` of an AWQ checkpoint → the layer's HF base name, or null when the layer is not quantized. */
export function awqLayerBase(ckpt: Checkpoint, name: string): string | null {
  return name.endsWith(".weight") && ckpt.has(name.slice(0, -".weight".length) + ".qweight") ? name.slice(0, -".weight".length) : null;
}

/** Unpack one AWQ GEMM layer (`<base>.qweight/qzeros/scales`) to our QuantizedLinear. */
/** [N, K] of an AWQ layer, after checking its three tensors exist with their dtypes. */
function awqLayerShape(ckpt: Checkpoint, origin: string, base: string): { N: number; K: number } {
  const qs = ckpt.info(`${base}.qweight`).shape; // [K, N/8]
  if (qs.length !== 2) throw new FormatError("AWQ qweight must be 2-D", { file: origin, field: `${base}.qweight`, expected: "[in_features, out_features/8]", found: `[${qs.join(", ")}]` });
  for (const [part, dtype] of [["qweight", "I32"], ["qzeros", "I32"], ["scales", "F16"]] as const) {
    if (!ckpt.has(`${base}.${part}`)) {
      throw new FormatError(`AWQ layer is missing ${part}`, { file: origin, field: `${base}.${part}`, expected: "qweight, qzeros and scales", found: "no such tensor" });
    }
    const got = ckpt.info(`${base}.${part}`).dtype;
    if (got !== dtype) throw new FormatError(`AWQ tensor ${part} has the wrong dtype`, { file: origin, field: `${base}.${part}`, expected: dtype, found: got });
  }
  return { N: qs[1]! * 8, K: qs[0]! };
}

/**
 * An AWQ layer's stored bytes for Backend.repack (native/src/packed_repack.cc: the layout of
 * packing readCanonical's result); null when its shape is not one the GEMM layout allows
 * (readCanonical then reports it).
 */
export function readAwqSource(ckpt: Checkpoint, origin: string, q: AwqConfig, base: string, m: Buffers): SourceBlocks | null {
  const { N, K } = awqLayerShape(ckpt, origin, base);
  if (awqGemmShapeProblem(N, K, AWQ_GEMM_BITS, q.groupSize) !== null) return null;
  const raw = (part: string): Uint8Array => checkpointRaw(ckpt, `${base}.${part}`, m, `raw-${part}`);
  const G = K / q.groupSize;
  const s: SourceBlocks = { kind: "awq", qweight: raw("qweight"), qzeros: raw("qzeros"), scales: raw("scales"), N, K, groupSize: q.groupSize };
  return s.qweight.length === 4 * K * (N / 8) && s.qzeros.length === 4 * G * (N / 8) && s.scales.length === 2 * G * N ? s : null;
}

export function readAwqLinear(ckpt: Checkpoint, origin: string, q: AwqConfig, base: string): QuantizedLinear {
  const { N, K } = awqLayerShape(ckpt, origin, base);
  return unpackAwqGemm({
    qweight: int32(ckpt.readRawSync(`${base}.qweight`)),
    qzeros: int32(ckpt.readRawSync(`${base}.qzeros`)),
    scales: new Uint16Array(ckpt.readRawSync(`${base}.scales`).slice().buffer),
  }, { N, K, groupSize: q.groupSize, name: base, file: origin });
}

export function awqSource(ckpt: Checkpoint, origin: string, q: AwqConfig): TensorSource {
  const plain = checkpointCanonical(ckpt, origin);
  const baseOf = (name: string): string | null => awqLayerBase(ckpt, name);
  const shapeOf = (base: string): [number, number] => {
    const qs = ckpt.info(`${base}.qweight`).shape; // [K, N/8]
    if (qs.length !== 2) throw new FormatError("AWQ qweight must be 2-D", { file: origin, field: `${base}.qweight`, expected: "[in_features, out_features/8]", found: `[${qs.join(", ")}]` });
    return [qs[1]! * 8, qs[0]!];
  };
  return {
    origin,
    has: (name) => ckpt.has(name) || baseOf(name) !== null,
    shape: (name) => { const b = baseOf(name); return b ? shapeOf(b) : ckpt.info(name).shape; },
    readF32Sync: (name) => {
      const base = baseOf(name);
      if (!base) return ckpt.readF32Sync(name);
      return dequantize(readAwqLinear(ckpt, origin, q, base));
    },
    // 4-bit with zero points → int4 with mins = −s·z (contiguous groups: GEMM has no g_idx)
    readCanonical: (name, buffers) => {
      const base = baseOf(name);
      if (!base) return plain.readCanonical(name, buffers);
      return fromQuantizedLinear(readAwqLinear(ckpt, origin, q, base), { file: origin, field: base });
    },
    readSource: (name, buffers) => {
      const base = baseOf(name);
      return base ? readAwqSource(ckpt, origin, q, base, buffers) : null;
    },
    readEmbedding: (name) => plain.readEmbedding(name),
  };
}

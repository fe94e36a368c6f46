/**
 * Read HF-GPTQ checkpoints (ours and third-party): a TensorSource that serves
 * `<layer>.weight` either dequantized to f32 (readF32Sync: the reference path) or as
 * canonical packing inputs (readCanonical: 4-bit → int4, 8-bit sym → int8, 2/3-bit →
 * int8 expansion; act-order columns permuted so groups are contiguous).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { SourceBlocks } from "../backend/backend.ts";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { TensorSource } from "../nn/weights.ts";
import { unpackGptq, type GptqCheckpointFormat } from "../pack/hf-gptq.ts";
import { dequantize, groupLength, type QuantizedLinear } from "../tensor/quantized.ts";
import { ConfigError, FormatError } from "../util/errors.ts";
import { actOrderPerm, F16_TO_F32, fromQuantizedLinear, NO_SCRATCH, permuteColumns, type Buffers, type CanonicalWeight } from "./canonical.ts";
import { u16 } from "./gguf-canonical.ts";
import { checkpointRaw } from "./raw-read.ts";
import { checkpointCanonical } from "./checkpoint-canonical.ts";

export interface GptqConfig {
  bits: number;
  groupSize: number;
  sym: boolean;
  descAct: boolean;
  format: GptqCheckpointFormat;
  /**
   * GPTQModel's per-module overrides (`dynamic` in quantize_config.json; vLLM
   * gptq_utils.py `get_dynamic_override`): in order, the first pattern that re.match-es
   * (anchored at the start) a module name decides: "-:" = not quantized, "+:" or no prefix =
   * these bits/group_size/sym/desc_act instead of the top-level ones. GPTQModel writes
   * `{"lm_head": {bits: 8, group_size: 32, ...}}` for `lm_head: true`.
   */
  dynamic?: readonly GptqDynamicRule[];
}

export interface GptqDynamicRule { pattern: string; re: RegExp; negative: boolean; override: Record<string, unknown> }

function parseDynamic(d: unknown, file: string): GptqDynamicRule[] {
  if (d === undefined || d === null) return [];
  if (typeof d !== "object" || Array.isArray(d)) {
    throw new ConfigError("invalid GPTQ dynamic overrides", { file, field: "quantization_config.dynamic", expected: "an object {pattern: {bits, group_size, ...}}", found: JSON.stringify(d) });
  }
  return Object.entries(d as Record<string, unknown>).map(([pattern, v]) => {
    const negative = pattern.startsWith("-:");
    const body = negative || pattern.startsWith("+:") ? pattern.slice(2) : pattern;
    let re: RegExp;
    try { re = new RegExp(`^(?:${body})`); } catch (e) {
      throw new ConfigError("invalid GPTQ dynamic pattern", { file, field: `quantization_config.dynamic[${JSON.stringify(pattern)}]`, expected: "a regular expression", found: (e as Error).message });
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new ConfigError("invalid GPTQ dynamic override", { file, field: `quantization_config.dynamic[${JSON.stringify(pattern)}]`, expected: "an object such as {\"bits\": 8, \"group_size\": 32}", found: JSON.stringify(v) });
    }
    return { pattern, re, negative, override: v as Record<string, unknown> };
  });
}

/** The config one module (e.g. `lm_head`, `model.layers.3.mlp.down_proj`) was quantized with: the first matching `dynamic` rule's overrides applied. */
export function gptqLayerConfig(q: GptqConfig, module: string, file: string): GptqConfig {
  const rule = q.dynamic?.find((r) => r.re.test(module));
  if (rule === undefined || rule.negative) return q;
  const merged = parseGptqConfig({ bits: q.bits, group_size: q.groupSize, sym: q.sym, desc_act: q.descAct, ...rule.override, checkpoint_format: q.format }, file);
  return q.dynamic !== undefined ? { ...merged, dynamic: q.dynamic } : merged;
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
  return { bits, groupSize, sym: c["sym"] !== false, descAct: c["desc_act"] === true, format: fmt, dynamic: parseDynamic(c["dynamic"], file) };
}

function int32(b: Uint8Array): Int32Array {
  return b.byteOffset % 4 === 0 ? new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4) : new Int32Array(b.slice().buffer);
}

/** Spread the 4 nibbles of x (16 bits) into the 4 bytes of a u32, lowest nibble in the lowest byte. */
const spread4 = (x: number): number => {
  x = (x | (x << 8)) & 0x00ff00ff;
  return (x | (x << 4)) & 0x0f0f0f0f;
};

/**
 * 4-bit GPTQ layer → canonical q4 without going through QuantizedLinear: qweight words
 * [K/8, N] are transposed into codes [N, K] two u32 stores per word (little-endian).
 */
interface GptqRaw {
  N: number; K: number; G: number; groupSize: number;
  /** the stored bytes of qweight [K·b/32, N], qzeros [G, N·b/32] (int32), scales [G, N] (f16), g_idx [K] (int32) */
  qweight: Uint8Array; qzeros: Uint8Array; scales: Uint8Array; gIdx: Int32Array;
}

/** One layer's four tensors (bits 4 or 8: whole words per column) read into scratch slots, sizes checked. */
function readGptqRaw(ckpt: Checkpoint, origin: string, q: GptqConfig, base: string, m: Buffers): GptqRaw {
  const qs = ckpt.info(`${base}.qweight`).shape; // [K·b/32, N]
  const per = 32 / q.bits, N = qs[1]!, K = qs[0]! * per;
  const raw = (part: string): Uint8Array => checkpointRaw(ckpt, `${base}.${part}`, m, `raw-${part}`);
  const qweight = raw("qweight"), qzeros = raw("qzeros"), scales = raw("scales");
  const gIdx = int32(raw("g_idx")); // [K]
  const G = scales.length / 2 / N;
  const check = (what: string, got: number, want: number): void => {
    if (got !== want) {
      throw new FormatError(`GPTQ tensor ${what} has the wrong size`, {
        file: origin, field: `${base}.${what}`, expected: `${want} elements`, found: `${got}`, hint: "bits/group_size in quantize_config.json may not match the tensors",
      });
    }
  };
  if (!Number.isInteger(G) || G < 1) check("scales", scales.length / 2, N);
  check("qzeros", qzeros.length / 4, G * (N / per));
  check("g_idx", gIdx.length, K);
  return { N, K, G, groupSize: groupLength(q.groupSize, K), qweight, qzeros, scales, gIdx };
}

/**
 * A 4- or 8-bit layer's stored bytes for Backend.repack (native/src/packed_repack.cc:
 * the same layout as packing readGptqCanonical's result); null for other widths.
 */
export function readGptqSource(ckpt: Checkpoint, origin: string, q: GptqConfig, base: string, m: Buffers): SourceBlocks | null {
  if (q.bits !== 4 && q.bits !== 8) return null;
  const r = readGptqRaw(ckpt, origin, q, base, m);
  const perm = actOrderPerm(r.gIdx, r.groupSize, r.G, { file: origin, field: `${base}.g_idx` });
  return {
    kind: "gptq", bits: q.bits, qweight: r.qweight, qzeros: r.qzeros, scales: r.scales, perm,
    N: r.N, K: r.K, groupSize: r.groupSize, zeroAdd: q.format === "gptq" ? 1 : 0,
  };
}

function gptq4Canonical(ckpt: Checkpoint, origin: string, q: GptqConfig, base: string, m: Buffers): CanonicalWeight {
  const r = readGptqRaw(ckpt, origin, q, base, m);
  const { N, K, G, gIdx, groupSize } = r;
  const R = K / 8;
  const qw = int32(r.qweight); // [K/8, N]
  const qz = int32(r.qzeros); // [G, N/8]
  const sc = u16(r.scales); // [G, N] f16
  const codes = m.u8("codes", N * K); // [N, K]
  const c32 = new Uint32Array(codes.buffer, 0, (N * K) >> 2);
  const K4 = K / 4;
  for (let r = 0; r < R; r++) {
    const row = r * N;
    for (let n = 0, i = 2 * r; n < N; n++, i += K4) {
      const w = qw[row + n]!;
      c32[i] = spread4(w & 0xffff);
      c32[i + 1] = spread4(w >>> 16);
    }
  }
  const scales = m.f32("scales", N * G), zeros = m.u8("zeros", N * G); // [N, G]
  const add = q.format === "gptq" ? 1 : 0; // v1 stores zero − 1
  let sym = true;
  for (let g = 0; g < G; g++) {
    for (let n = 0; n < N; n++) {
      scales[n * G + g] = F16_TO_F32[sc[g * N + n]!]!;
      const z = ((qz[g * (N / 8) + (n >> 3)]! >>> (4 * (n & 7))) & 15) + add;
      zeros[n * G + g] = z;
      if (z !== 8) sym = false;
    }
  }
  let mins: Float32Array | null = null;
  if (!sym) {
    mins = m.f32("mins", N * G);
    for (let i = 0; i < mins.length; i++) mins[i] = -scales[i]! * zeros[i]!;
  }
  const perm = actOrderPerm(gIdx, groupSize, G, { file: origin, field: `${base}.g_idx` });
  const permuted = perm === null ? codes : permuteColumns(codes, N, K, perm, m.u8("codes-permuted", N * K));
  return { kind: "q4", args: { codes: permuted, scales, mins, N, K, groupSize, perm } };
}

/**
 * One GPTQ layer as canonical packing inputs (4-bit: int4 straight from qweight;
 * other widths through fromQuantizedLinear: int8, or two int8 planes for asymmetric 8-bit).
 */
export function readGptqCanonical(ckpt: Checkpoint, origin: string, q: GptqConfig, base: string, warn: (msg: string) => void, m: Buffers = NO_SCRATCH): CanonicalWeight {
  for (const part of ["qzeros", "scales", "g_idx"]) {
    if (!ckpt.has(`${base}.${part}`)) {
      throw new FormatError(`GPTQ layer is missing ${part}`, { file: origin, field: `${base}.${part}`, expected: "qweight, qzeros, scales and g_idx", found: "no such tensor" });
    }
  }
  if (q.bits === 4) return gptq4Canonical(ckpt, origin, q, base, m);
  return fromQuantizedLinear(readGptqLinear(ckpt, origin, q, base), { file: origin, field: base });
}

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

export function gptqSource(ckpt: Checkpoint, origin: string, q0: GptqConfig, warn: (msg: string) => void = () => {}): TensorSource {
  const plain = checkpointCanonical(ckpt, origin);
  const baseOf = (name: string): string | null => gptqLayerBase(ckpt, name);
  const configs = new Map<string, GptqConfig>();
  const cfgOf = (base: string): GptqConfig => {
    let c = configs.get(base);
    if (c === undefined) configs.set(base, (c = gptqLayerConfig(q0, base, origin)));
    return c;
  };
  const shapeOf = (base: string): [number, number] => {
    const qs = ckpt.info(`${base}.qweight`).shape; // [K·b/32, N]
    return [qs[1]!, (qs[0]! * 32) / cfgOf(base).bits];
  };
  return {
    origin,
    has: (name) => ckpt.has(name) || baseOf(name) !== null,
    shape: (name) => { const b = baseOf(name); return b ? shapeOf(b) : ckpt.info(name).shape; },
    readF32Sync: (name) => {
      const base = baseOf(name);
      if (!base) return ckpt.readF32Sync(name);
      return dequantize(readGptqLinear(ckpt, origin, cfgOf(base), base));
    },
    readCanonical: (name, buffers) => {
      const base = baseOf(name);
      return base ? readGptqCanonical(ckpt, origin, cfgOf(base), base, warn, buffers) : plain.readCanonical(name, buffers);
    },
    readSource: (name, buffers) => {
      const base = baseOf(name);
      return base ? readGptqSource(ckpt, origin, cfgOf(base), base, buffers) : null;
    },
    readEmbedding: (name) => plain.readEmbedding(name),
  };
}

/**
 * Normalised model configuration: the rest of the code never sees per-family
 * HF field names. Built from a HF `config.json` by `parseModelConfig`.
 */
import { ConfigError } from "../util/errors.ts";
import { ARCHS, archFor, type Arch } from "./registry.ts";

export type RopeScaling =
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  | { type: "linear"; factor: number };

export interface ModelConfig {
  /** HF `model_type` as found in config.json (llama | mistral | qwen2). */
  modelType: string;
  arch: Arch;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2; Llama with attention_bias). */
  qkvBias: boolean;
  /** o_proj carries a bias (Llama with attention_bias). */
  oBias: boolean;
  /** gate/up/down carry a bias (Llama with mlp_bias). */
  mlpBias: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** Storage dtype of the unquantized weights (config `torch_dtype`/`dtype`), default "F32". */
  torchDtype: "F32" | "F16" | "BF16";
  /** Warnings produced while normalising (e.g. sliding window ignored). */
  warnings: string[];
  /** The raw config.json object, kept for writers that copy it. */
  raw: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function num(raw: Json, file: string, key: string, opts: { int?: boolean; min?: number } = {}): number {
  const v = raw[key];
  if (typeof v !== "number" || !Number.isFinite(v) || (opts.int === true && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min)) {
    throw new ConfigError(`invalid or missing field "${key}" in model config`, {
      file, field: key,
      expected: `${opts.int === true ? "an integer" : "a number"}${opts.min !== undefined ? ` ≥ ${opts.min}` : ""}`,
      found: v === undefined ? "nothing (field missing)" : JSON.stringify(v),
      hint: "check that config.json is a complete Hugging Face config for this model",
    });
  }
  return v;
}

function optNum(raw: Json, file: string, key: string, dflt: number, opts: { int?: boolean; min?: number } = {}): number {
  return raw[key] === undefined || raw[key] === null ? dflt : num(raw, file, key, opts);
}

function bool(raw: Json, key: string, dflt: boolean): boolean {
  const v = raw[key];
  return typeof v === "boolean" ? v : dflt;
}

function parseRopeScaling(raw: Json, file: string): RopeScaling | null {
  const rs = raw["rope_scaling"];
  if (rs === undefined || rs === null) return null;
  if (typeof rs !== "object" || Array.isArray(rs)) {
    throw new ConfigError("invalid rope_scaling", { file, field: "rope_scaling", expected: "an object or null", found: JSON.stringify(rs) });
  }
  const r = rs as Json;
  const type = r["rope_type"] ?? r["type"];
  if (type === "default") return null;
  if (type === "llama3") {
    return {
      type: "llama3",
      factor: num(r, file, "factor", { min: 1 }),
      lowFreqFactor: num(r, file, "low_freq_factor"),
      highFreqFactor: num(r, file, "high_freq_factor"),
      originalMaxPositionEmbeddings: num(r, file, "original_max_position_embeddings", { int: true, min: 1 }),
    };
  }
  if (type === "linear") return { type: "linear", factor: num(r, file, "factor", { min: 1 }) };
  throw new ConfigError("unsupported rope_scaling type", {
    file, field: "rope_scaling.rope_type", expected: '"llama3", "linear" or "default"', found: JSON.stringify(type),
    hint: "YaRN / dynamic NTK scaling are not implemented yet; remove rope_scaling to run at the original context",
  });
}

function parseDtype(raw: Json): ModelConfig["torchDtype"] {
  const d = raw["torch_dtype"] ?? raw["dtype"];
  if (d === "bfloat16") return "BF16";
  if (d === "float16") return "F16";
  return "F32";
}

/** Normalise a HF config.json object. `file` is used in error messages. */
export function parseModelConfig(raw: Json, file = "config.json"): ModelConfig {
  const modelType = raw["model_type"];
  if (typeof modelType !== "string") {
    throw new ConfigError("config has no model_type", { file, field: "model_type", expected: "a string", found: JSON.stringify(modelType) });
  }
  const arch = archFor(modelType);
  if (!arch) {
    throw new ConfigError(`unsupported model_type "${modelType}"`, {
      file, field: "model_type",
      expected: `one of ${Object.values(ARCHS).flatMap((a) => a.modelTypes).join(", ")}`,
      found: JSON.stringify(modelType),
      hint: "quantize-llm supports Llama-family decoders; other architectures are not implemented",
    });
  }
  const warnings: string[] = [];
  const hiddenSize = num(raw, file, "hidden_size", { int: true, min: 1 });
  const numHeads = num(raw, file, "num_attention_heads", { int: true, min: 1 });
  const numKvHeads = optNum(raw, file, "num_key_value_heads", numHeads, { int: true, min: 1 });
  if (numHeads % numKvHeads !== 0) {
    throw new ConfigError("num_attention_heads is not a multiple of num_key_value_heads", {
      file, field: "num_key_value_heads", expected: `a divisor of ${numHeads}`, found: String(numKvHeads),
    });
  }
  const headDim = optNum(raw, file, "head_dim", hiddenSize / numHeads, { int: true, min: 2 });
  if (headDim % 2 !== 0) {
    throw new ConfigError("head_dim must be even for rotary embeddings", { file, field: "head_dim", expected: "an even integer", found: String(headDim) });
  }
  const act = raw["hidden_act"] ?? "silu";
  if (act !== "silu") {
    throw new ConfigError("unsupported activation", { file, field: "hidden_act", expected: '"silu"', found: JSON.stringify(act) });
  }
  if (arch.slidingWindowField !== undefined) {
    const sw = raw[arch.slidingWindowField];
    const used = raw["use_sliding_window"];
    if (typeof sw === "number" && used !== false) {
      warnings.push(`sliding_window=${sw} in ${file} is ignored: attention is computed over the full context (exact for sequences ≤ ${sw} tokens)`);
    }
  }
  const eos = raw["eos_token_id"];
  const eosTokenIds = Array.isArray(eos) ? eos.filter((x): x is number => typeof x === "number") : typeof eos === "number" ? [eos] : [];
  const bos = raw["bos_token_id"];
  const attentionBias = bool(raw, "attention_bias", false);
  return {
    modelType,
    arch,
    hiddenSize,
    intermediateSize: num(raw, file, "intermediate_size", { int: true, min: 1 }),
    numLayers: num(raw, file, "num_hidden_layers", { int: true, min: 1 }),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: num(raw, file, "vocab_size", { int: true, min: 1 }),
    maxPositionEmbeddings: optNum(raw, file, "max_position_embeddings", 2048, { int: true, min: 1 }),
    ropeTheta: optNum(raw, file, "rope_theta", 10000, { min: 0 }),
    ropeScaling: parseRopeScaling(raw, file),
    rmsNormEps: optNum(raw, file, "rms_norm_eps", 1e-6, { min: 0 }),
    tieWordEmbeddings: bool(raw, "tie_word_embeddings", arch.tieDefault),
    qkvBias: arch.qkvBias || attentionBias,
    oBias: attentionBias && !arch.qkvBias,
    mlpBias: bool(raw, "mlp_bias", false),
    bosTokenId: typeof bos === "number" ? bos : null,
    eosTokenIds,
    torchDtype: parseDtype(raw),
    warnings,
    raw,
  };
}

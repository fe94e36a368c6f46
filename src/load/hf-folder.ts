/**
 * Load a model folder (plain HF, HF-GPTQ or AutoAWQ: config.json + safetensors +
 * tokenizer) into a runnable Model: weights packed by the backend (packed-weights.ts),
 * or decoded to f32 once (the reference path; `--backend ref`).
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseModelConfig, type ModelConfig } from "../arch/config.ts";
import type { Backend } from "../backend/backend.ts";
import { openCheckpoint, type Checkpoint } from "../io/checkpoint.ts";
import { Model } from "../nn/model.ts";
import type { TensorSource } from "../nn/weights.ts";
import { loadTokenizer, type TextTokenizer } from "../tokenizer/tokenizer.ts";
import { ConfigError } from "../util/errors.ts";
import { gptqSource, parseGptqConfig, readQuantizationConfig } from "./gptq-source.ts";
import { awqSource, parseAwqConfig, readAwqLegacyConfig } from "./awq-source.ts";
import { bnbRunSettings, bnbSource } from "./bnb-int8-source.ts";
import { parseBnbConfig } from "../pack/bnb-int8.ts";
import { checkpointCanonical } from "./checkpoint-canonical.ts";
import { canPack } from "./canonical.ts";
import { checkpointF32Into } from "./raw-read.ts";
import { defaultWarn, loadWeights, resolveWeightMode, type LoadOptions } from "./packed-weights.ts";

export interface LoadedModel {
  dir: string;
  /** "hf" (plain weights) or the quantized checkpoint format that was unpacked. */
  format: "hf" | "gptq" | "awq" | "gguf" | "bnb-int8";
  cfg: ModelConfig;
  tokenizer: TextTokenizer;
  model: Model;
  /** How the linear weights are held: packed by the backend, or dequantized f32. */
  weights: "packed" | "f32";
}

/** Load any supported model: a `.gguf` file, or a plain / HF-GPTQ / AWQ folder. */
export async function loadModel(path: string, backend: Backend, opts: LoadOptions = {}): Promise<LoadedModel> {
  if (path.toLowerCase().endsWith(".gguf")) {
    const { loadGgufModel } = await import("./gguf-model.ts");
    return loadGgufModel(path, backend, opts);
  }
  return loadHfModel(path, backend, opts);
}

export function readModelConfig(dir: string): ModelConfig {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ConfigError("model folder not found", {
      file: dir, expected: "a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)", found: "no such folder",
      hint: "pass the path of a local model folder; nothing is downloaded",
    });
  }
  const file = join(dir, "config.json");
  if (!existsSync(file)) {
    // issue 10: say what the folder holds, so an empty or wrong folder explains itself
    const entries = readdirSync(dir);
    throw new ConfigError(entries.length === 0 ? "model folder is empty" : "model folder has no config.json", {
      file, expected: "a Hugging Face config.json (with *.safetensors and tokenizer.json beside it)",
      found: entries.length === 0 ? "an empty folder" : `no such file; the folder holds ${entries.slice(0, 6).join(", ")}${entries.length > 6 ? `, … (${entries.length} entries)` : ""}`,
      hint: entries.length === 0 ? "copy (or download) the model's files into it: config.json, model*.safetensors, tokenizer.json, tokenizer_config.json"
        : "pass the folder that holds config.json (a snapshot folder inside a Hugging Face cache, for example)",
    });
  }
  let raw: unknown;
  try { raw = JSON.parse(readFileSync(file, "utf8")); } catch (e) {
    throw new ConfigError("config.json is not valid JSON", {
      file, found: (e as Error).message,
      hint: "the file is damaged or incomplete (an interrupted download or an edit?): fetch config.json again, or fix the JSON at the position given",
    });
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError("config.json is not a JSON object", { file, found: typeof raw });
  }
  return parseModelConfig(raw as Record<string, unknown>, file);
}

/** A checkpoint seen as a TensorSource (HF names, decoded to f32, or in their stored 16 bits). */
export function checkpointSource(ckpt: Checkpoint, origin: string): TensorSource {
  const plain = checkpointCanonical(ckpt, origin);
  return {
    origin,
    has: (name) => ckpt.has(name),
    shape: (name) => ckpt.info(name).shape,
    readF32Sync: (name) => ckpt.readF32Sync(name),
    readF32Into: (name, out, buffers) => checkpointF32Into(ckpt, name, out, buffers),
    readCanonical: (name, buffers) => plain.readCanonical(name, buffers),
    readEmbedding: (name) => plain.readEmbedding(name),
    locate16: (name) => plain.locate16(name),
  };
}

export async function loadHfModel(dir: string, backend: Backend, opts: LoadOptions = {}): Promise<LoadedModel> {
  let mode = resolveWeightMode(opts.weights, backend);
  const warn = opts.warn ?? defaultWarn;
  const cfg = readModelConfig(dir);
  const ckpt = await openCheckpoint(dir);
  try {
    const legacyAwq = readAwqLegacyConfig(dir); // AutoAWQ's quant_config.json has no quant_method
    const quant = readQuantizationConfig(dir, cfg.raw) ?? legacyAwq;
    let format: LoadedModel["format"] = "hf";
    let source = checkpointSource(ckpt, dir);
    if (quant) {
      const method = quant === legacyAwq ? "awq" : quant.config["quant_method"];
      if (method === "gptq") {
        format = "gptq";
        source = gptqSource(ckpt, dir, parseGptqConfig(quant.config, quant.file), warn);
      } else if (method === "awq") {
        format = "awq";
        source = awqSource(ckpt, dir, parseAwqConfig(quant.config, quant.file));
      } else if (method === "bitsandbytes") {
        const bnb = parseBnbConfig(quant.config, quant.file); // refuses 4-bit and fp16-weight files
        format = "bnb-int8";
        source = bnbSource(ckpt, dir, bnbRunSettings(dir, ckpt, bnb, opts.int8));
        // "auto" runs LLM.int8() on the backend's int8 kernel (weights stay int8 in memory); the ref backend has none: f32.
        if ((opts.weights ?? "auto") === "auto" && backend.packInt8 !== undefined && canPack(backend)) mode = "packed";
      } else {
        throw new ConfigError("unsupported quantization method", {
          file: quant.file, field: "quantization_config.quant_method", expected: '"gptq", "awq" or "bitsandbytes" (8-bit)', found: JSON.stringify(method),
          hint: "quantize-llm reads plain HF checkpoints, HF-GPTQ, AutoAWQ GEMM and bitsandbytes 8-bit checkpoints",
        });
      }
    }
    const weights = loadWeights(cfg, source, backend, mode, warn, opts.weights16 ?? "map");
    const tokenizer = loadTokenizer(dir, cfg.eosTokenIds);
    return { dir, format, cfg, tokenizer, model: new Model(cfg, weights, backend), weights: mode };
  } finally {
    await ckpt.close();
  }
}

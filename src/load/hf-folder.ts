/**
 * Load a plain HF model folder (config.json + safetensors + tokenizer) into a
 * runnable Model. Weights are decoded to f32 once.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseModelConfig, type ModelConfig } from "../arch/config.ts";
import type { Backend } from "../backend/backend.ts";
import { openCheckpoint, type Checkpoint } from "../io/checkpoint.ts";
import { Model } from "../nn/model.ts";
import { loadModelWeights, type TensorSource } from "../nn/weights.ts";
import { loadTokenizer, type TextTokenizer } from "../tokenizer/tokenizer.ts";
import { ConfigError } from "../util/errors.ts";

export interface LoadedModel {
  dir: string;
  cfg: ModelConfig;
  tokenizer: TextTokenizer;
  model: Model;
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
    throw new ConfigError("model folder has no config.json", { file, expected: "a Hugging Face config.json", found: "no such file" });
  }
  let raw: unknown;
  try { raw = JSON.parse(readFileSync(file, "utf8")); } catch (e) {
    throw new ConfigError("config.json is not valid JSON", { file, found: (e as Error).message });
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError("config.json is not a JSON object", { file, found: typeof raw });
  }
  return parseModelConfig(raw as Record<string, unknown>, file);
}

/** A checkpoint seen as a TensorSource (HF names, decoded to f32). */
export function checkpointSource(ckpt: Checkpoint, origin: string): TensorSource {
  return {
    origin,
    has: (name) => ckpt.has(name),
    shape: (name) => ckpt.info(name).shape,
    readF32Sync: (name) => ckpt.readF32Sync(name),
  };
}

export async function loadHfModel(dir: string, backend: Backend): Promise<LoadedModel> {
  const cfg = readModelConfig(dir);
  const ckpt = await openCheckpoint(dir);
  try {
    const weights = loadModelWeights(cfg, checkpointSource(ckpt, dir));
    const tokenizer = loadTokenizer(dir, cfg.eosTokenIds);
    return { dir, cfg, tokenizer, model: new Model(cfg, weights, backend) };
  } finally {
    await ckpt.close();
  }
}

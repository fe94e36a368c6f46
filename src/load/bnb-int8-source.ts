/**
 * Read bitsandbytes 8-bit (LLM.int8()) folders, ours and third-party
 * (docs/format-bitsandbytes-int8.md): a layer is int8 when `<base>.SCB` exists beside
 * `<base>.weight` (I8); anything else (skipped modules, norms, embeddings) is read as stored.
 * `bnbSource` serves every int8 layer two ways: dequantized to f32 (W̃ = CB·SCB/127, the
 * f32 reference path, `--backend ref`), and as canonical "int8" inputs (CB, SCB and the
 * run-time outlier rule: the config's llm_int8_threshold, dynamic per batch, or the
 * int8-outliers.json columns on request) for Backend.packInt8; the other tensors are read
 * as a plain checkpoint (16-bit stays 16-bit).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { TensorSource } from "../nn/weights.ts";
import { checkpointCanonical } from "./checkpoint-canonical.ts";
import { INT8_OUTLIERS_FILE, readInt8Outliers } from "../pack/bnb-int8-outliers.ts";
import { unpackBnbInt8, type BnbInt8Config, type RawTensor } from "../pack/bnb-int8.ts";
import { dequantizeInt8, type Int8Linear } from "../tensor/int8.ts";

/** `<base>.weight` → base when the layer is an LLM.int8() layer, else null. */
export function bnbLayerBase(ckpt: Checkpoint, name: string): string | null {
  if (!name.endsWith(".weight")) return null;
  const base = name.slice(0, -".weight".length);
  return ckpt.has(`${base}.SCB`) ? base : null;
}

function raw(ckpt: Checkpoint, name: string): RawTensor | undefined {
  if (!ckpt.has(name)) return undefined;
  const i = ckpt.info(name);
  return { dtype: i.dtype, shape: i.shape, data: ckpt.readRawSync(name) };
}

export function readBnbInt8Linear(ckpt: Checkpoint, origin: string, base: string): Int8Linear {
  return unpackBnbInt8({
    weight: raw(ckpt, `${base}.weight`), SCB: raw(ckpt, `${base}.SCB`), weightFormat: raw(ckpt, `${base}.weight_format`),
  }, { base, file: origin });
}

/** The checkpoint with int8 layers dequantized to f32 (readF32Sync) or as LLM.int8() inputs (readCanonical); HF names. */
export function bnbSource(ckpt: Checkpoint, origin: string, run: BnbRunSettings): TensorSource {
  const plain = checkpointCanonical(ckpt, origin);
  return {
    origin,
    has: (name) => ckpt.has(name),
    shape: (name) => ckpt.info(name).shape,
    readF32Sync: (name) => {
      const base = bnbLayerBase(ckpt, name);
      return base ? dequantizeInt8(readBnbInt8Linear(ckpt, origin, base)) : ckpt.readF32Sync(name);
    },
    readCanonical: (name, buffers) => {
      const base = bnbLayerBase(ckpt, name);
      if (!base) return plain.readCanonical(name, buffers);
      const { N, K, CB, SCB } = readBnbInt8Linear(ckpt, origin, base);
      return { kind: "int8", args: { N, K, CB, SCB, threshold: run.threshold, staticCols: run.useStatic ? run.staticCols.get(base) ?? null : null } };
    },
    readEmbedding: (name) => plain.readEmbedding(name),
  };
}

/** Run-time choices for a bitsandbytes folder (LoadOptions.int8). */
export interface BnbRunOptions {
  /** Override the config's llm_int8_threshold (0 = plain per-token dynamic int8). */
  threshold?: number;
  /** Use int8-outliers.json's fixed columns instead of the per-batch scan (only where the file lists the layer). Default false. */
  staticOutliers?: boolean;
}

/** Run-time settings of the int8 layers: the threshold, and the static columns if the folder has them. */
export interface BnbRunSettings {
  threshold: number;
  /** base name → fixed outlier columns (from int8-outliers.json), empty when the file is absent */
  staticCols: Map<string, Int32Array>;
  /** whether readCanonical hands staticCols to the kernel */
  useStatic: boolean;
}

export function bnbRunSettings(dir: string, ckpt: Checkpoint, c: BnbInt8Config, o: BnbRunOptions = {}): BnbRunSettings {
  const file = join(dir, INT8_OUTLIERS_FILE);
  const staticCols = existsSync(file)
    ? readInt8Outliers(file, (name) => (ckpt.has(`${name}.SCB`) ? ckpt.info(`${name}.weight`).shape[1] ?? null : null))
    : new Map<string, Int32Array>();
  return { threshold: o.threshold ?? c.threshold, staticCols, useStatic: o.staticOutliers === true };
}

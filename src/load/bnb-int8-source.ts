/**
 * Read bitsandbytes 8-bit (LLM.int8()) folders, ours and third-party
 * (docs/format-bitsandbytes-int8.md): a layer is int8 when `<base>.SCB` exists beside
 * `<base>.weight` (I8); anything else (skipped modules, norms, embeddings) is read as stored.
 * `bnbSource` serves every int8 layer dequantized to f32 (W̃ = CB·SCB/127) for the f32
 * reference path; `readBnbInt8Linear` gives the codes themselves to the int8 kernels.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { TensorSource } from "../nn/weights.ts";
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

/** The checkpoint with int8 layers dequantized to f32 (HF names). */
export function bnbSource(ckpt: Checkpoint, origin: string): TensorSource {
  return {
    origin,
    has: (name) => ckpt.has(name),
    shape: (name) => ckpt.info(name).shape,
    readF32Sync: (name) => {
      const base = bnbLayerBase(ckpt, name);
      return base ? dequantizeInt8(readBnbInt8Linear(ckpt, origin, base)) : ckpt.readF32Sync(name);
    },
  };
}

/** Run-time settings of one int8 layer: the config's threshold, and its static columns if the folder has them. */
export interface BnbRunSettings {
  threshold: number;
  /** base name → fixed outlier columns (from int8-outliers.json), empty when the file is absent */
  staticCols: Map<string, Int32Array>;
}

export function bnbRunSettings(dir: string, ckpt: Checkpoint, c: BnbInt8Config): BnbRunSettings {
  const file = join(dir, INT8_OUTLIERS_FILE);
  const staticCols = existsSync(file)
    ? readInt8Outliers(file, (name) => (ckpt.has(`${name}.SCB`) ? ckpt.info(`${name}.weight`).shape[1] ?? null : null))
    : new Map<string, Int32Array>();
  return { threshold: c.threshold, staticCols };
}

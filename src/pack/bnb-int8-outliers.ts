/**
 * int8-outliers.json: our own file (FORMATS.md §5) beside a bitsandbytes folder written with
 * `--static-outliers`: the fixed outlier input columns of each int8 linear, found on the
 * calibration text. bitsandbytes and transformers ignore it (they always detect outliers per
 * batch); our loader then skips the per-batch scan for these layers.
 */
import { readFileSync, writeFileSync } from "node:fs";
import type { OutlierReport } from "../tensor/int8.ts";
import { FormatError } from "../util/errors.ts";

export const INT8_OUTLIERS_FILE = "int8-outliers.json";
export const INT8_OUTLIERS_MAGIC = "quantize-llm/int8-outliers";
export const INT8_OUTLIERS_VERSION = 1;

export interface Int8OutliersFile {
  magic: typeof INT8_OUTLIERS_MAGIC;
  version: number;
  threshold: number;
  /** HF module name (e.g. "model.layers.0.mlp.down_proj") → ascending input columns */
  columns: Record<string, number[]>;
}

/** Written inside the quantizer's <out>.partial folder, which is renamed as a whole. */
export function writeInt8Outliers(path: string, threshold: number, reports: readonly OutlierReport[]): void {
  const columns: Record<string, number[]> = {};
  for (const r of reports) for (const l of r.layers) columns[l] = r.columns;
  const f: Int8OutliersFile = { magic: INT8_OUTLIERS_MAGIC, version: INT8_OUTLIERS_VERSION, threshold, columns };
  writeFileSync(path, JSON.stringify(f) + "\n");
}

/** Reads and checks the file; `K(name)` gives each layer's in_features (null: not an int8 layer). */
export function readInt8Outliers(path: string, K: (name: string) => number | null): Map<string, Int32Array> {
  let raw: unknown;
  try { raw = JSON.parse(readFileSync(path, "utf8")); } catch (e) {
    throw new FormatError("int8-outliers.json is not valid JSON", { file: path, found: (e as Error).message, hint: "delete it to detect outliers per batch instead" });
  }
  const f = raw as Partial<Int8OutliersFile> | null;
  if (!f || f.magic !== INT8_OUTLIERS_MAGIC) {
    throw new FormatError("not an int8-outliers file", { file: path, field: "magic", expected: JSON.stringify(INT8_OUTLIERS_MAGIC), found: JSON.stringify(f?.magic) });
  }
  if (f.version !== INT8_OUTLIERS_VERSION) {
    throw new FormatError("unsupported int8-outliers version", { file: path, field: "version", expected: String(INT8_OUTLIERS_VERSION), found: JSON.stringify(f.version), hint: "re-quantize with this version of quantize-llm, or delete the file" });
  }
  const out = new Map<string, Int32Array>();
  for (const [name, cols] of Object.entries(f.columns ?? {})) {
    const k = K(name);
    if (k === null) throw new FormatError("int8-outliers.json names a layer that is not an int8 linear of this model", { file: path, field: `columns.${name}` });
    if (!Array.isArray(cols) || cols.some((c, i) => !Number.isInteger(c) || c < 0 || c >= k || (i > 0 && c <= cols[i - 1]!))) {
      throw new FormatError("int8-outliers.json has bad columns", { file: path, field: `columns.${name}`, expected: `ascending integers in [0, ${k})`, found: JSON.stringify(cols).slice(0, 80) });
    }
    out.set(name, Int32Array.from(cols));
  }
  return out;
}

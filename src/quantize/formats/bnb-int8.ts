/**
 * bitsandbytes 8-bit (LLM.int8()) folder (FORMATS.md §5, docs/format-bitsandbytes-int8.md):
 * per quantized linear `weight` (I8 [N, K], CB), `SCB` (F32 [N]) and `weight_format` (U8
 * scalar 0), packed by pack/bnb-int8.ts; modules in llm_int8_skip_modules, norms, embeddings,
 * lm_head and biases stay in the model's dtype, as transformers saves a `load_in_8bit` model.
 * config.json carries BitsAndBytesConfig's `quantization_config`; with --static-outliers our
 * own int8-outliers.json (pack/bnb-int8-outliers.ts) lies beside it.
 *
 * Fed by the int8 pipeline (int8-pipeline.ts) with Int8Inputs: per layer a BnbLinear, settings
 * Int8Settings, report rows OutlierReport, and with --quantize-lm-head lm_head's int8 rows (then
 * llm_int8_skip_modules is written as an explicit list, possibly empty: transformers' null means
 * its default list, which keeps lm_head; docs/quantize-lm-head.md).
 */
import { join } from "node:path";
import type { TensorSource as WriteSource } from "../../io/safetensors.ts";
import { linearShapes } from "../../arch/shapes.ts";
import { writeInt8Outliers, INT8_OUTLIERS_FILE } from "../../pack/bnb-int8-outliers.ts";
import { bnbQuantizationConfig, packBnbInt8, unpackBnbInt8, type RawTensor } from "../../pack/bnb-int8.ts";
import { fromF32 } from "../../tensor/dtype.ts";
import type { Int8Linear, OutlierReport } from "../../tensor/int8.ts";
import { UsageError } from "../../util/errors.ts";
import type { Int8Settings } from "../settings.ts";
import type { BlockTensorReader, FinishInput, Format, FormatInputs } from "./format.ts";
import { bytesOf, hfBlockTensors, writeHfFolder } from "./hf-folder.ts";

/**
 * One linear as the folder stores it: LLM.int8() rows, or (a module of llm_int8_skip_modules)
 * its f32 weight [N, K], written back in the model's dtype.
 */
export type BnbLinear =
  | ({ kind: "int8" } & Int8Linear)
  | { kind: "kept"; N: number; K: number; weight: Float32Array; bias?: Float32Array };

/** What the int8 pipeline hands this entry. */
export interface Int8Inputs extends FormatInputs {
  linear: BnbLinear;
  settings: Int8Settings;
  report: OutlierReport;
  /** lm_head [V, H] as int8 rows; `untied`: read from a tied model's embedding (tie_word_embeddings becomes false). */
  lmHead: { q: Int8Linear; untied: boolean };
}

/** transformers' rule (integrations/bitsandbytes.py `_replace_with_bnb_linear`): exact name, `key.` inside the name, or the leaf name. */
export function isSkipped(name: string, skip: readonly string[] | null): boolean {
  if (!skip) return false;
  const leaf = name.slice(name.lastIndexOf(".") + 1);
  return skip.some((k) => k === name || k === leaf || name.includes(`${k}.`));
}

/** quant-report.json of an int8 run: the settings and the per-layer-input outlier report. */
function int8ReportJson(o: FinishInput<Int8Inputs>): string {
  return JSON.stringify({ method: "int8", settings: o.s, model: o.modelDir, seconds: o.seconds, outliers: o.layers }, null, 1) + "\n";
}

/** `<base>.weight` (CB, I8 [N, K]), `<base>.SCB` (F32 [N]), `<base>.weight_format` (U8 scalar). */
function int8Tensors(base: string, q: Int8Linear): WriteSource[] {
  const t = packBnbInt8(q);
  return [
    { name: `${base}.weight`, dtype: "I8", shape: [q.N, q.K], data: bytesOf(t.weight) },
    { name: `${base}.SCB`, dtype: "F32", shape: [q.N], data: bytesOf(t.SCB) },
    { name: `${base}.weight_format`, dtype: "U8", shape: [], data: t.weightFormat },
  ];
}

function raw(f: BlockTensorReader, name: string): RawTensor | undefined {
  const info = f.tensors.get(name);
  return info ? { dtype: info.dtype, shape: info.shape, data: f.readRawSync(name) } : undefined;
}

export const bnbInt8Format: Format<Int8Inputs, "bnb-int8"> = {
  id: "bnb-int8",
  title: "bitsandbytes int8 folder",
  kind: "folder",
  check(s) {
    // llm_int8_threshold: transformers and bitsandbytes read any float ≥ 0 (0 = no outlier columns).
    if (!(Number.isFinite(s.threshold) && s.threshold >= 0)) {
      throw new UsageError("invalid outlier threshold", { field: "--threshold", expected: "a number ≥ 0 (6.0 as in the paper; 0 = plain dynamic int8)", found: String(s.threshold) });
    }
    // int8-outliers.json lists columns that crossed the threshold: with 0 there are none to list.
    if (s.staticOutliers && s.threshold === 0) {
      throw new UsageError("--static-outliers needs a threshold", { field: "--static-outliers", expected: "--threshold > 0", found: "--threshold 0", hint: "with threshold 0 there are no outlier columns to fix" });
    }
    // a quantized lm_head must not be named by llm_int8_skip_modules (transformers would keep it in 16 bits)
    if (s.quantizeLmHead === true && isSkipped("lm_head", s.skipModules)) {
      throw new UsageError("--quantize-lm-head conflicts with --skip-modules", {
        field: "--skip-modules", expected: "a list that does not name lm_head", found: JSON.stringify(s.skipModules), hint: "drop lm_head from --skip-modules, or drop --quantize-lm-head",
      });
    }
  },
  blockTensors(cfg, _s, b, w, q) {
    const dtype = cfg.torchDtype;
    return hfBlockTensors(cfg, b, w, q, (base, ql): WriteSource[] =>
      ql.kind === "kept" ? [{ name: `${base}.weight`, dtype, shape: [ql.N, ql.K], data: fromF32(dtype, ql.weight) }] : int8Tensors(base, ql), dtype);
  },
  readLinear(f, cfg, _s, b, spec, file) {
    const base = `${cfg.arch.blockPrefix(b)}.${spec.hf}`;
    if (!f.tensors.has(`${base}.SCB`)) {
      const [N, K] = linearShapes(cfg)[spec.name];
      return { kind: "kept", N, K, weight: f.readF32Sync(`${base}.weight`) };
    }
    const q = unpackBnbInt8({ weight: raw(f, `${base}.weight`), SCB: raw(f, `${base}.SCB`), weightFormat: raw(f, `${base}.weight_format`) }, { base, file });
    return { kind: "int8", ...q };
  },
  async finish(o) {
    // An explicit list (possibly empty) is what makes transformers convert lm_head: null means its
    // default not-converted list, which holds lm_head (quantizers/base.py get_modules_to_not_convert).
    const head = o.lmHead;
    const qc = bnbQuantizationConfig({ threshold: o.s.threshold, skipModules: head ? o.s.skipModules ?? [] : o.s.skipModules });
    // a tied model's quantized head is its own tensor now: the embedding stays as stored, for lookup
    const untie = head?.untied === true ? { tie_word_embeddings: false } : {};
    const headTensors = head ? int8Tensors(o.cfg.arch.lmHead.hf.replace(/\.weight$/, ""), head.q) : undefined;
    // torch_dtype stays the stored dtype of the unquantized tensors (embeddings, norms, lm_head).
    const { files, tensorBytes } = await writeHfFolder(o, { "config.json": { ...o.cfg.raw, ...untie, quantization_config: qc } }, int8ReportJson(o), headTensors);
    if (o.s.staticOutliers) writeInt8Outliers(join(o.path, INT8_OUTLIERS_FILE), o.s.threshold, o.layers);
    return { files, report: "quant-report.json", summary: "", tensorBytes };
  },
};

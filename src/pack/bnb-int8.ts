/**
 * bitsandbytes 8-bit (LLM.int8()) HF serialization (docs/format-bitsandbytes-int8.md),
 * as `save_pretrained` of a `load_in_8bit` model writes it, per quantized Linear `<m>`:
 *   <m>.weight         I8  [out, in]  row-major CB            (Int8Params.data after _quantize)
 *   <m>.SCB            F32 [out]      row absmax              (Linear8bitLt._save_to_state_dict)
 *   <m>.weight_format  U8  []         0 = "row", the only one (Linear8bitLt._save_to_state_dict;
 *                                     maybe_rearrange_weight refuses any other)
 * and config.json `quantization_config` = BitsAndBytesConfig.to_dict()
 * (transformers/utils/quantization_config.py). Pure pack/unpack pairs: no I/O here.
 */
import type { Int8Linear } from "../tensor/int8.ts";
import { ConfigError, FormatError } from "../util/errors.ts";

/** The three tensors of one layer, as raw little-endian bytes with their dtype/shape. */
export interface BnbInt8Tensors {
  /** I8 [N, K] */
  weight: Int8Array;
  /** F32 [N] */
  SCB: Float32Array;
  /** U8 [] (scalar): 0 */
  weightFormat: Uint8Array;
}

/** weight_format 0 = "row" (bitsandbytes/utils.py LINEAR_8BIT_WEIGHTS_FORMAT_MAPPING). */
export const BNB_WEIGHT_FORMAT_ROW = 0;
/** bitsandbytes' and transformers' default outlier threshold (BitsAndBytesConfig.llm_int8_threshold). */
export const BNB_DEFAULT_THRESHOLD = 6.0;

export function packBnbInt8(q: Int8Linear): BnbInt8Tensors {
  return { weight: q.CB, SCB: q.SCB, weightFormat: Uint8Array.of(BNB_WEIGHT_FORMAT_ROW) };
}

/** Raw tensor bytes as read from a file, with the dtype/shape the file declares. */
export interface RawTensor {
  dtype: string;
  shape: readonly number[];
  data: Uint8Array;
}

function expectTensor(t: RawTensor | undefined, name: string, file: string, dtype: string, shape: readonly number[], why: string): Uint8Array {
  if (!t) {
    throw new FormatError(`bitsandbytes int8 layer is missing ${name}`, {
      file, field: name, expected: `${dtype} [${shape.join(", ")}]`, found: "no such tensor", hint: why,
    });
  }
  if (t.dtype !== dtype || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new FormatError(`bitsandbytes int8 tensor ${name} has the wrong dtype or shape`, {
      file, field: name, expected: `${dtype} [${shape.join(", ")}]`, found: `${t.dtype} [${t.shape.join(", ")}]`, hint: why,
    });
  }
  return t.data;
}

/**
 * Inverse of packBnbInt8. `weightFormat` may be absent (files written before bitsandbytes
 * 0.43 have none; maybe_rearrange_weight then assumes "row").
 */
export function unpackBnbInt8(
  t: { weight: RawTensor | undefined; SCB: RawTensor | undefined; weightFormat: RawTensor | undefined },
  o: { base: string; file: string },
): Int8Linear {
  const w = t.weight;
  if (!w || w.shape.length !== 2) {
    throw new FormatError("bitsandbytes int8 weight is not a matrix", {
      file: o.file, field: `${o.base}.weight`, expected: "I8 [out_features, in_features]", found: w ? `${w.dtype} [${w.shape.join(", ")}]` : "no such tensor",
    });
  }
  const [N, K] = w.shape as [number, number];
  const wb = expectTensor(w, `${o.base}.weight`, o.file, "I8", [N, K], "bitsandbytes stores CB as torch.int8 (quantizer_bnb_8bit.check_quantized_param refuses other dtypes)");
  const sb = expectTensor(t.SCB, `${o.base}.SCB`, o.file, "F32", [N], "SCB holds one f32 absmax per output row");
  if (t.weightFormat) {
    const fb = expectTensor(t.weightFormat, `${o.base}.weight_format`, o.file, "U8", [], "weight_format is a uint8 scalar");
    if (fb[0] !== BNB_WEIGHT_FORMAT_ROW) {
      throw new FormatError("unsupported bitsandbytes weight_format", {
        file: o.file, field: `${o.base}.weight_format`, expected: `${BNB_WEIGHT_FORMAT_ROW} ("row")`, found: String(fb[0]),
        hint: "col32/col_turing/col_ampere layouts were removed in bitsandbytes 0.45; re-save the model with a current bitsandbytes",
      });
    }
  }
  const CB = new Int8Array(wb.slice().buffer); // copy: aligned and independent of the file buffer
  const SCB = new Float32Array(sb.slice().buffer);
  for (let n = 0; n < N; n++) {
    if (!(Number.isFinite(SCB[n]!) && SCB[n]! >= 0)) {
      throw new FormatError("bitsandbytes SCB holds a negative or non-finite row absmax", {
        file: o.file, field: `${o.base}.SCB[${n}]`, expected: "a finite value ≥ 0", found: String(SCB[n]),
      });
    }
  }
  for (let i = 0; i < CB.length; i++) {
    if (CB[i] === -128) {
      throw new FormatError("bitsandbytes int8 weight holds −128", {
        file: o.file, field: `${o.base}.weight[${Math.floor(i / K)}, ${i % K}]`, expected: "codes in [−127, 127] (round(127·W/absmax))", found: "-128",
        hint: "the tensor is not an LLM.int8() CB matrix (a plain int8 tensor?)",
      });
    }
  }
  return { N, K, CB, SCB };
}

/** Run-time settings a bitsandbytes config carries. */
export interface BnbInt8Config {
  threshold: number;
  /** Module names kept in 16/32-bit (null = transformers' default: lm_head). */
  skipModules: string[] | null;
}

/** BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=t).to_dict(), field for field. */
export function bnbQuantizationConfig(c: BnbInt8Config): Record<string, unknown> {
  return {
    quant_method: "bitsandbytes",
    _load_in_8bit: true,
    _load_in_4bit: false,
    llm_int8_threshold: c.threshold,
    llm_int8_skip_modules: c.skipModules,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    bnb_4bit_quant_type: "fp4",
    bnb_4bit_use_double_quant: false,
    bnb_4bit_compute_dtype: "float32",
    bnb_4bit_quant_storage: "uint8",
    load_in_4bit: false,
    load_in_8bit: true,
  };
}

/** Reads a bitsandbytes quantization_config; refuses 4-bit and fp16-weight (training) files. */
export function parseBnbConfig(c: Record<string, unknown>, file: string): BnbInt8Config {
  const in8 = c["load_in_8bit"] ?? c["_load_in_8bit"];
  const in4 = c["load_in_4bit"] ?? c["_load_in_4bit"];
  if (in4 === true || in8 !== true) {
    throw new ConfigError("unsupported bitsandbytes mode", {
      file, field: "quantization_config.load_in_8bit", expected: "load_in_8bit: true (LLM.int8())", found: `load_in_8bit: ${JSON.stringify(in8)}, load_in_4bit: ${JSON.stringify(in4)}`,
      hint: "4-bit (NF4/FP4) bitsandbytes checkpoints are not supported; quantize the original model with `quantize-llm int8` or `gptq`",
    });
  }
  if (c["llm_int8_has_fp16_weight"] === true) {
    throw new ConfigError("bitsandbytes checkpoint keeps fp16 weights", {
      file, field: "quantization_config.llm_int8_has_fp16_weight", expected: "false (int8 weights in the file)", found: "true",
      hint: "such files hold the original 16-bit weights: load them as a plain model, or quantize them with `quantize-llm int8`",
    });
  }
  const t = c["llm_int8_threshold"] ?? BNB_DEFAULT_THRESHOLD;
  if (typeof t !== "number" || !Number.isFinite(t) || t < 0) {
    throw new ConfigError("invalid llm_int8_threshold", { file, field: "quantization_config.llm_int8_threshold", expected: "a number ≥ 0 (6.0 by default)", found: JSON.stringify(t) });
  }
  const skip = c["llm_int8_skip_modules"] ?? null;
  if (skip !== null && !(Array.isArray(skip) && skip.every((s) => typeof s === "string"))) {
    throw new ConfigError("invalid llm_int8_skip_modules", { file, field: "quantization_config.llm_int8_skip_modules", expected: "null or a list of module names", found: JSON.stringify(skip) });
  }
  return { threshold: t, skipModules: skip as string[] | null };
}

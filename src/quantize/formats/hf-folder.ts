/**
 * What the HF folder formats (HF-GPTQ, AutoAWQ GEMM, bitsandbytes int8) share: block files
 * holding the block's norms and each linear's packed tensors under their HF names, and the
 * final folder (shards copied tensor by tensor from the block files, configs, tokenizer
 * files, report).
 */
import { copyFileSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ModelConfig } from "../../arch/config.ts";
import type { LinearName } from "../../arch/registry.ts";
import { writeShardedSafetensors, type Checkpoint } from "../../io/checkpoint.ts";
import type { TensorSource as WriteSource } from "../../io/safetensors.ts";
import type { BlockWeights } from "../../nn/weights.ts";
import { fromF32 } from "../../tensor/dtype.ts";
import type { FinishInput, FormatInputs } from "./format.ts";

export const VERSION = "0.1.0";
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja", "tokenizer.model"];

export function bytesOf(a: Int32Array | Uint16Array | Float32Array | Int8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Raw little-endian I32 bytes as an Int32Array (copied: the source may be unaligned). */
export function int32Of(b: Uint8Array): Int32Array { return new Int32Array(b.slice().buffer); }

/** A tensor of the original checkpoint in `dtype` (raw bytes when it already is). */
export function rawAs(ckpt: Checkpoint, name: string, dtype: "F32" | "F16" | "BF16"): Uint8Array {
  return ckpt.info(name).dtype === dtype ? ckpt.readRawSync(name) : fromF32(dtype, ckpt.readF32Sync(name));
}

/**
 * Block file tensors in file order: the two norms (in the model's dtype), then per linear
 * `pack(base, q)` and its bias, in `biasDtype` (F16, as GPTQ/AWQ loaders expect; bitsandbytes
 * keeps the model's dtype).
 */
export function hfBlockTensors<L extends { N: number; bias?: Float32Array }>(
  cfg: ModelConfig, b: number, w: BlockWeights, q: ReadonlyMap<LinearName, L>,
  pack: (base: string, q: L) => WriteSource[], biasDtype: "F32" | "F16" | "BF16" = "F16",
): WriteSource[] {
  const a = cfg.arch;
  const p = a.blockPrefix(b);
  const dtype = cfg.torchDtype;
  const H = cfg.hiddenSize;
  const out: WriteSource[] = [
    { name: `${p}.${a.attnNorm.hf}.weight`, dtype, shape: [H], data: fromF32(dtype, w.attnNorm) },
    { name: `${p}.${a.mlpNorm.hf}.weight`, dtype, shape: [H], data: fromF32(dtype, w.mlpNorm) },
  ];
  for (const spec of a.linears) {
    const ql = q.get(spec.name)!;
    const base = `${p}.${spec.hf}`;
    out.push(...pack(base, ql));
    if (ql.bias) out.push({ name: `${base}.bias`, dtype: biasDtype, shape: [ql.N], data: fromF32(biasDtype, ql.bias) });
  }
  return out;
}

/** The per-layer report (quant-report.json); with a quantized lm_head, its line as `lm_head`. */
export function reportJson(o: Pick<FinishInput, "s" | "modelDir" | "seconds" | "layers" | "lmHead">): string {
  return JSON.stringify({ settings: o.s, model: o.modelDir, seconds: o.seconds, layers: o.layers, ...(o.lmHead ? { lm_head: o.lmHead.report } : {}) }, null, 1) + "\n";
}

/**
 * Assemble the final folder `o.path`: shards, the format's config files (name → JSON),
 * tokenizer files, and `report` as quant-report.json. `lmHead`: the packed tensors of a
 * quantized lm_head, written instead of lm_head.weight. Returns the shard names and their
 * bytes of tensor data.
 */
export async function writeHfFolder(
  o: FinishInput<FormatInputs>, configs: Record<string, unknown>, report: string, lmHead?: WriteSource[],
): Promise<{ files: string[]; tensorBytes: number }> {
  const { cfg, ckpt, path: dir } = o;
  const dtype = cfg.torchDtype;
  const H = cfg.hiddenSize;
  const a = cfg.arch;
  const tensors: WriteSource[] = [{ name: a.embed.hf, dtype, shape: [cfg.vocabSize, H], data: () => rawAs(ckpt, a.embed.hf, dtype) }];
  for (const f of o.blockFiles) {
    for (const [name, info] of f.tensors) tensors.push({ name, dtype: info.dtype, shape: info.shape, data: () => f.readRawSync(name) });
  }
  tensors.push({ name: a.finalNorm.hf, dtype, shape: [H], data: () => rawAs(ckpt, a.finalNorm.hf, dtype) });
  if (lmHead !== undefined) {
    tensors.push(...lmHead);
  } else if (!cfg.tieWordEmbeddings || ckpt.has(a.lmHead.hf)) {
    tensors.push({ name: a.lmHead.hf, dtype, shape: [cfg.vocabSize, H], data: () => rawAs(ckpt, a.lmHead.hf, dtype) });
  }
  const { files, totalSize } = await writeShardedSafetensors(dir, tensors, { maxShardBytes: o.maxShardBytes, metadata: { format: "pt", quantizer: `quantize-llm ${VERSION}` } });
  for (const [name, value] of Object.entries(configs)) writeFileSync(join(dir, name), JSON.stringify(value, null, 2) + "\n");
  for (const f of TOKENIZER_FILES) if (existsSync(join(o.modelDir, f))) copyFileSync(join(o.modelDir, f), join(dir, f));
  writeFileSync(join(dir, "quant-report.json"), report);
  return { files, tensorBytes: totalSize };
}

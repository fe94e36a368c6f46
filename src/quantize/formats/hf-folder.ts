/**
 * What the HF folder formats (HF-GPTQ, AutoAWQ GEMM, bitsandbytes int8) share: each block's
 * norms and linears' packed tensors under their HF names, and the rest of the final folder
 * (configs, tokenizer files, report). Two ways to the shards:
 *
 *   streamed     (HF-GPTQ, AutoAWQ: the rtn/gptq/awq pipeline) the whole checkpoint declared
 *                from the settings alone (hfStreamLayout), so the pipeline writes each block
 *                straight into the final shards in one pass; finish adds writeHfConfigs
 *   block files  (bitsandbytes int8: the int8 pipeline) hfBlockTensors per block file, and
 *                writeHfFolder copies them tensor by tensor into the shards at the end
 */
import { copyFileSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ModelConfig } from "../../arch/config.ts";
import type { LinearName } from "../../arch/registry.ts";
import { hasBias, linearShapes } from "../../arch/shapes.ts";
import { writeShardedSafetensors, type Checkpoint } from "../../io/checkpoint.ts";
import type { TensorDecl, TensorSource as WriteSource } from "../../io/safetensors.ts";
import type { BlockWeights } from "../../nn/weights.ts";
import { fromF32 } from "../../tensor/dtype.ts";
import type { QuantizedLinear } from "../../tensor/quantized.ts";
import type { PackAlloc } from "../../pack/bits.ts";
import { invariant } from "../../util/errors.ts";
import { checkpointBytesInto } from "../../load/raw-read.ts";
import type { FinishInput, FormatInputs, StreamLayout, StreamSource } from "./format.ts";

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
 * Block file tensors in file order (block-file formats): the two norms (in the model's dtype),
 * then per linear `pack(base, q)` and its bias, in `biasDtype` (F16, as GPTQ/AWQ loaders
 * expect; bitsandbytes keeps the model's dtype).
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

/** One linear's HF tensors (streamed formats): their declarations from the shape alone, and their bytes from the quantized layer (same order). */
export interface HfLinearPacker {
  decls(base: string, N: number, K: number): TensorDecl[];
  /** `alloc`: reused memory for the packed arrays (pack/bits.ts PackAlloc), else fresh arrays. */
  pack(q: QuantizedLinear, alloc?: PackAlloc): Uint8Array[];
}

/** Block b's tensors in file order, declared from the config and settings alone: the two norms, then per linear its packed tensors and its bias (F16). */
export function hfBlockDecls(cfg: ModelConfig, b: number, linear: HfLinearPacker): TensorDecl[] {
  const a = cfg.arch;
  const p = a.blockPrefix(b);
  const H = cfg.hiddenSize;
  const shapes = linearShapes(cfg);
  const out: TensorDecl[] = [{ name: `${p}.${a.attnNorm.hf}.weight`, dtype: cfg.torchDtype, shape: [H] }, { name: `${p}.${a.mlpNorm.hf}.weight`, dtype: cfg.torchDtype, shape: [H] }];
  for (const spec of a.linears) {
    const base = `${p}.${spec.hf}`;
    const [N, K] = shapes[spec.name];
    out.push(...linear.decls(base, N, K));
    if (hasBias(cfg, spec.name)) out.push({ name: `${base}.bias`, dtype: "F16", shape: [N] });
  }
  return out;
}

/**
 * Block b's tensors with their bytes (streamed formats): hfBlockDecls' declarations, norms from
 * `w` (AWQ scales them) and every linear of `q` packed (into `alloc`'s slots `<linear>:<array>`
 * when given).
 */
export function hfStreamBlockTensors(
  cfg: ModelConfig, b: number, w: BlockWeights, q: ReadonlyMap<LinearName, QuantizedLinear>, linear: HfLinearPacker, alloc?: PackAlloc,
): WriteSource[] {
  const dtype = cfg.torchDtype;
  const data: Uint8Array[] = [fromF32(dtype, w.attnNorm), fromF32(dtype, w.mlpNorm)];
  for (const spec of cfg.arch.linears) {
    const ql = q.get(spec.name)!;
    data.push(...linear.pack(ql, alloc && ((slot, n) => alloc(`${spec.name}:${slot}`, n))));
    if (ql.bias) data.push(fromF32("F16", ql.bias));
  }
  const decls = hfBlockDecls(cfg, b, linear);
  invariant(decls.length === data.length, `block ${b}: ${data.length} tensors packed, ${decls.length} declared (a bias the config does not declare?)`);
  return decls.map((d, i) => ({ ...d, data: data[i]! }));
}

/**
 * The whole output of a streamed HF folder format in file order (written by the pipeline in
 * one pass): the embedding, every block's tensors, the final norm and lm_head, as
 * writeShardedSafetensors would write them. `lmHead`: the packer of a quantized lm_head
 * (QuantSettings.lmHead), whose packed tensors replace lm_head.weight.
 */
export function hfStreamLayout(cfg: ModelConfig, ckpt: Checkpoint, linear: HfLinearPacker, lmHead?: HfLinearPacker): StreamLayout {
  const dtype = cfg.torchDtype;
  const H = cfg.hiddenSize;
  const a = cfg.arch;
  const norm: WriteSource = { name: a.finalNorm.hf, dtype, shape: [H], data: () => rawAs(ckpt, a.finalNorm.hf, dtype) };
  const headBase = a.lmHead.hf.replace(/\.weight$/, "");
  const raw: StreamSource[] = !cfg.tieWordEmbeddings || ckpt.has(a.lmHead.hf) ? [copyOf(ckpt, a.lmHead.hf, dtype, [cfg.vocabSize, H])] : [];
  return {
    head: [copyOf(ckpt, a.embed.hf, dtype, [cfg.vocabSize, H])],
    block: (b) => hfBlockDecls(cfg, b, linear),
    tail: [norm, ...(lmHead !== undefined ? lmHead.decls(headBase, cfg.vocabSize, H) : raw)],
    tailTensors: (o) => {
      if (lmHead === undefined) return [norm, ...raw];
      invariant(o.lmHead !== undefined, "the layout declared a quantized lm_head but none was made");
      const decls = lmHead.decls(headBase, cfg.vocabSize, H), data = lmHead.pack(o.lmHead.q);
      return [norm, ...decls.map((d, i) => ({ ...d, data: data[i]! }))];
    },
    metadata: { format: "pt", quantizer: `quantize-llm ${VERSION}` },
  };
}

/** A checkpoint tensor in `dtype` as a stream source: copied in pieces (`readAt`) when stored in that dtype, else converted whole. */
function copyOf(ckpt: Checkpoint, name: string, dtype: "F32" | "F16" | "BF16", shape: number[]): StreamSource {
  const t: StreamSource = { name, dtype, shape, data: () => rawAs(ckpt, name, dtype) };
  if (ckpt.info(name).dtype === dtype) t.readAt = (dst, offset) => { checkpointBytesInto(ckpt, name, offset, dst); };
  return t;
}

/** The per-layer report (quant-report.json); with a quantized lm_head, its line as `lm_head`. */
export function reportJson(o: Pick<FinishInput, "s" | "modelDir" | "seconds" | "layers" | "lmHead">): string {
  return JSON.stringify({ settings: o.s, model: o.modelDir, seconds: o.seconds, layers: o.layers, ...(o.lmHead ? { lm_head: o.lmHead.report } : {}) }, null, 1) + "\n";
}

/** Everything of the folder `o.path` but its shards: the format's config files (name → JSON), tokenizer files, and `report` as quant-report.json. */
export function writeHfConfigs(o: Pick<FinishInput<FormatInputs>, "path" | "modelDir">, configs: Record<string, unknown>, report: string): void {
  const dir = o.path;
  for (const [name, value] of Object.entries(configs)) writeFileSync(join(dir, name), JSON.stringify(value, null, 2) + "\n");
  for (const f of TOKENIZER_FILES) if (existsSync(join(o.modelDir, f))) copyFileSync(join(o.modelDir, f), join(dir, f));
  writeFileSync(join(dir, "quant-report.json"), report);
}

/**
 * Assemble the final folder `o.path` from block files (block-file formats): shards, then
 * writeHfConfigs. `lmHead`: the packed tensors of a quantized lm_head, written instead of
 * lm_head.weight. Returns the shard names and their bytes of tensor data.
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
  writeHfConfigs(o, configs, report);
  return { files, tensorBytes: totalSize };
}

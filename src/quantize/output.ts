/**
 * What the pipeline writes: each block's tensors (packed per output format) and
 * the final folder (shards, configs, tokenizer files, report).
 */
import { copyFileSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ModelConfig } from "../arch/config.ts";
import type { LinearName } from "../arch/registry.ts";
import { writeShardedSafetensors, type Checkpoint } from "../io/checkpoint.ts";
import type { SafetensorsFile, TensorSource as WriteSource } from "../io/safetensors.ts";
import type { BlockWeights } from "../nn/weights.ts";
import { packAwqGemm } from "../pack/awq-gemm.ts";
import { packGptq } from "../pack/hf-gptq.ts";
import { fromF32 } from "../tensor/dtype.ts";
import type { LayerReport } from "./report.ts";
import { awqQuantizationConfig, gptqQuantizationConfig, outputFormat, type QuantSettings } from "./settings.ts";
import type { QuantizedLinear } from "../tensor/quantized.ts";

export const VERSION = "0.1.0";
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja", "tokenizer.model"];

function bytes(a: Int32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function rawAs(ckpt: Checkpoint, name: string, dtype: "F32" | "F16" | "BF16"): Uint8Array {
  return ckpt.info(name).dtype === dtype ? ckpt.readRawSync(name) : fromF32(dtype, ckpt.readF32Sync(name));
}

/** The tensors a block contributes, in file order. Norms come from `w` (AWQ scales them). */
export function blockTensors(cfg: ModelConfig, s: QuantSettings, b: number, w: BlockWeights, q: Map<LinearName, QuantizedLinear>): WriteSource[] {
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
    if (outputFormat(s.method, s.bits) === "awq-gemm") {
      const t = packAwqGemm(ql); // qweight [K, N/8], qzeros [K/g, N/8], scales [K/g, N]
      const G = t.scales.length / ql.N;
      out.push(
        { name: `${base}.qweight`, dtype: "I32", shape: [ql.K, ql.N / 8], data: bytes(t.qweight) },
        { name: `${base}.qzeros`, dtype: "I32", shape: [G, ql.N / 8], data: bytes(t.qzeros) },
        { name: `${base}.scales`, dtype: "F16", shape: [G, ql.N], data: bytes(t.scales) },
      );
    } else {
      const t = packGptq(ql, s.format); // qweight [K·b/32, N], qzeros [G, N·b/32], scales [G, N], g_idx [K]
      const G = t.scales.length / ql.N;
      out.push(
        { name: `${base}.qweight`, dtype: "I32", shape: [(ql.K * s.bits) / 32, ql.N], data: bytes(t.qweight) },
        { name: `${base}.qzeros`, dtype: "I32", shape: [G, (ql.N * s.bits) / 32], data: bytes(t.qzeros) },
        { name: `${base}.scales`, dtype: "F16", shape: [G, ql.N], data: bytes(t.scales) },
        { name: `${base}.g_idx`, dtype: "I32", shape: [ql.K], data: bytes(t.gIdx) },
      );
    }
    if (ql.bias) out.push({ name: `${base}.bias`, dtype: "F16", shape: [ql.N], data: fromF32("F16", ql.bias) });
  }
  return out;
}

/** Assemble the final folder `dir` from the original checkpoint and the finished block files. */
export async function writeFinalFolder(o: {
  dir: string; cfg: ModelConfig; s: QuantSettings; modelDir: string; ckpt: Checkpoint; blockFiles: SafetensorsFile[];
  maxShardBytes: number; layers: LayerReport[]; seconds: number;
}): Promise<string[]> {
  const { cfg, ckpt, dir } = o;
  const dtype = cfg.torchDtype;
  const H = cfg.hiddenSize;
  const a = cfg.arch;
  const tensors: WriteSource[] = [{ name: a.embed.hf, dtype, shape: [cfg.vocabSize, H], data: () => rawAs(ckpt, a.embed.hf, dtype) }];
  for (const f of o.blockFiles) {
    for (const [name, info] of f.tensors) tensors.push({ name, dtype: info.dtype, shape: info.shape, data: () => f.readRawSync(name) });
  }
  tensors.push({ name: a.finalNorm.hf, dtype, shape: [H], data: () => rawAs(ckpt, a.finalNorm.hf, dtype) });
  if (!cfg.tieWordEmbeddings || ckpt.has(a.lmHead.hf)) {
    tensors.push({ name: a.lmHead.hf, dtype, shape: [cfg.vocabSize, H], data: () => rawAs(ckpt, a.lmHead.hf, dtype) });
  }
  const { files } = await writeShardedSafetensors(dir, tensors, { maxShardBytes: o.maxShardBytes, metadata: { format: "pt", quantizer: `quantize-llm ${VERSION}` } });
  const json = (v: unknown): string => JSON.stringify(v, null, 2) + "\n";
  if (outputFormat(o.s.method, o.s.bits) === "awq-gemm") {
    const qc = awqQuantizationConfig(o.s);
    writeFileSync(join(dir, "config.json"), json({ ...cfg.raw, quantization_config: qc }));
    // AutoAWQ's legacy spelling, read by older loaders.
    writeFileSync(join(dir, "quant_config.json"), json({ zero_point: true, q_group_size: o.s.groupSize, w_bit: o.s.bits, version: "GEMM" }));
  } else {
    const qc = gptqQuantizationConfig(o.s, VERSION);
    writeFileSync(join(dir, "config.json"), json({ ...cfg.raw, quantization_config: qc }));
    writeFileSync(join(dir, "quantize_config.json"), json(qc));
  }
  for (const f of TOKENIZER_FILES) if (existsSync(join(o.modelDir, f))) copyFileSync(join(o.modelDir, f), join(dir, f));
  writeFileSync(join(dir, "quant-report.json"), JSON.stringify({ settings: o.s, model: o.modelDir, seconds: o.seconds, layers: o.layers }, null, 1) + "\n");
  return files;
}

/**
 * A model with emergent-outlier-like features, made from a real one by an exact
 * reparametrisation: in every block, a few hidden channels c of the attention and MLP
 * RMSNorm weights are multiplied by `factor`, and the matching input columns of the
 * linears reading those norms (q/k/v, gate/up) are divided by it. In exact arithmetic the
 * function is unchanged (f32: ~1e-7 relative), but those channels now carry |x| in the
 * tens on most tokens, as in Dettmers et al. 2022 (Fig. 3), so a per-token absmax int8
 * scale is dominated by them. Written as F32 so every quantizer sees the same values.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { linearTensorName } from "../src/arch/registry.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { writeSafetensors, type TensorSource } from "../src/io/safetensors.ts";
import { readModelConfig } from "../src/load/hf-folder.ts";

export interface OutlierInjection {
  /** hidden channels that become outlier features */
  channels: number[];
  /** multiplier of those norm-weight channels */
  factor: number;
}

export async function writeOutlierModel(srcDir: string, outDir: string, inj: OutlierInjection): Promise<void> {
  const cfg = readModelConfig(srcDir);
  const a = cfg.arch;
  const H = cfg.hiddenSize;
  const ck = await openCheckpoint(srcDir);
  const tensors: TensorSource[] = [];
  try {
    const scaled = new Map<string, Float32Array>();
    for (let b = 0; b < cfg.numLayers; b++) {
      const p = a.blockPrefix(b);
      for (const norm of [a.attnNorm.hf, a.mlpNorm.hf]) {
        const w = ck.readF32Sync(`${p}.${norm}.weight`); // [H]
        for (const c of inj.channels) w[c] = w[c]! * inj.factor;
        scaled.set(`${p}.${norm}.weight`, w);
      }
      for (const spec of a.linears) {
        if (spec.input !== "attn_norm" && spec.input !== "mlp_norm") continue;
        const name = linearTensorName(a, b, spec);
        const W = ck.readF32Sync(name); // [N, H]
        const N = W.length / H;
        for (let n = 0; n < N; n++) for (const c of inj.channels) W[n * H + c] = W[n * H + c]! / inj.factor;
        scaled.set(name, W);
      }
    }
    for (const name of ck.names()) {
      const w = scaled.get(name) ?? ck.readF32Sync(name);
      tensors.push({ name, dtype: "F32", shape: ck.info(name).shape, data: new Uint8Array(w.buffer, w.byteOffset, w.byteLength) });
    }
    mkdirSync(outDir, { recursive: true });
    await writeSafetensors(join(outDir, "model.safetensors"), tensors, { format: "pt" });
  } finally {
    await ck.close();
  }
  const config = JSON.parse(readFileSync(join(srcDir, "config.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(join(outDir, "config.json"), JSON.stringify({ ...config, torch_dtype: "float32" }, null, 2) + "\n");
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]) {
    if (existsSync(join(srcDir, f))) copyFileSync(join(srcDir, f), join(outDir, f));
  }
}

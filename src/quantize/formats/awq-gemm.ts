/**
 * AutoAWQ GEMM folder (FORMATS.md §3): qweight/qzeros/scales per linear, 4-bit, contiguous
 * groups, zero points always stored (asymmetric).
 */
import { groupLength, numGroups } from "../../tensor/quantized.ts";
import { linearShapes } from "../../arch/shapes.ts";
import { awqGemmShapeProblem, packAwqGemm, unpackAwqGemm } from "../../pack/awq-gemm.ts";
import { UsageError } from "../../util/errors.ts";
import type { QuantSettings } from "../settings.ts";
import type { Format } from "./format.ts";
import { bytesOf, hfStreamBlockTensors, hfStreamLayout, int32Of, reportJson, writeHfConfigs, type HfLinearPacker } from "./hf-folder.ts";

/** AutoAWQ's `quantization_config` (FORMATS.md §3). */
export function awqQuantizationConfig(s: QuantSettings): Record<string, unknown> {
  return { quant_method: "awq", bits: s.bits, group_size: s.groupSize, zero_point: true, version: "gemm", modules_to_not_convert: null };
}

/** qweight [K, N/8], qzeros [K/g, N/8], scales [K/g, N] of one linear. */
function awqPacker(s: QuantSettings): HfLinearPacker {
  return {
    decls: (base, N, K) => {
      const G = numGroups(K, groupLength(s.groupSize, K));
      return [
        { name: `${base}.qweight`, dtype: "I32", shape: [K, N / 8] },
        { name: `${base}.qzeros`, dtype: "I32", shape: [G, N / 8] },
        { name: `${base}.scales`, dtype: "F16", shape: [G, N] },
      ];
    },
    pack: (ql, alloc) => {
      const t = packAwqGemm(ql, alloc);
      return [bytesOf(t.qweight), bytesOf(t.qzeros), bytesOf(t.scales)];
    },
  };
}

export const awqGemmFormat: Format = {
  id: "awq-gemm",
  title: "AutoAWQ GEMM folder",
  kind: "folder",
  check(s, cfg) {
    if (s.lmHead) {
      throw new UsageError("AutoAWQ GEMM keeps lm_head unquantized", {
        field: "--quantize-lm-head", found: "an AutoAWQ GEMM output", hint: "AutoAWQ quantizes the decoder blocks only (no lm_head option); --then gptq writes HF-GPTQ with a GPTQ-quantized lm_head",
      });
    }
    for (const [name, [N, K]] of Object.entries(linearShapes(cfg))) {
      const problem = awqGemmShapeProblem(N, K, s.bits, s.groupSize);
      if (problem) throw new UsageError(`${name}_proj cannot be stored as AutoAWQ GEMM`, { field: "--bits/--group-size", found: problem, hint: "AWQ GEMM is 4-bit with a group size dividing in_features; use --then gptq for other widths" });
    }
    if (s.actOrder) throw new UsageError("AutoAWQ GEMM has no g_idx: groups must be contiguous", { field: "--act-order", found: "--act-order", hint: "act-order results can only be written as HF-GPTQ" });
  },
  blockTensors(cfg, s, b, w, q, _kernels, alloc) {
    return hfStreamBlockTensors(cfg, b, w, q, awqPacker(s), alloc);
  },
  stream(cfg, s, ckpt) {
    return hfStreamLayout(cfg, ckpt, awqPacker(s));
  },
  readLinear(f, cfg, s, b, spec, file) {
    const base = `${cfg.arch.blockPrefix(b)}.${spec.hf}`;
    const [N, K] = linearShapes(cfg)[spec.name];
    return unpackAwqGemm({
      qweight: int32Of(f.readRawSync(`${base}.qweight`)), qzeros: int32Of(f.readRawSync(`${base}.qzeros`)),
      scales: new Uint16Array(f.readRawSync(`${base}.scales`).slice().buffer),
    }, { N, K, groupSize: s.groupSize, name: base, file });
  },
  async finish(o) {
    writeHfConfigs(o, {
      "config.json": { ...o.cfg.raw, quantization_config: awqQuantizationConfig(o.s) },
      // AutoAWQ's legacy spelling, read by older loaders.
      "quant_config.json": { zero_point: true, q_group_size: o.s.groupSize, w_bit: o.s.bits, version: "GEMM" },
    }, reportJson(o));
    return { files: o.files, report: "quant-report.json", summary: "" };
  },
};

/**
 * AutoAWQ GEMM folder (FORMATS.md §3): qweight/qzeros/scales per linear, 4-bit, contiguous
 * groups, zero points always stored (asymmetric).
 */
import { groupCount } from "../../tensor/quantized.ts";
import { linearShapes } from "../../arch/shapes.ts";
import { awqGemmShapeProblem, packAwqGemm, unpackAwqGemm } from "../../pack/awq-gemm.ts";
import { UsageError } from "../../util/errors.ts";
import type { QuantSettings } from "../settings.ts";
import type { Format } from "./format.ts";
import { bytesOf, hfBlockTensors, int32Of, reportJson, writeHfFolder } from "./hf-folder.ts";

/** AutoAWQ's `quantization_config` (FORMATS.md §3). */
export function awqQuantizationConfig(s: QuantSettings): Record<string, unknown> {
  return { quant_method: "awq", bits: s.bits, group_size: s.groupSize, zero_point: true, version: "gemm", modules_to_not_convert: null };
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
  blockTensors(cfg, _s, b, w, q) {
    return hfBlockTensors(cfg, b, w, q, (base, ql) => {
      const t = packAwqGemm(ql); // qweight [K, N/8], qzeros [K/g, N/8], scales [K/g, N]
      const G = groupCount(ql);
      return [
        { name: `${base}.qweight`, dtype: "I32", shape: [ql.K, ql.N / 8], data: bytesOf(t.qweight) },
        { name: `${base}.qzeros`, dtype: "I32", shape: [G, ql.N / 8], data: bytesOf(t.qzeros) },
        { name: `${base}.scales`, dtype: "F16", shape: [G, ql.N], data: bytesOf(t.scales) },
      ];
    });
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
    const { files, tensorBytes } = await writeHfFolder(o, {
      "config.json": { ...o.cfg.raw, quantization_config: awqQuantizationConfig(o.s) },
      // AutoAWQ's legacy spelling, read by older loaders.
      "quant_config.json": { zero_point: true, q_group_size: o.s.groupSize, w_bit: o.s.bits, version: "GEMM" },
    }, reportJson(o));
    return { files, report: "quant-report.json", summary: "", tensorBytes };
  },
};

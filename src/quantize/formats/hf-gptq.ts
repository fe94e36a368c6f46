/**
 * HF-GPTQ folder (FORMATS.md §2): qweight/qzeros/scales/g_idx per linear, any of 2/3/4/8
 * bits, act-order included; checkpoint_format "gptq" (v1, stores zero − 1) or "gptq_v2".
 */
import type { WeightKernels } from "../../backend/weight-kernels.ts";
import { groupLength, numGroups } from "../../tensor/quantized.ts";
import { linearShapes } from "../../arch/shapes.ts";
import { GPTQ_BITS, gptqShapeProblem, packGptq, unpackGptq } from "../../pack/hf-gptq.ts";
import { UsageError } from "../../util/errors.ts";
import type { QuantSettings } from "../settings.ts";
import type { Format } from "./format.ts";
import { bytesOf, hfStreamBlockTensors, hfStreamLayout, int32Of, reportJson, VERSION, writeHfConfigs, type HfLinearPacker } from "./hf-folder.ts";

/** The `quantization_config` dict (FORMATS.md §2), written to config.json and quantize_config.json. */
export function gptqQuantizationConfig(s: QuantSettings, version: string): Record<string, unknown> {
  // lm_head: true with GPTQModel's per-module override naming lm_head's own grid (vLLM reads both: gptq.py, gptq_utils.py)
  const head = s.lmHead ? { lm_head: true, dynamic: { lm_head: { bits: s.lmHead.bits, group_size: s.lmHead.groupSize, sym: s.sym, desc_act: false } } } : { lm_head: false };
  return {
    quant_method: "gptq",
    bits: s.bits,
    group_size: s.groupSize,
    desc_act: s.actOrder,
    sym: s.sym,
    true_sequential: s.trueSequential,
    static_groups: s.staticGroups,
    damp_percent: s.damp,
    checkpoint_format: s.format,
    format: s.format,
    ...head,
    meta: { quantizer: [`quantize-llm:${version}`], method: s.method },
  };
}

/** qweight [K·b/32, N], qzeros [G, N·b/32], scales [G, N], g_idx [K] of one linear (`s`: its own bits and group size: lm_head may differ from the blocks). */
function gptqPacker(s: Pick<QuantSettings, "bits" | "groupSize" | "format">, kernels?: WeightKernels): HfLinearPacker {
  return {
    decls: (base, N, K) => {
      const G = numGroups(K, groupLength(s.groupSize, K));
      return [
        { name: `${base}.qweight`, dtype: "I32", shape: [(K * s.bits) / 32, N] },
        { name: `${base}.qzeros`, dtype: "I32", shape: [G, (N * s.bits) / 32] },
        { name: `${base}.scales`, dtype: "F16", shape: [G, N] },
        { name: `${base}.g_idx`, dtype: "I32", shape: [K] },
      ];
    },
    pack: (ql, alloc) => {
      const t = packGptq(ql, s.format, kernels !== undefined ? (c, N, K, bits, out) => kernels.gptqPackCodes(c, N, K, bits, out) : undefined, alloc);
      return [bytesOf(t.qweight), bytesOf(t.qzeros), bytesOf(t.scales), bytesOf(t.gIdx)];
    },
  };
}

export const hfGptqFormat: Format = {
  id: "hf-gptq",
  title: "HF-GPTQ folder",
  kind: "folder",
  check(s, cfg) {
    if (s.format === "gptq" && !s.sym) {
      throw new UsageError("asymmetric quantization cannot be written as GPTQ v1", {
        field: "--checkpoint-format", expected: "gptq_v2 with --asym", found: "gptq (v1)",
        hint: "v1 stores zero − 1, which wraps for a zero point of 0; use --checkpoint-format gptq_v2 (the default for --asym) or --sym",
      });
    }
    for (const [name, [N, K]] of Object.entries(linearShapes(cfg))) {
      const problem = gptqShapeProblem(N, K, s.bits);
      if (problem) throw new UsageError(`${name}_proj cannot be stored as HF-GPTQ`, { field: "--bits", expected: `one of ${GPTQ_BITS.join(", ")} with packable shapes`, found: problem });
    }
    if (s.lmHead) {
      const problem = gptqShapeProblem(cfg.vocabSize, cfg.hiddenSize, s.lmHead.bits);
      if (problem) throw new UsageError("lm_head cannot be stored as HF-GPTQ", { field: "--lm-head-bits", expected: `one of ${GPTQ_BITS.join(", ")} with packable shapes`, found: problem });
    }
  },
  blockTensors(cfg, s, b, w, q, kernels, alloc) {
    return hfStreamBlockTensors(cfg, b, w, q, gptqPacker(s, kernels), alloc);
  },
  stream(cfg, s, ckpt) {
    return hfStreamLayout(cfg, ckpt, gptqPacker(s), s.lmHead ? gptqPacker({ ...s, bits: s.lmHead.bits, groupSize: s.lmHead.groupSize }) : undefined);
  },
  readLinear(f, cfg, s, b, spec, file) {
    const base = `${cfg.arch.blockPrefix(b)}.${spec.hf}`;
    const [N, K] = linearShapes(cfg)[spec.name];
    return unpackGptq({
      qweight: int32Of(f.readRawSync(`${base}.qweight`)), qzeros: int32Of(f.readRawSync(`${base}.qzeros`)),
      scales: new Uint16Array(f.readRawSync(`${base}.scales`).slice().buffer), gIdx: int32Of(f.readRawSync(`${base}.g_idx`)),
    }, { N, K, bits: s.bits, groupSize: s.groupSize, sym: s.sym, format: s.format, name: base, file });
  },
  async finish(o) {
    const qc = gptqQuantizationConfig(o.s, VERSION);
    // a tied model's quantized head is its own tensor now: the embedding stays as stored, for lookup
    const untie = o.lmHead?.report.untied === true ? { tie_word_embeddings: false } : {};
    writeHfConfigs(o, { "config.json": { ...o.cfg.raw, ...untie, quantization_config: qc }, "quantize_config.json": qc }, reportJson(o));
    return { files: o.files, report: "quant-report.json", summary: "" };
  },
};

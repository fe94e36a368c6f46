/**
 * `quantize-llm inspect [model]`: what a user checks before and after quantizing — the
 * format, the architecture and its shapes, how each weight is stored (dtype or bits and
 * group), bits per weight, file size. Reads headers and config only: no tensor data.
 *
 * Per-format differences are data: STORED_AS says, per tensor-name suffix, how a
 * quantized module's tensors relate to its logical [out, in] matrix.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { readModelConfig } from "../load/hf-folder.ts";
import { resolveModelArg } from "../load/paths.ts";
import { openCheckpoint } from "../io/checkpoint.ts";
import { openGguf } from "../io/gguf.ts";
import { DTYPE_SIZE, type DType } from "../tensor/dtype.ts";
import { onePositional, parseFlags } from "./args.ts";
import type { Command } from "./command.ts";

const usage = `usage: quantize-llm inspect [model] [--tensors] [--json]

Show a model's format, architecture, shapes, how each weight is stored (dtype, or bits and
group size), bits per weight and file size. HF folders (plain, HF-GPTQ, AutoAWQ,
bitsandbytes int8) and .gguf files; reads headers only. With no model, the bundled model.

  --tensors   list every weight (name, storage, shape [out, in], bits per weight)
  --json      print the report as JSON
`;

/** One logical weight matrix (or vector) and the bytes that store it. */
export interface InspectedWeight {
  name: string;
  /** "BF16", "F32", "Q4_0", "int4 g128 sym (GPTQ)", "int8 row-absmax (bitsandbytes)", … */
  storage: string;
  /** Logical dimensions, outermost first ([out, in] for a linear). */
  shape: number[];
  params: number;
  bytes: number;
}

export interface InspectReport {
  path: string;
  format: string;
  architecture: string;
  shapes: Record<string, number | string>;
  fileBytes: number;
  params: number;
  /** 8 · bytes of all weights / params. */
  bitsPerWeight: number;
  /** storage → number of weights stored that way, their params and bytes. */
  storage: Record<string, { tensors: number; params: number; bytes: number }>;
  weights: InspectedWeight[];
}

const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

function summarize(path: string, format: string, architecture: string, shapes: InspectReport["shapes"], fileBytes: number, weights: InspectedWeight[]): InspectReport {
  const storage: InspectReport["storage"] = {};
  let params = 0;
  let bytes = 0;
  for (const w of weights) {
    params += w.params;
    bytes += w.bytes;
    const s = (storage[w.storage] ??= { tensors: 0, params: 0, bytes: 0 });
    s.tensors++;
    s.params += w.params;
    s.bytes += w.bytes;
  }
  return { path, format, architecture, shapes, fileBytes, params, bitsPerWeight: params > 0 ? (8 * bytes) / params : 0, storage, weights };
}

function inspectGguf(path: string): InspectReport {
  const g = openGguf(path);
  try {
    const arch = g.architecture ?? "unknown";
    const num = (k: string): number | string => { try { return g.getNumber(`${arch}.${k}`); } catch { return "?"; } };
    const shapes = {
      hidden: num("embedding_length"), layers: num("block_count"), heads: num("attention.head_count"),
      kv_heads: num("attention.head_count_kv"), ffn: num("feed_forward_length"), context: num("context_length"),
    };
    const weights: InspectedWeight[] = [...g.tensors.values()].map((t) => ({
      name: t.name, storage: t.type.name, shape: [...t.dims].reverse(), params: prod(t.dims), bytes: t.byteSize,
    }));
    return summarize(path, `GGUF v${g.version}`, arch, shapes, g.fileSize, weights);
  } finally {
    g.close();
  }
}

/** quantization_config of config.json, as far as inspect needs it. */
interface QuantConfig { method: string; bits: number; group: number; sym: boolean | undefined; descAct: boolean }

function quantConfig(dir: string): QuantConfig | null {
  const raw = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
  const q = raw["quantization_config"] as Record<string, unknown> | undefined;
  if (q === undefined || q === null || typeof q !== "object") return null;
  const method = String(q["quant_method"] ?? "unknown");
  if (method === "bitsandbytes") return { method, bits: q["load_in_8bit"] === true ? 8 : 4, group: -1, sym: true, descAct: false };
  const bits = Number(q["bits"] ?? q["w_bit"] ?? 0);
  const group = Number(q["group_size"] ?? q["q_group_size"] ?? -1);
  const sym = typeof q["sym"] === "boolean" ? q["sym"] : typeof q["zero_point"] === "boolean" ? !q["zero_point"] : undefined;
  return { method, bits, group, sym, descAct: q["desc_act"] === true };
}

/**
 * How a quantized module's tensors map to its logical [out, in] matrix (FORMATS.md):
 * the tensor that fixes the shape, the shape it implies, and its sibling tensors.
 */
const STORED_AS: Record<string, { key: string; siblings: readonly string[]; logical: (shape: number[], bits: number) => number[] }> = {
  // HF-GPTQ: qweight int32 [in·bits/32, out]
  gptq: { key: "qweight", siblings: ["qzeros", "scales", "g_idx", "bias"], logical: ([r, c], bits) => [c!, (r! * 32) / bits] },
  // AutoAWQ GEMM: qweight int32 [in, out·bits/32]
  awq: { key: "qweight", siblings: ["qzeros", "scales", "bias"], logical: ([r, c], bits) => [(c! * 32) / bits, r!] },
  // bitsandbytes int8: weight int8 [out, in] with SCB f32 [out] and weight_format
  bitsandbytes: { key: "weight", siblings: ["SCB", "weight_format", "bias"], logical: (s) => s },
};

async function inspectFolder(dir: string): Promise<InspectReport> {
  const cfg = readModelConfig(dir);
  const q = quantConfig(dir);
  const ckpt = await openCheckpoint(dir);
  const fileBytes = readdirSync(dir).filter((f) => f.endsWith(".safetensors"))
    .reduce((a, f) => a + statSync(join(dir, f)).size, 0);
  const names = ckpt.names();
  const bytesOf = (n: string): number => { const t = ckpt.info(n); return prod(t.shape) * DTYPE_SIZE[t.dtype as DType]; };
  const weights: InspectedWeight[] = [];
  const used = new Set<string>();
  const layout = q ? STORED_AS[q.method] : undefined;
  if (q && layout) {
    for (const n of names) {
      if (!n.endsWith(`.${layout.key}`)) continue;
      const base = n.slice(0, -layout.key.length - 1);
      const t = ckpt.info(n);
      if (q.method === "bitsandbytes" && t.dtype !== "I8") continue; // an unquantized (skipped) module
      const shape = layout.logical(t.shape, q.bits);
      let bytes = bytesOf(n);
      used.add(n);
      for (const s of layout.siblings) {
        const sn = `${base}.${s}`;
        if (s !== "bias" && ckpt.has(sn)) { bytes += bytesOf(sn); used.add(sn); }
      }
      const group = q.group === -1 ? "per row" : `g${q.group}`;
      const storage = q.method === "bitsandbytes" ? "int8 row-absmax (bitsandbytes)"
        : `int${q.bits} ${group}${q.sym === undefined ? "" : q.sym ? " sym" : " asym"}${q.descAct ? " act-order" : ""} (${q.method === "gptq" ? "GPTQ" : "AWQ"})`;
      weights.push({ name: base, storage, shape, params: prod(shape), bytes });
    }
  }
  for (const n of names) {
    if (used.has(n)) continue;
    const t = ckpt.info(n);
    weights.push({ name: n, storage: t.dtype, shape: t.shape, params: prod(t.shape), bytes: bytesOf(n) });
  }
  await ckpt.close();
  const format = q === null ? "Hugging Face folder (safetensors)"
    : q.method === "gptq" ? "HF-GPTQ folder" : q.method === "awq" ? "AutoAWQ GEMM folder"
    : q.method === "bitsandbytes" ? "bitsandbytes int8 folder (load_in_8bit)" : `folder with quant_method "${q.method}"`;
  const shapes = {
    hidden: cfg.hiddenSize, layers: cfg.numLayers, heads: cfg.numHeads, kv_heads: cfg.numKvHeads,
    head_dim: cfg.headDim, ffn: cfg.intermediateSize, vocab: cfg.vocabSize, context: cfg.maxPositionEmbeddings,
  };
  return summarize(dir, format, cfg.modelType, shapes, fileBytes, weights);
}

/** The report of a model folder or .gguf file (headers and config only). */
export async function inspectModel(path: string): Promise<InspectReport> {
  return /\.gguf$/i.test(path) ? inspectGguf(path) : inspectFolder(path);
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

export function formatInspect(r: InspectReport, tensors: boolean): string {
  const lines = [
    `${r.path}`,
    `  format        ${r.format}`,
    `  architecture  ${r.architecture}: ${Object.entries(r.shapes).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `  parameters    ${(r.params / 1e6).toFixed(2)} M in ${r.weights.length} weights`,
    `  bits/weight   ${r.bitsPerWeight.toFixed(2)} (all weights, quantization metadata included)`,
    `  file size     ${mib(r.fileBytes)}`,
    `  stored as`,
    ...Object.entries(r.storage).map(([s, v]) => `    ${s.padEnd(34)} ${String(v.tensors).padStart(5)} weights  ${(v.params / 1e6).toFixed(2).padStart(9)} M params  ${((8 * v.bytes) / v.params).toFixed(2).padStart(6)} bpw`),
  ];
  if (tensors) {
    lines.push("  weights");
    for (const w of r.weights) lines.push(`    ${w.name.padEnd(48)} ${w.storage.padEnd(30)} [${w.shape.join(", ")}]  ${((8 * w.bytes) / w.params).toFixed(2)} bpw`);
  }
  return `${lines.join("\n")}\n`;
}

export const inspectCommand: Command = {
  name: "inspect",
  summary: "show a model's format, shapes, bits/group per tensor, bits per weight and file size",
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags("inspect", argv, {
      tensors: { type: "boolean" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" },
    });
    if (values.help) { process.stdout.write(usage); return 0; }
    const r = await inspectModel(resolveModelArg(onePositional("inspect", positionals)));
    process.stdout.write(values.json ? `${JSON.stringify(r, null, 1)}\n` : formatInspect(r, values.tensors === true));
    return 0;
  },
};

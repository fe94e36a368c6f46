/**
 * Which kernels a loaded model runs on, in one line (printed by `eval` and `chat`), and
 * how many bytes its weights hold.
 *   native avx512, 2 threads: 154 linears q4x16 (int4 g128, 4.27 bpw), lm_head bf16x16 (16 bpw); packed kernels avx512, int8 activations …; embedding bf16 rows
 */
import { isPackedWeight, PackedSum, type LinearWeight } from "../backend/backend.ts";
import type { Model } from "../nn/model.ts";

interface LayoutInfo { layout: string; groupSize?: number; bitsPerWeight?: number }

function describeWeight(w: LinearWeight): string {
  if (!isPackedWeight(w)) return "f32";
  const info = w as LayoutInfo & { N: number; K: number; bytes: number };
  const bpw = info.bitsPerWeight ?? (8 * info.bytes) / (info.N * info.K);
  const g = info.groupSize !== undefined && info.groupSize < info.K ? ` g${info.groupSize}` : "";
  const run = (w as { run?: { threshold: number; staticCols: Int32Array | null } }).run;
  const kind = /^q4/.test(info.layout) ? `int4${g}, ` : /q8/.test(info.layout) ? `int8${g}${w instanceof PackedSum ? ` planes: ${w.reason}` : ""}, `
    : run !== undefined ? `LLM.int8() t=${run.threshold}${run.threshold > 0 ? (run.staticCols !== null ? " static columns" : " dynamic") : ""}, ` : "";
  return `${info.layout} (${kind}${bpw.toFixed(2)} bpw)`;
}

/** Every linear weight of the model, blocks first, lm_head last. */
function linearWeights(model: Model): LinearWeight[] {
  const ws: LinearWeight[] = [];
  for (const b of model.weights.blocks) for (const l of Object.values(b.linears)) ws.push(l.weight);
  ws.push(model.weights.lmHead);
  return ws;
}

/** One line naming backend, SIMD level, threads, each weight layout, the activation precision and the embedding form. */
export function describeKernelPath(model: Model, opts: { activations?: "int8" | "f32" } = {}): string {
  const b = model.backend;
  const level = (b as { kernelLevel?: string }).kernelLevel;
  const head = `${b.name}${level !== undefined ? ` ${level}` : ""}, ${b.threads} thread${b.threads === 1 ? "" : "s"}`;
  const ws = linearWeights(model);
  const counts = new Map<string, number>();
  for (const w of ws.slice(0, -1)) { const d = describeWeight(w); counts.set(d, (counts.get(d) ?? 0) + 1); }
  const parts = [...counts].map(([d, n]) => `${n} linear${n === 1 ? "" : "s"} ${d === "f32" ? "f32 (dequantized)" : d}`);
  const lm = describeWeight(ws[ws.length - 1]!);
  parts.push(`lm_head ${lm === "f32" ? "f32" : lm}`);
  const packed = ws.some(isPackedWeight);
  const e = model.weights.embed;
  const embed = e instanceof Float32Array ? "embedding f32" : `embedding ${e.dtype} rows`;
  const acts = opts.activations ?? "int8";
  const packedLevel = (b as { packedKernelLevel?: string }).packedKernelLevel;
  return `${head}: ${parts.join(", ")}; ${packed ? `packed kernels${packedLevel !== undefined ? ` ${packedLevel}` : ""}, ${acts} activations${acts === "int8" ? " (16-bit weights: f32)" : ""}` : "f32 GEMM"}; ${embed}`;
}

/** Bytes held by the weights: packed (backend memory) and f32 (JS arrays: f32 linears, norms, an f32 embedding). */
export function weightBytes(model: Model): { packed: number; f32: number } {
  let packed = 0, f32 = 0;
  for (const w of linearWeights(model)) { if (isPackedWeight(w)) packed += w.bytes; else f32 += w.byteLength; }
  const e = model.weights.embed;
  if (e instanceof Float32Array) { if (e !== model.weights.lmHead) f32 += e.byteLength; } else packed += e.bytes;
  for (const b of model.weights.blocks) f32 += b.attnNorm.byteLength + b.mlpNorm.byteLength;
  return { packed, f32 };
}

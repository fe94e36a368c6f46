/**
 * Quality at equal size in GGUF: plain llama.cpp-style Q4_0 vs GPTQ→Q4_0 vs
 * AWQ→Q4_1 vs AWQ+GPTQ→Q4_0 vs a Q4_K_M-style mixture, on the bundled model.
 * Embeddings and lm_head are Q8_0 everywhere (Q4_K_M: llama.cpp's own choice).
 *
 *   npx tsx eval/gguf-quality.ts [--threads 2] [--calib-samples 64] [--write]
 *
 * Perplexity: llama.cpp protocol (ctx 512, BOS first, second half scored) on
 * models/qllm-tiny/data/eval.txt, computed by our engine on the .gguf files
 * (test/llamacpp/quantized-export.test.ts checks that llama.cpp agrees on such files).
 */
import { execSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BUNDLED_CALIB_TEXT, BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR, perplexity, selectBackend } from "../src/index.ts";
import { exportGguf } from "../src/export/gguf.ts";
import { exportQuantizedGguf } from "../src/export/gguf-quant.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { quantizeModel } from "../src/quantize/pipeline.ts";
import type { QuantSettings } from "../src/quantize/settings.ts";

const { values } = parseArgs({ options: { threads: { type: "string" }, "calib-samples": { type: "string" }, write: { type: "boolean" } } });
const backend = selectBackend({ threads: Number(values.threads ?? 2) });
const calibSamples = Number(values["calib-samples"] ?? 64);
const work = mkdtempSync(join(tmpdir(), "qllm-gguf-quality-"));

async function ppl(path: string): Promise<number> {
  const { model, tokenizer } = await loadModel(path, backend);
  const tokens = tokenizer.encode(readFileSync(BUNDLED_EVAL_TEXT, "utf8"), { addSpecial: true });
  return perplexity(model, tokens, { protocol: "llama.cpp", ctx: 512, bosId: tokenizer.bosId }).ppl;
}

async function quantized(name: string, over: Partial<QuantSettings>): Promise<string> {
  const outDir = join(work, name);
  const settings: QuantSettings = {
    method: "gptq", bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
    trueSequential: true, format: "gptq", calibSamples, calibSeqlen: 512, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT,
    duoScaling: true, clip: true, loadSearch: null, ...over,
  };
  await quantizeModel({ modelDir: BUNDLED_MODEL_DIR, outDir, settings, backend });
  return outDir;
}

interface Row { name: string; bpw: number; bytes: number; ppl: number; note: string }
const rows: Row[] = [];
const f32 = join(work, "f32.gguf");
const r0 = await exportGguf(BUNDLED_MODEL_DIR, f32, { type: "f32" });
rows.push({ name: "F32 (unquantized)", bpw: 32, bytes: r0.bytes, ppl: await ppl(f32), note: "" });

for (const [name, type] of [["plain Q4_0 (llama.cpp RTN)", "q4_0"], ["Q4_K_M-style mixture", "q4_k_m"]] as const) {
  const file = join(work, `${type}.gguf`);
  const r = await exportQuantizedGguf(BUNDLED_MODEL_DIR, file, { type, ...(type === "q4_0" ? { embedType: "q8_0", headType: "q8_0" } : {}) });
  rows.push({ name, bpw: r.bitsPerWeight, bytes: r.bytes, ppl: await ppl(file), note: Object.entries(r.types).map(([t, n]) => `${n} ${t}`).join(", ") });
  console.log(rows.at(-1));
}
for (const [name, over] of [
  ["GPTQ w4 g32 sym → Q4_0", { method: "gptq" }],
  ["GPTQ w4 g32 sym act-order+static → Q4_0", { method: "gptq", actOrder: true, staticGroups: true }],
  ["AWQ w4 g32 → Q4_1", { method: "awq", sym: false, format: "gptq_v2" }],
  ["AWQ+GPTQ w4 g32 sym → Q4_0", { method: "awq+gptq" }],
] as const) {
  const dir = await quantized(name.replace(/\W+/g, "-"), over as Partial<QuantSettings>);
  const file = `${dir}.gguf`;
  const r = await exportQuantizedGguf(dir, file, { embedType: "q8_0", headType: "q8_0" });
  rows.push({ name, bpw: r.bitsPerWeight, bytes: r.bytes, ppl: await ppl(file), note: `${r.exactLayers} layers exact, ${r.requantizedLayers} re-quantized${r.maxMRoundingError > 0 ? `, max m-rounding error ${r.maxMRoundingError.toExponential(2)}` : ""}` });
  console.log(rows.at(-1));
}
rmSync(work, { recursive: true, force: true });

let commit = "unknown";
try { commit = execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { /* not a checkout */ }
const md = [
  "# Quality at equal size in GGUF (bundled model)",
  "",
  `llama.cpp protocol (ctx 512) on models/qllm-tiny/data/eval.txt, our engine on each .gguf. Calibration ${calibSamples} × 512 tokens of data/calib.txt.`,
  `Bits per weight count every tensor; the 4096 × 256 embedding and lm_head (Q8_0) weigh heavily in a 5M-parameter model.`,
  `Produced by \`npx tsx eval/gguf-quality.ts --write\` on ${new Date().toISOString().slice(0, 10)}, commit ${commit}.`,
  "",
  "| file | bits/weight | size (KiB) | perplexity | notes |",
  "|---|---:|---:|---:|---|",
  ...rows.map((r) => `| ${r.name} | ${r.bpw.toFixed(2)} | ${(r.bytes / 1024).toFixed(0)} | ${r.ppl.toFixed(3)} | ${r.note} |`),
  "",
].join("\n");
console.log(md);
if (values.write) writeFileSync(join("eval", "reports", "gguf-quality.md"), md);

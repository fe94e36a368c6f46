/**
 * What a quantized lm_head (`--quantize-lm-head`, docs/quantize-lm-head.md) costs in
 * perplexity on the bundled model: RTN and GPTQ w4 g128 HF-GPTQ folders with lm_head as
 * stored (bf16), 8-bit g32 (GPTQModel's default grid) and 4-bit g32, and LLM.int8() t=6
 * folders with lm_head bf16 / int8; each folder through the packed kernels (as eval, chat
 * and serve load it: int8 activations) and through the f32 reference (the same folder's
 * weights dequantized to f32, f32 activations: `eval --weights f32`).
 *
 *   /work/bin/heavy npx tsx eval/lm-head-quality.ts [--threads 2] [--calib-samples 128] [--write]
 *
 * Protocol "gptq": 512-token windows of models/qllm-tiny/data/eval.txt, every token scored
 * (the README's `quantize-llm eval`). GPTQ: 128 × 512 calibration tokens of
 * models/qllm-tiny/data/calib.txt, damp 0.01 (the CLI defaults). --write saves
 * eval/reports/lm-head-quality.md.
 */
import { execSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { isPackedWeight } from "../src/backend/backend.ts";
import { createNativeBackend } from "../src/backend/native.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { describeKernelPath } from "../src/load/kernel-path.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR } from "../src/load/paths.ts";
import { perplexity } from "../src/metrics/perplexity.ts";
import { quantizeInt8 } from "../src/quantize/int8-pipeline.ts";
import type { LmHeadSettings } from "../src/quantize/lm-head.ts";
import { quantizeModel } from "../src/quantize/pipeline.ts";
import type { QuantSettings } from "../src/quantize/settings.ts";

const { values } = parseArgs({ options: { threads: { type: "string" }, write: { type: "boolean" }, "calib-samples": { type: "string" } } });
const threads = Number(values.threads ?? 2);
const calibSamples = Number(values["calib-samples"] ?? 128);
const nb = createNativeBackend({ threads });
const CTX = 512;

/** Held-out perplexity of `dir` loaded packed (native kernels) or as the dequantized f32 reference. */
async function ppl(dir: string, weights: "packed" | "f32"): Promise<{ ppl: number; head: string }> {
  const m = await loadModel(dir, nb, { weights });
  const tokens = m.tokenizer.encode(readFileSync(BUNDLED_EVAL_TEXT, "utf8"), { addSpecial: true });
  const p = perplexity(m.model, tokens, { protocol: "gptq", ctx: CTX, bosId: m.tokenizer.bosId }).ppl;
  const path = describeKernelPath(m.model);
  const head = /lm_head ([^;]*?\))?(?:;|$)/.exec(path)?.[0] ?? "";
  if (weights === "packed" && !isPackedWeight(m.model.weights.lmHead)) throw new Error(`${dir}: lm_head did not load packed`);
  return { ppl: p, head: head.replace(/;$/, "") };
}

interface Row { method: string; head: string; kernel: string; packed: number; f32: number }
const rows: Row[] = [];
const work = mkdtempSync(join(tmpdir(), "qllm-lm-head-quality-"));
let base = NaN;
try {
  base = (await ppl(BUNDLED_MODEL_DIR, "f32")).ppl;
  console.log(`bf16 model, f32: ${base.toFixed(4)}`);
  const heads: [string, LmHeadSettings | null][] = [["bf16 (as stored)", null], ["8-bit g32 (GPTQModel's default)", { bits: 8, groupSize: 32 }], ["4-bit g32", { bits: 4, groupSize: 32 }]];
  for (const method of ["rtn", "gptq"] as const) {
    for (const [label, lmHead] of heads) {
      const out = join(work, `${method}-${lmHead ? `${lmHead.bits}g${lmHead.groupSize}` : "bf16"}`);
      const s: QuantSettings = {
        method, bits: 4, groupSize: 128, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
        trueSequential: true, format: "gptq", calibSamples: method === "rtn" ? 0 : calibSamples, calibSeqlen: CTX, calibSeed: 0,
        calibText: BUNDLED_CALIB_TEXT, ...(lmHead ? { lmHead } : {}),
      };
      const t0 = performance.now();
      await quantizeModel({ modelDir: BUNDLED_MODEL_DIR, outDir: out, settings: s, backend: nb });
      const p = await ppl(out, "packed"), f = await ppl(out, "f32");
      rows.push({ method: `${method.toUpperCase()} w4 g128`, head: label, kernel: p.head, packed: p.ppl, f32: f.ppl });
      console.log(`${method} ${label}: packed ${p.ppl.toFixed(4)}, f32 ${f.ppl.toFixed(4)} (${((performance.now() - t0) / 1000).toFixed(1)} s) ${p.head}`);
      rmSync(out, { recursive: true, force: true });
    }
  }
  for (const [label, quantizeLmHead] of [["bf16 (as stored)", false], ["int8 (LLM.int8(), t=6)", true]] as const) {
    const out = join(work, `int8-${quantizeLmHead ? "head" : "bf16"}`);
    await quantizeInt8({
      modelDir: BUNDLED_MODEL_DIR, outDir: out, backend: nb,
      settings: { threshold: 6, staticOutliers: false, skipModules: null, calibSamples: 0, calibSeqlen: CTX, calibSeed: 0, calibText: null, ...(quantizeLmHead ? { quantizeLmHead } : {}) },
    });
    const p = await ppl(out, "packed"), f = await ppl(out, "f32");
    rows.push({ method: "LLM.int8() t=6", head: label, kernel: p.head, packed: p.ppl, f32: f.ppl });
    console.log(`int8 ${label}: packed ${p.ppl.toFixed(4)}, f32 ${f.ppl.toFixed(4)} ${p.head}`);
    rmSync(out, { recursive: true, force: true });
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

let commit = "unknown";
try { commit = execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { /* not a git checkout */ }
const pct = (v: number): string => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(3)}%`;
const noHead = (r: Row): Row => rows.find((x) => x.method === r.method && x.head === "bf16 (as stored)")!;
const md = [
  "# What a quantized lm_head costs in perplexity (bundled model)",
  "",
  `Held-out perplexity (gptq protocol, ${CTX}-token windows, every token of models/qllm-tiny/data/eval.txt scored); the bf16`,
  `model itself: **${base.toFixed(4)}** (f32). "packed": the folder loaded as eval/chat/serve load it (native packed kernels, int8`,
  `activations per block of 32 for the int4/int8 layouts, per token for LLM.int8()); "f32 reference": the same folder's weights`,
  `dequantized to f32, f32 activations (\`eval --weights f32\`). GPTQ: ${calibSamples} × ${CTX} calibration tokens, damp 0.01; the`,
  "GPTQ lm_head uses the Hessian of the final norm of the last quantized block's outputs (src/quantize/lm-head.ts).",
  `Produced by \`/work/bin/heavy npx tsx eval/lm-head-quality.ts --threads ${threads}${calibSamples !== 128 ? ` --calib-samples ${calibSamples}` : ""} --write\` on ${new Date().toISOString().slice(0, 10)}, commit ${commit}.`,
  "",
  "| method | lm_head | packed | f32 reference | packed vs f32 | head's cost (f32 reference vs bf16 head) | head's cost (packed vs bf16 head, packed) | lm_head kernel |",
  "|---|---|---:|---:|---:|---:|---:|---|",
  ...rows.map((r) => `| ${r.method} | ${r.head} | ${r.packed.toFixed(4)} | ${r.f32.toFixed(4)} | ${pct(r.packed / r.f32 - 1)} | ${r.head.startsWith("bf16") ? "–" : pct(r.f32 / noHead(r).f32 - 1)} | ${r.head.startsWith("bf16") ? "–" : pct(r.packed / noHead(r).packed - 1)} | ${r.kernel.replace(/^lm_head /, "")} |`),
  "",
].join("\n");
console.log("\n" + md);
if (values.write) writeFileSync(join("eval", "reports", "lm-head-quality.md"), md);

/**
 * Results table: held-out perplexity of the bundled model under RTN and GPTQ at
 * several bit widths / group sizes / act-order, all through the library API.
 *
 *   npx tsx eval/gptq-results.ts [--threads 2] [--calib-samples 128] [--write]
 *
 * Protocol: "gptq" (non-overlapping 512-token windows, every token scored) on
 * models/qllm-tiny/data/eval.txt; calibration on data/calib.txt (disjoint).
 * --write saves eval/reports/gptq-results.{md,json}.
 */
import { execSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUNDLED_CALIB_TEXT, BUNDLED_MODEL_DIR, quantizeModel, type QuantSettings } from "../src/index.ts";
import { qualityRun } from "./heldout.ts";

const { values, threads, backend, calibSamples, ppl } = qualityRun();

interface Row { method: string; bits: number | null; group: number | null; actOrder: boolean | null; ppl: number; seconds: number | null }

const configs: Array<Pick<QuantSettings, "method" | "bits" | "groupSize" | "actOrder">> = [];
for (const bits of values.quick ? [3] : [4, 3]) {
  for (const groupSize of values.quick ? [128] : [128, 32]) {
    configs.push({ method: "rtn", bits, groupSize, actOrder: false });
    configs.push({ method: "gptq", bits, groupSize, actOrder: false });
    configs.push({ method: "gptq", bits, groupSize, actOrder: true });
    if (groupSize === 128) {
      configs.push({ method: "awq", bits, groupSize, actOrder: false });
      configs.push({ method: "awq+gptq", bits, groupSize, actOrder: false });
    }
  }
}

const work = mkdtempSync(join(tmpdir(), "qllm-results-"));
const rows: Row[] = [{ method: "bf16 (unquantized)", bits: null, group: null, actOrder: null, ppl: await ppl(BUNDLED_MODEL_DIR), seconds: null }];
console.log(`bf16: ppl ${rows[0]!.ppl.toFixed(4)}`);
for (const c of configs) {
  const out = join(work, `${c.method}-${c.bits}-${c.groupSize}-${c.actOrder}`);
  const settings: QuantSettings = {
    ...c, sym: c.method !== "awq", staticGroups: false, damp: 0.01, blockSize: 128, trueSequential: true,
    format: c.method === "awq" ? "gptq_v2" : "gptq", duoScaling: true, clip: true, loadSearch: null,
    // the AWQ recipe this report was made with (AutoAWQ-style; AWQ's defaults are llm-awq's since eval/awq-gap.ts)
    ...(c.method === "awq" || c.method === "awq+gptq" ? { calibSampling: "windows" as const, clipSampling: "random" as const } : {}),
    calibSamples: c.method === "rtn" ? 0 : calibSamples, calibSeqlen: 512, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT,
  };
  const r = await quantizeModel({ modelDir: BUNDLED_MODEL_DIR, outDir: out, settings, backend });
  const p = await ppl(out);
  rows.push({ method: c.method, bits: c.bits, group: c.groupSize, actOrder: c.actOrder, ppl: p, seconds: r.seconds });
  console.log(`${c.method} w${c.bits} g${c.groupSize}${c.actOrder ? " act-order" : ""}: ppl ${p.toFixed(4)} (${r.seconds.toFixed(1)} s)`);
  rmSync(out, { recursive: true, force: true });
}
rmSync(work, { recursive: true, force: true });

const base = rows[0]!.ppl;
const rtnOf = (r: Row): Row | undefined => rows.find((x) => x.method === "rtn" && x.bits === r.bits && x.group === r.group);
const removed = (r: Row): string => {
  const rtn = rtnOf(r);
  if (!rtn || r.method === "rtn" || r.bits === null) return "";
  return `${(((rtn.ppl - r.ppl) / (rtn.ppl - base)) * 100).toFixed(0)}%`;
};
let commit = "unknown";
try { commit = execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { /* not a git checkout */ }
const md = [
  `# RTN vs GPTQ vs AWQ on the bundled model`,
  ``,
  `Held-out perplexity of models/qllm-tiny (gptq protocol: ${512}-token windows, every token scored, data/eval.txt).`,
  `Calibration: ${calibSamples} × 512-token windows of data/calib.txt, seed 0. RTN/GPTQ: symmetric grid, damp 0.01,
true-sequential. AWQ: AutoAWQ defaults (asymmetric grid, duo scaling, clip search; 4-bit written as AutoAWQ GEMM,
3-bit as HF-GPTQ v2). AWQ+GPTQ: AWQ scales and clips, then GPTQ (symmetric) on the scaled weights.`,
  `Produced by \`npx tsx eval/gptq-results.ts --threads ${threads} --write\` on ${new Date().toISOString().slice(0, 10)}, commit ${commit}, backend ${backend.name} (${backend.threads} threads).`,
  ``,
  `| method | bits | group | act-order | perplexity | Δ vs bf16 | share of RTN's increase removed | time (s) |`,
  `|---|---:|---:|:---:|---:|---:|---:|---:|`,
  ...rows.map((r) => `| ${r.method} | ${r.bits ?? "16"} | ${r.group ?? "-"} | ${r.actOrder === null ? "-" : r.actOrder ? "yes" : "no"} | ${r.ppl.toFixed(3)} | ${r.bits === null ? "-" : `${(((r.ppl / base) - 1) * 100).toFixed(2)}%`} | ${removed(r)} | ${r.seconds?.toFixed(1) ?? "-"} |`),
  ``,
].join("\n");
console.log("\n" + md);
if (values.write) {
  writeFileSync(join("eval", "reports", "gptq-results.md"), md);
  writeFileSync(join("eval", "reports", "gptq-results.json"), JSON.stringify({ commit, threads, calibSamples, rows }, null, 1) + "\n");
}

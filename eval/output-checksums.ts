/**
 * Byte-identity proof for refactors: sha256 of every file the CLI writes for the
 * bundled model in eight configurations (issue 8, "Must show"; issue 12 for int8):
 *
 *   GPTQ w4 g128 (HF-GPTQ folder), AWQ w4 g128 (AutoAWQ folder),
 *   AWQ+GPTQ w4 g128 (`awq --then gptq`, HF-GPTQ folder), GPTQ w4 g32 sym → Q4_0 (`--format gguf`),
 *   int8 (bitsandbytes folder) with default settings, --threshold 0, --static-outliers and
 *   --quantize-lm-head.
 *
 *   flock -s /tmp/qllm-cpu.lock npx tsx eval/output-checksums.ts [--label before] [--write] [--only int8]
 *
 * Runs the real CLI (bin/quantize-llm.js) in child processes; the GPTQ/AWQ runs with one
 * thread and a small calibration set (16 windows × 128 tokens) so a full run takes a few
 * minutes, the int8 runs with the CLI's defaults (only --no-eval: the evaluation writes no
 * file). `--only TEXT` runs just the configurations whose name contains TEXT.
 * quant-report.json holds wall-clock seconds and absolute paths, so it is hashed with every
 * "seconds" field removed and paths made relative to the checkout, on its own line (it is
 * not a model file; its settings part also changes when settings gain a field). With --write the table is
 * written to eval/reports/output-checksums.md, under the given label (a section per
 * label; an existing section of the same label is replaced).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { label: { type: "string" }, write: { type: "boolean" }, only: { type: "string" } } });
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "bin", "quantize-llm.js");
const work = mkdtempSync(join(tmpdir(), "qllm-checksums-"));
const COMMON = ["--no-eval", "--threads", "1", "--calib-samples", "16", "--calib-seqlen", "128"];

const RUNS: { name: string; out: string; args: string[]; common?: string[] }[] = [
  { name: "GPTQ w4 g128 (HF-GPTQ)", out: "gptq-w4g128", args: ["gptq", "--bits", "4", "--group-size", "128"] },
  { name: "AWQ w4 g128 (AutoAWQ GEMM)", out: "awq-w4g128", args: ["awq", "--bits", "4", "--group-size", "128"] },
  { name: "AWQ+GPTQ w4 g128 (HF-GPTQ)", out: "awq-gptq-w4g128", args: ["awq", "--then", "gptq", "--bits", "4", "--group-size", "128"] },
  { name: "GPTQ w4 g32 sym → Q4_0 GGUF", out: "gptq-w4g32.gguf", args: ["gptq", "--bits", "4", "--group-size", "32", "--sym", "--format", "gguf"] },
  { name: "int8 default (bitsandbytes)", out: "int8", args: ["int8"], common: ["--no-eval"] },
  { name: "int8 --threshold 0 (bitsandbytes)", out: "int8-t0", args: ["int8", "--threshold", "0"], common: ["--no-eval"] },
  { name: "int8 --static-outliers (bitsandbytes)", out: "int8-static", args: ["int8", "--static-outliers"], common: ["--no-eval"] },
  { name: "int8 --quantize-lm-head (bitsandbytes)", out: "int8-head", args: ["int8", "--quantize-lm-head"], common: ["--no-eval"] },
];

const sha = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");
function files(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).sort().flatMap((f) => files(join(path, f)));
}
/** The report without wall-clock times, and with paths relative to the checkout (so two checkouts compare). */
function stripSeconds(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripSeconds);
  if (typeof v === "string" && v.startsWith(root)) return `<root>/${relative(root, v)}`;
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).filter(([k]) => k !== "seconds").map(([k, x]) => [k, stripSeconds(x)]));
  }
  return v;
}

const lines: string[] = [];
for (const r of RUNS.filter((x) => values.only === undefined || x.name.includes(values.only))) {
  const out = join(work, r.out);
  const common = r.common ?? COMMON;
  const t0 = performance.now();
  execFileSync(process.execPath, [bin, ...r.args, ...common, "-o", out], { cwd: work, stdio: ["ignore", "ignore", "inherit"] });
  console.error(`${r.name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const written = [...files(out), ...(existsSync(`${out}.quant-report.json`) ? [`${out}.quant-report.json`] : [])];
  lines.push(`### ${r.name}`, "", "```", `quantize-llm ${r.args.join(" ")} ${common.join(" ")}`, "```", "", "| file | bytes | sha256 |", "|---|---:|---|");
  for (const f of written) {
    const name = relative(work, f);
    const buf = readFileSync(f);
    if (name.endsWith("quant-report.json")) {
      lines.push(`| ${name} (seconds removed) | — | ${sha(JSON.stringify(stripSeconds(JSON.parse(buf.toString("utf8")))))} |`);
    } else {
      lines.push(`| ${name} | ${buf.length} | ${sha(buf)} |`);
    }
  }
  lines.push("");
}
rmSync(work, { recursive: true, force: true });

/** HEAD of the checkout, or "no git" for an exported copy (e.g. a `git archive` of the commit before a change). */
function headCommit(): string {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
  } catch {
    return "no git";
  }
}
const commit = headCommit();
const label = values.label ?? commit;
const section = `## ${label} (commit ${commit})\n\n${lines.join("\n")}`;
console.log(section);
if (values.write) {
  const report = join(root, "eval", "reports", "output-checksums.md");
  const head = "# Output checksums of the bundled model\n\nWritten by `eval/output-checksums.ts`; identical model-file hashes across sections prove a refactor kept outputs byte-identical.\n\n";
  const old = existsSync(report) ? readFileSync(report, "utf8") : head;
  const sections = old.slice(old.indexOf("## ") >= 0 ? old.indexOf("## ") : old.length).split(/(?=^## )/m).filter((s) => s.trim() && !s.startsWith(`## ${label} (`));
  writeFileSync(report, head + [...sections.map((s) => s.trimEnd() + "\n\n"), section].join(""));
}

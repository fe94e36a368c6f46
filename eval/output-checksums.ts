/**
 * Byte-identity proof for refactors: sha256 of every file the CLI writes for the
 * bundled model in four configurations (issue 8, "Must show"):
 *
 *   GPTQ w4 g128 (HF-GPTQ folder), AWQ w4 g128 (AutoAWQ folder),
 *   AWQ+GPTQ w4 g128 (`awq --then gptq`, HF-GPTQ folder), GPTQ w4 g32 sym → Q4_0 (`--format gguf`).
 *
 *   flock -s /tmp/qllm-cpu.lock npx tsx eval/output-checksums.ts [--label before] [--write]
 *
 * Runs the real CLI (bin/quantize-llm.js) in child processes, one thread, a small
 * calibration set (16 windows × 128 tokens) so a full run takes a few minutes.
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

const { values } = parseArgs({ options: { label: { type: "string" }, write: { type: "boolean" } } });
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "bin", "quantize-llm.js");
const work = mkdtempSync(join(tmpdir(), "qllm-checksums-"));
const COMMON = ["--no-eval", "--threads", "1", "--calib-samples", "16", "--calib-seqlen", "128"];

const RUNS: { name: string; out: string; args: string[] }[] = [
  { name: "GPTQ w4 g128 (HF-GPTQ)", out: "gptq-w4g128", args: ["gptq", "--bits", "4", "--group-size", "128"] },
  { name: "AWQ w4 g128 (AutoAWQ GEMM)", out: "awq-w4g128", args: ["awq", "--bits", "4", "--group-size", "128"] },
  { name: "AWQ+GPTQ w4 g128 (HF-GPTQ)", out: "awq-gptq-w4g128", args: ["awq", "--then", "gptq", "--bits", "4", "--group-size", "128"] },
  { name: "GPTQ w4 g32 sym → Q4_0 GGUF", out: "gptq-w4g32.gguf", args: ["gptq", "--bits", "4", "--group-size", "32", "--sym", "--format", "gguf"] },
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
for (const r of RUNS) {
  const out = join(work, r.out);
  const t0 = performance.now();
  execFileSync(process.execPath, [bin, ...r.args, ...COMMON, "-o", out], { cwd: work, stdio: ["ignore", "ignore", "inherit"] });
  console.error(`${r.name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const written = [...files(out), ...(existsSync(`${out}.quant-report.json`) ? [`${out}.quant-report.json`] : [])];
  lines.push(`### ${r.name}`, "", "```", `quantize-llm ${r.args.join(" ")} ${COMMON.join(" ")}`, "```", "", "| file | bytes | sha256 |", "|---|---:|---|");
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

const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root }).toString().trim();
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

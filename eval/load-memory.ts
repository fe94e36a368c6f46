/**
 * Resident memory and load time of a loaded model: packed (the runtime layouts) vs the
 * dequantized f32 path, each in a fresh child process so RSS starts clean.
 *
 *   npx tsx eval/load-memory.ts [--dir /tmp/qllm-tinyllama] [--models gptq-w4g128,q4_0.gguf]
 *                               [--modes packed,f32] [--reps 2] [--ctx 2048] [--write]
 *
 * Per (model, mode): file size, RSS before loading (node + addon + libraries), RSS after
 * loading, after one forward token with a KV cache of --ctx positions, the packed bytes
 * the backend reports, and the load time (median and min over --reps runs, after one
 * unrecorded run that warms the page cache; RSS columns are the median run's). Target (issue 9): RSS after load − baseline < file size + 200 MB and
 * load < 2 s warm. `--write` writes eval/reports/load-memory.md. Generate the models with
 * eval/gen-tinyllama.ts first.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MiB = 2 ** 20;

interface Sample {
  model: string; mode: string; fileBytes: number; rssBase: number; rssLoaded: number; rssForward: number;
  packedBytes: number; f32Bytes: number; loadSeconds: number; kernelPath: string; threads: number;
  /** parent only: the fastest of the reps */
  minSeconds?: number;
}

function fileBytes(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).filter((f) => f.endsWith(".safetensors")).reduce((s, f) => s + statSync(join(path, f)).size, 0);
}

/** Child: load once, print one JSON line. */
async function child(model: string, mode: "packed" | "f32", ctx: number): Promise<void> {
  const { selectBackend } = await import("../src/index.ts");
  const { loadModel } = await import("../src/load/hf-folder.ts");
  const { describeKernelPath, weightBytes } = await import("../src/load/kernel-path.ts");
  const backend = selectBackend({ backend: "native" });
  const rssBase = process.memoryUsage().rss;
  const t0 = performance.now();
  const loaded = await loadModel(model, backend, { weights: mode });
  const loadSeconds = (performance.now() - t0) / 1000;
  const rssLoaded = process.memoryUsage().rss;
  const cache = loaded.model.newCache(ctx);
  loaded.model.forward([1], cache, { logits: "last" });
  const rssForward = process.memoryUsage().rss;
  const wb = weightBytes(loaded.model);
  const s: Sample = {
    model, mode, fileBytes: fileBytes(model), rssBase, rssLoaded, rssForward, packedBytes: wb.packed, f32Bytes: wb.f32,
    loadSeconds, kernelPath: describeKernelPath(loaded.model), threads: backend.threads,
  };
  process.stdout.write(JSON.stringify(s) + "\n");
}

function parent(): void {
  const { values } = parseArgs({
    options: { dir: { type: "string" }, models: { type: "string" }, modes: { type: "string" }, reps: { type: "string" }, ctx: { type: "string" }, write: { type: "boolean" } },
    strict: true,
  });
  const dir = resolve(values.dir ?? "/tmp/qllm-tinyllama");
  const models = (values.models ?? "gptq-w4g128,q4_0.gguf").split(",").map((m) => join(dir, m));
  const modes = (values.modes ?? "packed,f32").split(",");
  const reps = Number(values.reps ?? 3), ctx = Number(values.ctx ?? 2048);
  const rows: Sample[] = [];
  const load0 = loadavg().map((x) => x.toFixed(2)).join(" ");
  for (const model of models) {
    for (const mode of modes) {
      const runs: Sample[] = [];
      for (let r = -1; r < reps; r++) { // r = −1: page-cache warm-up, not recorded
        const out = execFileSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--child", model, mode, String(ctx)], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 24 });
        const s = JSON.parse(out.trim().split("\n").pop()!) as Sample;
        process.stderr.write(`  ${model} ${mode} run ${r + 1}: load ${s.loadSeconds.toFixed(2)} s, RSS +${((s.rssLoaded - s.rssBase) / MiB).toFixed(0)} MiB\n`);
        if (r >= 0) runs.push(s);
      }
      runs.sort((a, b) => a.loadSeconds - b.loadSeconds);
      rows.push({ ...runs[(runs.length - 1) >> 1]!, minSeconds: runs[0]!.loadSeconds });
    }
  }
  const f = (b: number): string => (b / MiB).toFixed(0);
  const lines = [
    `| model | weights | file MiB | RSS base MiB | RSS after load − base | − file size | after 1 token (KV ${ctx}) − base | packed MiB | f32 MiB | load s (warm, median) | min |`,
    "|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map((s) => `| ${s.model.split("/").pop()} | ${s.mode} | ${f(s.fileBytes)} | ${f(s.rssBase)} | ${f(s.rssLoaded - s.rssBase)} | ${f(s.rssLoaded - s.rssBase - s.fileBytes)} | ${f(s.rssForward - s.rssBase)} | ${f(s.packedBytes)} | ${f(s.f32Bytes)} | ${s.loadSeconds.toFixed(2)} | ${(s.minSeconds ?? s.loadSeconds).toFixed(2)} |`),
  ];
  const paths = [...new Set(rows.map((s) => `- ${s.model.split("/").pop()} (${s.mode}): ${s.kernelPath}`))];
  let commit = "unknown";
  try { commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim(); } catch { /* not a git checkout */ }
  const head = [`commit ${commit}, ${new Date().toISOString()}, loadavg at start ${load0}, native backend ${rows[0]?.threads ?? "?"} threads, load time median of ${reps} runs after a page-cache warm-up run`];
  const text = [...head, "", ...lines, "", "Kernel paths:", ...paths].join("\n");
  process.stdout.write(text + "\n");
  if (values.write) {
    const report = [
      "# Load time and resident memory of packed models", "",
      `\`npx tsx eval/load-memory.ts ${process.argv.slice(2).join(" ")}\` (run under /work/bin/bench; models from \`npx tsx eval/gen-tinyllama.ts\`: TinyLlama-1.1B shapes, random weights).`,
      "RSS base = the process before loading (Node, the addon, the tokenizer library). Target: RSS after load − base < file size + 200 MB; load < 2 s warm.", "",
      text, "",
    ].join("\n");
    writeFileSync(join(ROOT, "eval", "reports", "load-memory.md"), report);
  }
}

const argv = process.argv.slice(2);
if (argv[0] === "--child") await child(argv[1]!, argv[2] as "packed" | "f32", Number(argv[3]));
else parent();
void readFileSync;

/**
 * Time and peak RSS of `quantize-llm gptq | awq | rtn` on Llama-2-7B-shaped models (README
 * "Your own model"; issue 10): generated models of that shape with FEW layers
 * (`npx tsx eval/gen-tinyllama.ts --shape llama2-7b --layers N --only bf16`), from which a
 * 32-layer run is extrapolated: one run per (model, method, calibration), the CLI in a child
 * process (--json: wall seconds and getrusage peak RSS), the per-block seconds read from its
 * quant-report.json. Results accumulate in --results (JSON) so each run can be its own short
 * benchmark window; --report writes the table from them.
 *
 *   /work/bin/bench npx tsx eval/own-model-7b.ts --model /tmp/qllm-ten/l7b-1/bf16 --method gptq --calib-samples 4
 *   npx tsx eval/own-model-7b.ts --report [--write]
 *
 * Extrapolation (what the report states): per-layer time = t(2 layers) − t(1 layer) at the
 * same calibration; the calibration-dependent part of a layer (forwards, Hessians, AWQ's
 * search) grows linearly with calibration tokens, measured from two calibration sizes on the
 * 1-layer model; 32 layers = t(1 layer) + 31 · per-layer.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BUNDLED_CALIB_TEXT } from "../src/load/paths.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string" }, method: { type: "string" }, "calib-samples": { type: "string" }, "calib-seqlen": { type: "string" },
    results: { type: "string" }, report: { type: "boolean" }, write: { type: "boolean" }, work: { type: "string" },
  }, strict: true,
});
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const resultsFile = resolve(values.results ?? "/tmp/qllm-ten/own-model-7b.json");

interface Run {
  model: string; layers: number; method: string; samples: number; seqlen: number;
  seconds: number; peakRssMB: number; blockSeconds: number[]; load: string; commit: string; when: string;
}
const runs: Run[] = existsSync(resultsFile) ? (JSON.parse(readFileSync(resultsFile, "utf8")) as Run[]) : [];

if (values.model !== undefined) {
  const model = resolve(values.model), method = values.method ?? "gptq";
  const layers = (JSON.parse(readFileSync(join(model, "config.json"), "utf8")) as { num_hidden_layers: number }).num_hidden_layers;
  const samples = method === "rtn" ? 0 : Number(values["calib-samples"] ?? 4), seqlen = Number(values["calib-seqlen"] ?? 512);
  const out = resolve(values.work ?? "/tmp/qllm-ten/own-7b-out");
  rmSync(out, { recursive: true, force: true });
  const calib = method === "rtn" ? [] : ["--calib-text", BUNDLED_CALIB_TEXT, "--calib-samples", String(samples), "--calib-seqlen", String(seqlen)];
  const load = execFileSync("uptime").toString().trim();
  const r = spawnSync(process.execPath, [join(root, "bin", "quantize-llm.js"), method, model, "-o", out, "--bits", "4", "--group-size", "128", ...calib, "--no-eval", "--json"],
    { encoding: "utf8", maxBuffer: 64 * 2 ** 20, stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`${method} failed (exit ${r.status})`);
  const summary = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { peakRssMB: number; seconds: number };
  const report = JSON.parse(readFileSync(join(out, "quant-report.json"), "utf8")) as { layers: { block: number; seconds: number }[] };
  const blockSeconds = Array.from({ length: layers }, (_, b) => report.layers.filter((l) => l.block === b).reduce((s, l) => s + l.seconds, 0));
  rmSync(out, { recursive: true, force: true });
  const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root }).toString().trim();
  const run: Run = { model, layers, method, samples, seqlen, seconds: summary.seconds, peakRssMB: summary.peakRssMB, blockSeconds, load, commit, when: new Date().toISOString().slice(0, 16) + "Z" };
  const keep = runs.filter((x) => !(x.model === model && x.method === method && x.samples === samples && x.seqlen === seqlen));
  writeFileSync(resultsFile, JSON.stringify([...keep, run], null, 1));
  console.log(`${method} ${layers} layer(s), ${samples}×${seqlen}: ${summary.seconds.toFixed(1)} s, peak RSS ${summary.peakRssMB} MiB (${load})`);
}

if (values.report) {
  const find = (method: string, layers: number, samples: number): Run | undefined => runs.find((r) => r.method === method && r.layers === layers && r.samples === samples);
  const H = 4096, DEFAULT = { samples: 128, seqlen: 512 };
  const lines = [
    "# Llama-2-7B-shaped quantization: time and peak RSS",
    "",
    "Written by `eval/own-model-7b.ts --report` from runs of `/work/bin/bench npx tsx eval/own-model-7b.ts --model DIR --method M [--calib-samples N]` " +
      "on generated models with Llama-2-7B shapes (hidden 4096, 32 heads, 32 KV heads, ffn 11008, vocab 32000; random BF16 weights; " +
      "`npx tsx eval/gen-tinyllama.ts --shape llama2-7b --layers N --only bf16`) with 1, 2 and 3 layers, 4-bit g128, 2 threads, calibration windows of 512 tokens " +
      "from the bundled text. Wall time and peak RSS (getrusage) of the whole CLI process.",
    "",
    "| method | layers | calibration | wall (s) | per block (s) | peak RSS (MiB) | load at start | commit |",
    "|---|---:|---|---:|---|---:|---|---|",
    ...runs.slice().sort((a, b) => a.method.localeCompare(b.method) || a.samples - b.samples || a.layers - b.layers).map((r) =>
      `| ${r.method} | ${r.layers} | ${r.samples === 0 ? "none" : `${r.samples} × ${r.seqlen}`} | ${r.seconds.toFixed(1)} | ${r.blockSeconds.map((s) => s.toFixed(1)).join(", ")} | ${r.peakRssMB} | ${r.load.replace(/^.*load average: /, "")} | ${r.commit} |`),
    "",
    "## Extrapolated to 32 layers",
    "",
    `per layer = wall(2 layers) − wall(1 layer); calibration-dependent part per layer and per window from two calibration sizes on the 1-layer model; ` +
      `32 layers at the default calibration (${DEFAULT.samples} × ${DEFAULT.seqlen}) = wall(1 layer) + 31 · per layer, both scaled to ${DEFAULT.samples} windows. ` +
      `Peak RSS at the default calibration adds the calibration activations the smaller run did not hold: X and the next block's X, ` +
      `2 · (${DEFAULT.samples} − n) · ${DEFAULT.seqlen} · ${H} · 4 bytes.`,
    "",
    "| method | measured calibration | per layer (s) | 32 layers, measured calibration (min) | per window per layer (s) | 32 layers, 128 × 512 (h) | peak RSS 1 → 2 layers (MiB) | peak RSS at 128 × 512 (GiB) |",
    "|---|---|---:|---:|---:|---:|---|---:|",
  ];
  for (const method of ["rtn", "gptq", "awq"]) {
    const samples = [...new Set(runs.filter((r) => r.method === method && r.layers === 2).map((r) => r.samples))].sort((a, b) => a - b)[0];
    if (samples === undefined) continue;
    const one = find(method, 1, samples), two = find(method, 2, samples);
    if (!one || !two) continue;
    const perLayer = two.seconds - one.seconds;
    const t32 = one.seconds + 31 * perLayer;
    const bigger = runs.filter((r) => r.method === method && r.layers === 1 && r.samples > samples).sort((a, b) => b.samples - a.samples)[0];
    let perWindow = NaN, t32def = NaN;
    if (method !== "rtn" && bigger) {
      perWindow = (bigger.seconds - one.seconds) / (bigger.samples - samples); // per window, for the 1-layer model (≈ per layer: one block)
      const fixedLayer = perLayer - perWindow * samples;
      const oneDef = one.seconds + perWindow * (DEFAULT.samples - samples);
      t32def = oneDef + 31 * (fixedLayer + perWindow * DEFAULT.samples);
    }
    const extraAct = method === "rtn" ? 0 : 2 * (DEFAULT.samples - samples) * DEFAULT.seqlen * H * 4;
    lines.push(`| ${method} | ${samples === 0 ? "none" : `${samples} × ${one.seqlen}`} | ${perLayer.toFixed(1)} | ${(t32 / 60).toFixed(1)} | ${Number.isNaN(perWindow) ? "—" : perWindow.toFixed(2)} | ` +
      `${method === "rtn" ? (t32 / 3600).toFixed(3) : Number.isNaN(t32def) ? "—" : (t32def / 3600).toFixed(1)} | ${one.peakRssMB} → ${two.peakRssMB} | ${((Math.max(one.peakRssMB, two.peakRssMB) * 2 ** 20 + extraAct) / 2 ** 30).toFixed(2)} |`);
  }
  lines.push("");
  console.log(lines.join("\n"));
  if (values.write) writeFileSync(join(root, "eval", "reports", "own-model-7b.md"), lines.join("\n"));
}

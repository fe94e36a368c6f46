/**
 * Throughput of the paths that touch every weight once (issue 10): GB/s of INPUT weights
 * (the bytes of the checkpoint's tensors) for
 *
 *   rtn      plain folder → HF-GPTQ folder (4-bit, g128, sym; quantizeModel, no calibration)
 *   export   plain folder → GGUF f16, q4_0, q8_0 (export/gguf.ts, export/gguf-quant.ts)
 *   load     loadModel of the plain folder on the native backend (16-bit packed weights)
 *
 * one run each, in this process, on a TinyLlama-1.1B-shaped model (eval/gen-tinyllama.ts;
 * default the coordinator's /tmp/qllm-tinyllama/bf16, read only). The input file is read
 * once first so every path starts from the page cache (a cold read is the disk's speed, not
 * ours); outputs go under --work and are deleted after each path. Target: ≥ 0.5 GB/s each.
 *
 *   /work/bin/bench npx tsx eval/bench-throughput.ts [--model DIR]... [--work /tmp/qllm-bench] [--write]
 *
 * --model may be given twice (e.g. a BF16 and an F16 folder); --write puts the table in
 * eval/reports/bench-throughput.md.
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createNativeBackend } from "../src/backend/native.ts";
import { defaultThreads } from "../src/backend/select.ts";
import { exportGguf } from "../src/export/gguf.ts";
import { exportQuantizedGguf } from "../src/export/gguf-quant.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT } from "../src/load/paths.ts";
import { quantizeModel } from "../src/quantize/pipeline.ts";

const { values } = parseArgs({ options: { model: { type: "string", multiple: true }, work: { type: "string" }, write: { type: "boolean" } }, strict: true });
const models = (values.model ?? ["/tmp/qllm-tinyllama/bf16"]).map((m) => resolve(m));
const work = resolve(values.work ?? "/tmp/qllm-bench");
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const TARGET = 0.5;
const backend = createNativeBackend({ threads: defaultThreads() });

/** Bytes of every tensor in the checkpoint (the input weights), and its dtypes. */
async function inputWeights(dir: string): Promise<{ bytes: number; dtypes: string }> {
  const ckpt = await openCheckpoint(dir);
  try {
    let bytes = 0;
    const dtypes = new Set<string>();
    for (const n of ckpt.names()) {
      const i = ckpt.info(n);
      bytes += i.shape.reduce((a, b) => a * b, 1) * (i.dtype === "F32" ? 4 : 2);
      dtypes.add(i.dtype);
    }
    return { bytes, dtypes: [...dtypes].join("/") };
  } finally { await ckpt.close(); }
}

/** Read every .safetensors file once (into the page cache). */
function warm(dir: string): void {
  const buf = Buffer.allocUnsafe(64 << 20);
  for (const f of readdirSync(dir).filter((f) => f.endsWith(".safetensors"))) {
    const fd = openSync(join(dir, f), "r");
    try { while (readSync(fd, buf, 0, buf.length, null) > 0) { /* read */ } } finally { closeSync(fd); }
  }
}

const size = (p: string): number => (statSync(p).isDirectory() ? readdirSync(p).reduce((s, f) => s + size(join(p, f)), 0) : statSync(p).size);

interface Row { model: string; path: string; seconds: number; inBytes: number; outBytes: number }
const rows: Row[] = [];

async function time(model: string, path: string, inBytes: number, out: string | null, run: () => Promise<void>): Promise<void> {
  const t0 = performance.now();
  await run();
  const seconds = (performance.now() - t0) / 1000;
  const outBytes = out !== null ? size(out) : 0;
  if (out !== null) rmSync(out, { recursive: true, force: true });
  rows.push({ model, path, seconds, inBytes, outBytes });
  process.stderr.write(`${model} ${path}: ${seconds.toFixed(2)} s, ${(inBytes / seconds / 1e9).toFixed(2)} GB/s\n`);
}

const load0 = execFileSync("uptime").toString().trim();
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
for (const dir of models) {
  const { bytes, dtypes } = await inputWeights(dir);
  const name = `${dir.split("/").slice(-2).join("/")} (${dtypes})`;
  warm(dir);
  await time(name, "rtn → HF-GPTQ folder (4-bit g128 sym)", bytes, join(work, "rtn"), async () => {
    await quantizeModel({
      modelDir: dir, outDir: join(work, "rtn"), backend, overwrite: true,
      settings: {
        method: "rtn", bits: 4, groupSize: 128, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
        trueSequential: true, format: "gptq", calibSamples: 0, calibSeqlen: 64, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT,
      },
    });
  });
  await time(name, "export → GGUF f16", bytes, join(work, "f16.gguf"), async () => { await exportGguf(dir, join(work, "f16.gguf"), { type: "f16", backend }); });
  for (const t of ["q4_0", "q8_0"] as const) {
    await time(name, `export → GGUF ${t} (token_embd, output q8_0)`, bytes, join(work, `${t}.gguf`), async () => {
      await exportQuantizedGguf(dir, join(work, `${t}.gguf`), { type: t, backend });
    });
  }
  await time(name, "loadModel (native, 16-bit packed)", bytes, null, async () => {
    const m = await loadModel(dir, backend, { warn: () => {} });
    if (m.weights !== "packed") throw new Error("expected packed weights");
  });
}
rmSync(work, { recursive: true, force: true });
const load1 = execFileSync("uptime").toString().trim();

const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root }).toString().trim();
const gb = (b: number): string => (b / 1e9).toFixed(2);
const lines = [
  "# Throughput of the paths that touch every weight (issue 10)",
  "",
  `\`/work/bin/bench npx tsx eval/bench-throughput.ts${models.map((m) => ` --model ${m}`).join("")} --write\`, commit ${commit}, ` +
    `${backend.threads} threads, ${new Date().toISOString().slice(0, 16)}Z. TinyLlama-1.1B-shaped models from eval/gen-tinyllama.ts (random weights); ` +
    "one run per path, in one process, input file in the page cache (read once before), outputs written to the same disk (fsync included) and deleted after each path. " +
    `GB/s = input weight bytes / wall seconds (1 GB = 10⁹ B); target ≥ ${TARGET} GB/s.`,
  "",
  `Load before: \`${load0}\`; after: \`${load1}\`.`,
  "",
  "| model | path | input weights (GB) | output (GB) | seconds | GB/s of input | ≥ target |",
  "|---|---|---:|---:|---:|---:|:---:|",
  ...rows.map((r) => `| ${r.model} | ${r.path} | ${gb(r.inBytes)} | ${r.outBytes > 0 ? gb(r.outBytes) : "—"} | ${r.seconds.toFixed(2)} | ${(r.inBytes / r.seconds / 1e9).toFixed(2)} | ${r.inBytes / r.seconds / 1e9 >= TARGET ? "yes" : "**no**"} |`),
  "",
];
process.stdout.write(lines.join("\n"));
if (values.write) writeFileSync(join(root, "eval", "reports", "bench-throughput.md"), lines.join("\n"));

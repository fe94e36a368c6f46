/**
 * Throughput of the paths that touch every weight once (issue 10): GB/s of INPUT weights
 * (the bytes of the checkpoint's tensors) for
 *
 *   rtn      plain folder → HF-GPTQ folder (4-bit, g128, sym; quantizeModel, no calibration)
 *   export   plain folder → GGUF f16, q4_0, q8_0 (export/gguf.ts, export/gguf-quant.ts)
 *   load     loadModel of the plain folder on the native backend: the 16-bit linears as row-major
 *            views of the mapped file (the default, --weights16 map; native/LAYOUTS.md "Row-major views")
 *   load-copy  the same with --weights16 copy: every linear copied into the interleaved bf16x16 / f16x16 layout
 *   touch    a host probe, not a product path: first write of 1 GiB of fresh memory (the
 *            ceiling of a path whose output is new memory: loadModel writes ~as many bytes as it reads)
 *
 * one run each, EACH IN A FRESH PROCESS (this script re-runs itself with --child MODEL --path ID,
 * same node flags), so no path's figure depends on what ran before it (heap and gc state,
 * memory an earlier path freed; loadModel used to be timed last, after eight other paths in
 * the same process). The child reads the input file once first so every path
 * starts from the page cache (a cold read is the disk's speed, not ours), then times only the
 * path itself (not node's start, the imports or the backend's creation); outputs go under --work
 * and are deleted after each path. Target: ≥ 0.5 GB/s each. On a TinyLlama-1.1B-shaped model
 * (eval/gen-tinyllama.ts; default the coordinator's /tmp/qllm-tinyllama/bf16, read only).
 *
 *   /work/bin/bench node --import tsx eval/bench-throughput.ts [--model DIR]... [--reps N] [--only load,load-copy] [--work /tmp/qllm-bench] [--write]
 *
 * --model may be given twice (e.g. a BF16 and an F16 folder); --reps N runs every path N times
 * (each in its own process) and reports the median; --only runs just the listed paths; --write
 * puts the table in eval/reports/bench-throughput.md. The load paths also report the process's
 * resident memory after the load (RssAnon: its own pages; RssFile: mapped file pages, which the
 * page cache holds and shares).
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
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

const { values } = parseArgs({
  options: {
    model: { type: "string", multiple: true }, work: { type: "string" }, write: { type: "boolean" },
    reps: { type: "string" }, child: { type: "string" }, path: { type: "string" }, only: { type: "string" },
  },
  strict: true,
});
const work = resolve(values.work ?? "/tmp/qllm-bench");
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const TARGET = 0.5;

/** The timed paths, in report order: id (for --path) → label. */
const PATHS = [
  ["rtn", "rtn → HF-GPTQ folder (4-bit g128 sym)"],
  ["f16", "export → GGUF f16"],
  ["q4_0", "export → GGUF q4_0 (token_embd, output q8_0)"],
  ["q8_0", "export → GGUF q8_0 (token_embd, output q8_0)"],
  ["load", "loadModel (native, 16-bit views of the mapped file: --weights16 map, the default)"],
  ["load-copy", "loadModel (native, 16-bit packed copy: --weights16 copy)"],
  ["touch", "host probe: first touch of 1 GiB of fresh memory (not a product path)"],
] as const;
/** Bytes the touch probe writes: fresh anonymous memory, as loadModel's packed weights are. */
const TOUCH_BYTES = 2 ** 30;
type PathId = (typeof PATHS)[number][0];

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

/** Child: run one path on one model, print {seconds, outBytes} as the last stdout line. */
async function child(dir: string, id: PathId): Promise<void> {
  const backend = createNativeBackend({ threads: defaultThreads() });
  const out = { rtn: join(work, "rtn"), f16: join(work, "f16.gguf"), q4_0: join(work, "q4_0.gguf"), q8_0: join(work, "q8_0.gguf"), load: null, "load-copy": null, touch: null }[id];
  if (out !== null) rmSync(out, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  warm(dir);
  const t0 = performance.now(), c0 = process.cpuUsage();
  if (id === "rtn") {
    await quantizeModel({
      modelDir: dir, outDir: join(work, "rtn"), backend, overwrite: true,
      settings: {
        method: "rtn", bits: 4, groupSize: 128, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
        trueSequential: true, format: "gptq", calibSamples: 0, calibSeqlen: 64, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT,
      },
    });
  } else if (id === "f16") {
    await exportGguf(dir, join(work, "f16.gguf"), { type: "f16", backend });
  } else if (id === "q4_0" || id === "q8_0") {
    await exportQuantizedGguf(dir, join(work, `${id}.gguf`), { type: id, backend });
  } else if (id === "touch") {
    // The host's rate for memory no process has touched yet (the kernel zeroes each page on its
    // first write; on a VM that hands freed memory back to its hypervisor this is far below DRAM
    // bandwidth): the ceiling of any path that writes its output into new memory, as loadModel does.
    const a = new Uint8Array(TOUCH_BYTES);
    a.fill(1);
    if (a[TOUCH_BYTES - 1] !== 1) throw new Error("touch probe: fill did not reach the end");
  } else {
    const m = await loadModel(dir, backend, { warn: () => {}, weights16: id === "load" ? "map" : "copy" });
    if (m.weights !== "packed") throw new Error("expected packed weights");
  }
  const seconds = (performance.now() - t0) / 1000, cpu = process.cpuUsage(c0);
  const status = readFileSync("/proc/self/status", "utf8");
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? NaN) * 1024;
  const outBytes = out !== null ? size(out) : 0;
  if (out !== null) rmSync(out, { recursive: true, force: true });
  process.stdout.write(`\n${JSON.stringify({ seconds, user: cpu.user / 1e6, sys: cpu.system / 1e6, outBytes, threads: backend.threads, rssAnon: kb("RssAnon"), rssFile: kb("RssFile") })}\n`);
}

if (values.child !== undefined) {
  const id = PATHS.find(([i]) => i === values.path)?.[0];
  if (id === undefined) throw new Error(`--path must be one of ${PATHS.map(([i]) => i).join(", ")} (got ${values.path ?? "nothing"})`);
  await child(resolve(values.child), id);
  process.exit(0);
}

const models = (values.model ?? ["/tmp/qllm-tinyllama/bf16"]).map((m) => resolve(m));
interface Run { seconds: number; user: number; sys: number; outBytes: number; threads: number; rssAnon: number; rssFile: number }
interface Row { model: string; path: string; inBytes: number; runs: Run[] }
const reps = Number(values.reps ?? "1");
const only = values.only === undefined ? null : values.only.split(",");
for (const id of only ?? []) if (!PATHS.some(([i]) => i === id)) throw new Error(`--only: unknown path ${id}; known: ${PATHS.map(([i]) => i).join(", ")}`);
const gb = (b: number): string => (b / 1e9).toFixed(2);
if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be an integer ≥ 1 (got ${values.reps})`);
const rows: Row[] = [];
let threads = 0;
const load0 = execFileSync("uptime").toString().trim();
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
// Rep-major (every path once, then again): a slow phase of the host spreads over paths instead of hitting one.
for (let rep = 0; rep < reps; rep++) {
  for (const dir of models) {
    const { bytes, dtypes } = await inputWeights(dir);
    const name = `${dir.split("/").slice(-2).join("/")} (${dtypes})`;
    for (const [id, label] of PATHS) {
      if (only !== null && !only.includes(id)) continue;
      // Fresh process, same node flags (--import tsx) as this one.
      const stdout = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "--child", dir, "--path", id, "--work", work], {
        stdio: ["ignore", "pipe", "inherit"], maxBuffer: 16 << 20,
      }).toString().trim().split("\n");
      const r = JSON.parse(stdout[stdout.length - 1]!) as Run;
      threads = r.threads;
      let row = rows.find((x) => x.model === name && x.path === label);
      if (row === undefined) rows.push((row = { model: name, path: label, inBytes: id === "touch" ? TOUCH_BYTES : bytes, runs: [] }));
      row.runs.push(r);
      const rss = id.startsWith("load") ? `, RSS after: anon ${gb(r.rssAnon)} GB, file ${gb(r.rssFile)} GB` : "";
      process.stderr.write(`${name} ${label}: ${r.seconds.toFixed(2)} s (user ${r.user.toFixed(2)}, sys ${r.sys.toFixed(2)}), ${(row.inBytes / r.seconds / 1e9).toFixed(2)} GB/s${rss}\n`);
    }
  }
}
rmSync(work, { recursive: true, force: true });
const load1 = execFileSync("uptime").toString().trim();

/** The run of median wall time (the lower middle one for an even count). */
const median = (runs: Run[]): Run => [...runs].sort((x, y) => x.seconds - y.seconds)[Math.floor((runs.length - 1) / 2)]!;
const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root }).toString().trim();
const rate = (r: Row, run: Run): number => r.inBytes / run.seconds / 1e9;
const lines = [
  "# Throughput of the paths that touch every weight (issue 10)",
  "",
  `\`/work/bin/bench node --import tsx eval/bench-throughput.ts${models.map((m) => ` --model ${m}`).join("")}${reps > 1 ? ` --reps ${reps}` : ""}${only !== null ? ` --only ${only.join(",")}` : ""} --write\`, commit ${commit}, ` +
    `${threads} threads, ${new Date().toISOString().slice(0, 16)}Z. TinyLlama-1.1B-shaped models from eval/gen-tinyllama.ts (random weights); ` +
    `${reps} run${reps > 1 ? "s" : ""} per path (median shown${reps > 1 ? ", all runs' GB/s in the last column" : ""}), each in a fresh process (timed inside it: node's start, the imports and the backend's creation not counted), ` +
    "input file in the page cache (read once before, in that process), outputs written to the same disk (fsync included) and deleted after each path. " +
    `GB/s = input weight bytes / wall seconds (1 GB = 10⁹ B); target ≥ ${TARGET} GB/s. user / sys: the process's CPU seconds in the timed part (sys is the kernel's: page-cache reads and copies, zeroing fresh pages).`,
  "",
  `Load before: \`${load0}\`; after: \`${load1}\`.`,
  "",
  `| model | path | input weights (GB) | output (GB) | seconds | user / sys CPU s | GB/s of input | ≥ target | RSS after, anon / file (GB) |${reps > 1 ? " runs (GB/s) |" : ""}`,
  `|---|---|---:|---:|---:|---:|---:|:---:|---:|${reps > 1 ? "---|" : ""}`,
  ...rows.map((r) => {
    const m = median(r.runs);
    return `| ${r.model} | ${r.path} | ${gb(r.inBytes)} | ${m.outBytes > 0 ? gb(m.outBytes) : "—"} | ${m.seconds.toFixed(2)} | ${m.user.toFixed(2)} / ${m.sys.toFixed(2)} | ` +
      `${rate(r, m).toFixed(2)} | ${r.path.startsWith("host probe") ? "—" : rate(r, m) >= TARGET ? "yes" : "**no**"} | ${r.path.startsWith("loadModel") ? `${gb(m.rssAnon)} / ${gb(m.rssFile)}` : "—"} |${reps > 1 ? ` ${r.runs.map((x) => rate(r, x).toFixed(2)).join(", ")} |` : ""}`;
  }),
  "",
];
process.stdout.write(lines.join("\n"));
if (values.write) writeFileSync(join(root, "eval", "reports", "bench-throughput.md"), lines.join("\n"));

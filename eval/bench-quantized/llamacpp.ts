/**
 * llama.cpp's matmul alone, measured through ggml-harness.c (see its header): the
 * prebuilt ggml libraries node-llama-cpp ships, so the kernels are exactly the ones
 * users of node-llama-cpp run (including its per-CPU variant choice), not a build
 * of ours with other flags.
 *
 * Why a harness rather than a model through node-llama-cpp: a model-level number
 * mixes attention, norms and graph overhead into the ratio; the targets are
 * per matmul (GEMV per shape, GEMM M=512). The end-to-end section of this benchmark
 * (i9-integrate) compares whole models through node-llama-cpp.
 *
 * Building it needs the ggml headers: they come from the llama.cpp source bundled
 * with node-llama-cpp (llama/gitRelease.bundle, cloned once into the temp dir).
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { DependencyError } from "../../src/util/errors.ts";

const HARNESS_SRC = join(import.meta.dirname, "ggml-harness.c");

/** Where node-llama-cpp's prebuilt CPU binaries for this platform are. */
export function ggmlBinsDir(): string {
  const require = createRequire(import.meta.url);
  const pkg = `@node-llama-cpp/${process.platform}-${process.arch}`;
  // The package's exports hide package.json: look for the folder on the resolution paths.
  const root = (require.resolve.paths(pkg) ?? []).map((p) => join(p, pkg)).find((d) => existsSync(join(d, "bins")));
  if (root === undefined) {
    throw new DependencyError("node-llama-cpp's prebuilt binaries are not installed", {
      field: pkg, expected: "the optional platform package of node-llama-cpp", found: "not resolvable",
      hint: "run `npm ci` (node-llama-cpp is a dev dependency)",
    });
  }
  const bins = join(root, "bins");
  const dir = readdirSync(bins).map((d) => join(bins, d)).find((d) => existsSync(join(d, "libggml-base.so")));
  if (dir === undefined) throw new DependencyError("no libggml-base.so under node-llama-cpp's bins", { file: bins, hint: "reinstall node-llama-cpp" });
  return dir;
}

/** Compiles the harness (once per bins dir) and returns its path. */
export function buildHarness(bins: string): string {
  const work = join(tmpdir(), "qllm-bench-quantized");
  mkdirSync(work, { recursive: true });
  const src = join(work, "llama.cpp");
  if (!existsSync(join(src, "ggml", "include", "ggml.h"))) {
    const require = createRequire(import.meta.url);
    const pkgDir = (require.resolve.paths("node-llama-cpp") ?? []).map((p) => join(p, "node-llama-cpp")).find((d) => existsSync(join(d, "llama")));
    if (pkgDir === undefined) throw new DependencyError("node-llama-cpp is not installed", { field: "node-llama-cpp", hint: "run `npm ci`" });
    const bundle = join(pkgDir, "llama", "gitRelease.bundle");
    const tmp = `${src}.tmp${process.pid}`;
    execFileSync("git", ["clone", "-q", bundle, tmp], { stdio: "ignore" });
    renameSync(tmp, src);
  }
  const exe = join(work, "ggml-harness");
  const tmpExe = `${exe}.tmp${process.pid}`;
  execFileSync("gcc", [
    "-O2", "-std=gnu11", HARNESS_SRC, `-I${join(src, "ggml", "include")}`, `-L${bins}`,
    "-l:libggml-base.so", `-l:${readdirSync(bins).find((f) => /^libggml\.v?[\d.]*so$|^libggml\.so/.test(f)) ?? "libggml.so"}`,
    `-Wl,-rpath,${bins}`, "-ldl", "-o", tmpExe,
  ]);
  renameSync(tmpExe, exe);
  return exe;
}

/** One running harness process, driven line by line. */
export class GgmlHarness {
  readonly description: string;
  /** The libggml-cpu-<variant>.so ggml chose for this CPU (from its load log). */
  readonly cpuVariant: string;
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;

  private constructor(proc: ChildProcessWithoutNullStreams, lines: AsyncIterator<string>, description: string, variant: string) {
    this.#proc = proc;
    this.#lines = lines;
    this.description = description;
    this.cpuVariant = variant;
  }

  static async start(threads: number): Promise<GgmlHarness> {
    const bins = ggmlBinsDir();
    const exe = buildHarness(bins);
    const proc = spawn(exe, [bins, String(threads)], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    proc.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    const rl: Interface = createInterface({ input: proc.stdout });
    const lines = rl[Symbol.asyncIterator]();
    const first = (await lines.next()).value as string | undefined;
    if (first === undefined || !first.startsWith("ready")) {
      throw new DependencyError("the ggml harness did not start", { file: exe, expected: "ready", found: `${first}; stderr: ${stderr}` });
    }
    await new Promise((r) => setTimeout(r, 50));
    const variant = /libggml-cpu-([\w-]+)\.so/.exec(stderr)?.[1] ?? "unknown";
    return new GgmlHarness(proc, lines, first.slice(6), variant);
  }

  async #command(line: string): Promise<string> {
    this.#proc.stdin.write(`${line}\n`);
    const r = await this.#lines.next();
    const out = r.value as string | undefined;
    if (out === undefined || out.startsWith("error")) throw new Error(`ggml harness: ${line}: ${out ?? "no answer"}`);
    return out;
  }

  /** Loads `copies` tensors of the given ggml blocks (a file of N rows); returns [bytes per copy, buffer type]. */
  async load(type: "q4_0" | "q8_0", N: number, K: number, copies: number, file: string): Promise<[number, string]> {
    const [, bytes, buft] = (await this.#command(`load ${type} ${N} ${K} ${copies} ${file}`)).split(" ");
    return [Number(bytes), buft ?? "?"];
  }

  /** Wall µs of each of `reps` calls y = W_c·x, c cycling over the copies (after a warm-up of each). */
  async run(M: number, reps: number): Promise<number[]> {
    return (await this.#command(`run ${M} ${reps}`)).split(" ").slice(1).map(Number);
  }

  async close(): Promise<void> {
    this.#proc.stdin.write("quit\n");
    await new Promise((r) => this.#proc.once("exit", r));
  }
}

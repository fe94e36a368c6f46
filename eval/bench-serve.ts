/**
 * Throughput of `serve` vs `chat` on the same prompt: what the HTTP layer costs.
 *
 *   npx tsx eval/bench-serve.ts [--reps 5] [--threads 1] [--tokens 256] [--model <dir|.gguf>]... [--write]
 *
 * One process per model, the model loaded once. "chat" is the code path of
 * `chat --prompt` (a Conversation answering one message, text streamed to a callback).
 * "serve" is the HTTP server on loopback in this process, driven by the official openai
 * client with a streaming chat completion; the client runs in the same process, so its
 * SSE parsing is charged to serve (a conservative figure). Both generate exactly N tokens
 * (ignore_eos) greedily from the same messages, and must give the same text. The two
 * alternate within each repetition; medians over repetitions and their ratio are printed,
 * for wall-clock tokens/s (request → last token) and for tokens per CPU-second of the
 * process (less disturbed by other load on a shared machine).
 *
 * With `--server process` (the default) the server is the real CLI, `quantize-llm serve`,
 * in a child process (as users run it), and the client's parsing happens in this process,
 * on the other core; its CPU figure is the server process's own (from /proc/<pid>/stat).
 * With `--server inline` server and client share this process (the most conservative
 * figure: the client's SSE parsing is charged to serve).
 *
 * Two models: the bundled one (5M parameters: ~2 ms a token, the worst case for a fixed
 * per-token HTTP cost) and a random 8-layer, hidden-1024 Llama (~100M parameters) built in
 * a temporary folder; `--tokens` sets the bundled model's answer length; each `--model` adds
 * a row for that model (32 tokens). `--write` writes eval/reports/bench-serve.md.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync, renameSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { basename, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import OpenAI from "openai";
import type { Backend } from "../src/backend/backend.ts";
import { selectBackend } from "../src/backend/select.ts";
import { Conversation } from "../src/generate/conversation.ts";
import { Session } from "../src/generate/engine.ts";
import { kernelPath } from "../src/generate/report.ts";
import { samplerOptions } from "../src/generate/sampler.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { BUNDLED_MODEL_DIR } from "../src/load/paths.ts";
import { startServer } from "../src/serve/server.ts";
import { makeTinyModel } from "../test/helpers/tiny-model.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: { reps: { type: "string" }, threads: { type: "string" }, write: { type: "boolean" }, server: { type: "string" }, tokens: { type: "string" }, model: { type: "string", multiple: true } },
});
const SERVER = values.server ?? "process";
if (SERVER !== "process" && SERVER !== "inline") throw new Error(`--server: expected process or inline, found ${SERVER}`);
const REPS = Number(values.reps ?? 5);
const threads = Number(values.threads ?? 1);
const SYSTEM = "You are a storyteller.";
const USER = "Tell me about the trial.";
const messages = [{ role: "system" as const, content: SYSTEM }, { role: "user" as const, content: USER }];

/** cpuMs: this process's user + system CPU time for the request. */
interface Run { tokens: number; totalMs: number; cpuMs: number; text: string }
const cpuMs = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
/** CPU ms (user + system) of another process, from /proc/<pid>/stat (clock ticks of 10 ms). */
const procCpuMs = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 of proc_pid_stat(5)
  return (Number(f[11]) + Number(f[12])) * 10; // fields 14, 15: utime, stime
};

/** `quantize-llm serve <dir>` in a child process on a free port; resolves with its URL. */
async function spawnServer(dir: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [`${ROOT}/bin/quantize-llm.js`, "serve", dir, "--port", "0", "--threads", String(threads), "--model-id", "bench"],
    { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const url = await new Promise<string>((res, rej) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = / on (http:\/\/[^\s]+) /.exec(err);
      if (m) res(m[1]!);
    });
    child.once("exit", (code) => rej(new Error(`serve exited (${code}) before listening:\n${err}`)));
  });
  return { url, child };
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };

async function measure(name: string, dir: string, N: number, backend: Backend): Promise<string[]> {
  const { model, tokenizer } = await loadModel(dir, backend);
  const inline = SERVER === "inline" ? await startServer({ model, tokenizer, modelId: "bench", port: 0 }) : null;
  const spawned = inline === null ? await spawnServer(dir) : null;
  const serverCpu = (): number => (spawned ? procCpuMs(spawned.child.pid!) : cpuMs());
  const client = new OpenAI({ baseURL: `${inline?.url ?? spawned!.url}/v1`, apiKey: "none", maxRetries: 0 });
  const viaChat = async (): Promise<Run> => {
    const conv = new Conversation(new Session(model), tokenizer, SYSTEM);
    let text = "";
    const c0 = cpuMs();
    const t0 = performance.now();
    const r = await conv.ask(USER, { maxTokens: N, sampler: samplerOptions({}), ignoreEos: true, onText: (d) => { text += d; } });
    return { tokens: r.ids.length, totalMs: performance.now() - t0, cpuMs: cpuMs() - c0, text };
  };
  const viaServe = async (): Promise<Run> => {
    let text = "";
    let tokens = 0;
    const c0 = serverCpu();
    const t0 = performance.now();
    const s = await client.chat.completions.create({
      model: "bench", messages, temperature: 0, max_tokens: N, stream: true, stream_options: { include_usage: true }, ignore_eos: true,
    } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
    for await (const ch of s) {
      text += ch.choices[0]?.delta.content ?? "";
      if (ch.usage) tokens = ch.usage.completion_tokens;
    }
    const totalMs = performance.now() - t0;
    return { tokens, totalMs, cpuMs: serverCpu() - c0, text };
  };
  const chat: Run[] = [];
  const serve: Run[] = [];
  await viaChat(); await viaServe(); // warm-up
  const load0 = loadavg()[0]!;
  for (let i = 0; i < REPS; i++) { chat.push(await viaChat()); serve.push(await viaServe()); }
  const load1 = loadavg()[0]!;
  if (inline) await inline.close();
  if (spawned) { spawned.child.kill("SIGTERM"); await new Promise((r) => spawned.child.once("exit", r)); }
  for (const r of [...chat, ...serve]) {
    if (r.tokens !== N) throw new Error(`${name}: a run generated ${r.tokens} tokens, not ${N}`);
    if (r.text !== chat[0]!.text) throw new Error(`${name}: serve and chat answered differently`);
  }
  const wall = (r: Run): number => (r.tokens * 1000) / r.totalMs;
  const cpu = (r: Run): number => (r.tokens * 1000) / r.cpuMs;
  const row = (what: string, f: (r: Run) => number): string => {
    const c = median(chat.map(f)), s = median(serve.map(f));
    const cb = Math.max(...chat.map(f)), sb = Math.max(...serve.map(f)); // best run: the least disturbed
    return `| ${name} | ${what} | ${c.toFixed(1)} | ${s.toFixed(1)} | ${((1 - s / c) * 100).toFixed(1)}% | ${cb.toFixed(1)} | ${sb.toFixed(1)} | ${((1 - sb / cb) * 100).toFixed(1)}% |`;
  };
  const perToken = (median(serve.map((r) => r.cpuMs)) - median(chat.map((r) => r.cpuMs))) / N;
  process.stderr.write(`${name}: chat wall ${chat.map((r) => wall(r).toFixed(1)).join(" ")}; serve wall ${serve.map((r) => wall(r).toFixed(1)).join(" ")}\n`);
  return [
    row("tokens/s, wall clock", wall),
    row("tokens per CPU-second", cpu),
    `| ${name} | HTTP CPU per token (medians) | | | ${perToken.toFixed(3)} ms | | | (load ${load0.toFixed(1)} → ${load1.toFixed(1)}) |`,
  ];
}

const backend = selectBackend({ threads });
const TINY_N = Number(values.tokens ?? 256);
const rows = [...await measure(`bundled qllm-tiny (5M), ${TINY_N} tokens`, BUNDLED_MODEL_DIR, TINY_N, backend)];
const big = await makeTinyModel({ modelType: "llama", hidden: 1024, intermediate: 2816, layers: 8, heads: 16, kvHeads: 4, maxPositions: 512, seed: 3 });
try {
  rows.push(...await measure("random Llama h1024×8 (~100M), 64 tokens", big.dir, 64, backend));
} finally {
  rmSync(big.dir, { recursive: true, force: true });
}
for (const m of values.model ?? []) rows.push(...await measure(`${basename(dirname(resolve(m)))}/${basename(m)} (--model), 32 tokens`, m, 32, backend));

const report = [
  "# serve vs chat: tokens/s on the same prompt",
  "",
  `Reproduce: \`npx tsx eval/bench-serve.ts --reps ${REPS} --threads ${threads} --server ${SERVER} --tokens ${TINY_N}${(values.model ?? []).map((m) => ` --model ${m}`).join("")} --write\` (on a quiet machine)`,
  "",
  `Kernel path ${kernelPath(backend)}. Prompt: the same system + user message through the chat template; greedy,`,
  `end-of-turn ignored so every answer has exactly N tokens; ${REPS} alternating repetitions after a warm-up, medians.`,
  ...(SERVER === "process"
    ? ["serve = `quantize-llm serve` in a child process, HTTP on loopback, the official openai client streaming (SSE)",
      "from this process; serve's CPU figures are the server process's own. Both engines' answers are identical (checked)."]
    : ["serve = HTTP on loopback, the official openai client streaming (SSE), client and server in the same process",
      "(the client's parsing is charged to serve). Both engines' answers are identical (checked)."]),
  "The machine is shared (2 cores, other jobs running): wall-clock figures are noisy; CPU-time figures less so.",
  "",
  "| model | measure | chat median | serve median | HTTP cost (medians) | chat best | serve best | HTTP cost (best runs) |",
  "|---|---|---:|---:|---:|---:|---:|---:|",
  ...rows,
  "",
].join("\n");
process.stdout.write(report);
if (values.write) {
  const file = `${ROOT}/eval/reports/bench-serve${SERVER === "inline" ? "-inline" : ""}.md`;
  writeFileSync(`${file}.tmp`, report);
  renameSync(`${file}.tmp`, file);
}

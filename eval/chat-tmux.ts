/**
 * Drives the interactive chat in a real terminal (tmux): a message, a second turn,
 * Ctrl-C during an answer, /exit — and records the screen after each step in
 * eval/reports/chat-tmux.md. Fails (exit 1) when a step does not show what it should.
 *
 *   npx tsx eval/chat-tmux.ts [--write]
 */
import { execFileSync } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SESSION = `qllm-chat-${process.pid}`;
const CMD = "node bin/quantize-llm.js chat --max-tokens 120 --temperature 0 --system 'You are a storyteller.'";
const tmux = (...args: string[]): string => execFileSync("tmux", args, { encoding: "utf8" });
const screen = (): string => tmux("capture-pane", "-p", "-t", SESSION).replace(/\s+$/, "");

async function until(what: string, ok: (s: string) => boolean, ms = 30_000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const s = screen();
    if (ok(s)) return s;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}\n--- screen ---\n${s}`);
    await new Promise((r) => setTimeout(r, 15));
  }
}
const count = (s: string, re: RegExp): number => (s.match(re) ?? []).length;
const SPEED = /\[\d+ tokens, [\d.]+ tokens\/s; prefill \d+ tokens/g;
const endsAtPrompt = (s: string): boolean => /\n> $/.test(`${s} `);

const steps: { title: string; keys: string; screen: string }[] = [];
tmux("new-session", "-d", "-s", SESSION, "-x", "110", "-y", "40", "-c", ROOT, "-e", "QLLM_THREADS=1", CMD);
tmux("set-option", "-t", SESSION, "remain-on-exit", "on");
try {
  steps.push({ title: "started", keys: CMD, screen: await until("the prompt", (s) => endsAtPrompt(s) && s.includes("chat with")) });

  tmux("send-keys", "-t", SESSION, "Who was there?", "Enter");
  steps.push({ title: "first message, streamed answer and its speed line", keys: "Who was there? ⏎", screen: await until("answer 1", (s) => count(s, SPEED) === 1 && endsAtPrompt(s)) });

  tmux("send-keys", "-t", SESSION, "And then what happened?", "Enter");
  const s2 = await until("answer 2", (s) => count(s, SPEED) === 2 && endsAtPrompt(s));
  const prefills = [...s2.matchAll(/prefill (\d+) tokens/g)].map((m) => Number(m[1]));
  steps.push({ title: `second turn (prefill ${prefills[1]} tokens: only the new turn, the first ${prefills[0]} stay in the KV cache)`, keys: "And then what happened? ⏎", screen: s2 });

  tmux("send-keys", "-t", SESSION, "Tell me the whole story.", "Enter");
  const before = screen();
  await until("answer 3 to start", (s) => s.length > before.length + 30);
  tmux("send-keys", "-t", SESSION, "C-c");
  steps.push({ title: "Ctrl-C during the third answer: stopped, back at the prompt", keys: "Tell me the whole story. ⏎ … Ctrl-C", screen: await until("[stopped]", (s) => s.includes("[stopped]") && endsAtPrompt(s)) });

  tmux("send-keys", "-t", SESSION, "/exit", "Enter");
  steps.push({ title: "/exit", keys: "/exit ⏎", screen: await until("the exit", (s) => /Pane is dead|exited/i.test(s) || !tmux("list-panes", "-t", SESSION, "-F", "#{pane_dead}").includes("0")) });
  const dead = tmux("list-panes", "-t", SESSION, "-F", "#{pane_dead} #{pane_dead_status}").trim();
  if (!dead.startsWith("1 0")) throw new Error(`chat did not exit cleanly: pane_dead pane_dead_status = ${dead}`);
  if (!(prefills[1]! < prefills[0]! + 30)) throw new Error(`second-turn prefill ${prefills[1]} is not just the new turn`);
} finally {
  try { tmux("kill-session", "-t", SESSION); } catch { /* already gone */ }
}

const load = readFileSync("/proc/loadavg", "utf8").trim();
const report = [
  "# Interactive chat in a terminal (tmux)",
  "",
  `Reproduce: \`npx tsx eval/chat-tmux.ts --write\` — runs \`${CMD}\` in a 110×40 tmux pane,`,
  "sends keys, and captures the pane after each step. The bundled model writes nonsense by design;",
  "what matters is the streaming, the second turn's small prefill, Ctrl-C and /exit.",
  `Run: ${new Date().toISOString()}, /proc/loadavg ${load}.`,
  "",
  ...steps.flatMap((s, i) => [`## ${i + 1}. ${s.title}`, "", `keys: \`${s.keys}\``, "", "```", s.screen, "```", ""]),
].join("\n");
process.stdout.write(report);
if (process.argv.includes("--write")) {
  const file = `${ROOT}eval/reports/chat-tmux.md`;
  writeFileSync(`${file}.tmp`, report);
  renameSync(`${file}.tmp`, file);
}

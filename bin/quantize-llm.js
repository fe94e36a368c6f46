#!/usr/bin/env node
// Entry point of the `quantize-llm` command: runs the TypeScript CLI through tsx's loader,
// in this process (no child process: signals reach the CLI directly).
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { register } from "tsx/esm/api";

watchNpmShell();

register();
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));

/**
 * `npx quantize-llm` / `npm run` start us as `npm → sh -c 'quantize-llm …' → node`. npm
 * forwards SIGINT/SIGTERM to the shell only; dash defers SIGINT until its child (us)
 * exits, so `kill -INT <npx pid>` stopped nothing. When our parent is that shell, a worker
 * thread (its own event loop: it runs even while a native kernel holds the main thread)
 * watches it, and sends us SIGINT — the same as Ctrl-C: quantize stops after the current
 * layer and keeps its journal, other commands end at once — when the shell or npm is gone
 * (SIGTERM kills dash at once), or when the shell was woken while it waits for us: a
 * waiting dash only wakes for a signal (its voluntary context switches count up), and
 * SIGCONT after Ctrl-Z is told apart by our own timer having stalled too.
 */
function watchNpmShell() {
  if (process.env.npm_command === undefined || process.platform !== "linux") return;
  /** /proc/<pid>/stat fields after the command name: [state, ppid, ..., starttime at index 19]. */
  const stat = (pid) => readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").split(" ");
  let npm;
  try {
    if (!["sh", "dash", "bash"].includes(readFileSync(`/proc/${process.ppid}/comm`, "utf8").trim())) return;
    const npmPid = Number(stat(process.ppid)[1]);
    npm = { pid: npmPid, start: stat(npmPid)[19] };
  } catch { return; }
  const watcher = new Worker(`
    const { readFileSync } = require("node:fs");
    const { workerData: w } = require("node:worker_threads");
    const stat = (pid) => readFileSync("/proc/" + pid + "/stat", "utf8").replace(/^.*\\) /s, "").split(" ");
    const wakes = () => Number(readFileSync("/proc/" + w.ppid + "/status", "utf8").match(/^voluntary_ctxt_switches:\\s*(\\d+)/m)[1]);
    let seen = wakes(), last = Date.now();
    const timer = setInterval(() => {
      let gone = false, woken = false;
      try {
        gone = process.ppid !== w.ppid || stat(w.npm.pid)[19] !== w.npm.start;
        const now = Date.now(), n = wakes(), stalled = now - last > 1000 || stat(w.ppid)[0] === "T";
        woken = n !== seen && !stalled;
        seen = n; last = now;
      } catch { gone = true; }
      if (gone || woken) { clearInterval(timer); process.kill(w.pid, "SIGINT"); }
    }, 200);`, { eval: true, workerData: { ppid: process.ppid, pid: process.pid, npm } });
  watcher.unref();
}

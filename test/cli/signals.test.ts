/**
 * `kill -INT <npx pid>` must stop the CLI. npx runs `npm → sh -c 'quantize-llm …' → node`;
 * npm forwards the signal to the shell and waits for it; dash defers SIGINT until node has
 * exited (SIGTERM kills it at once). The fake npm below does what npm does.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/load/paths.ts";

const BIN = join(PACKAGE_ROOT, "bin", "quantize-llm.js");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.runIf(process.platform === "linux")("bin/quantize-llm.js under npx", () => {
  it.each(["SIGINT", "SIGTERM"] as const)("stops when npm forwards %s to its shell (the node process is not left running)", async (signal) => {
    // fake npm: spawns the shell (`; :` keeps sh from exec-ing node, as npm's `sh -c` does),
    // prints the shell's pid, and on SIGINT forwards it to the shell and exits with 130.
    const fakeNpm = `
      const { spawn } = require("node:child_process");
      const sh = spawn("sh", ["-c", ${JSON.stringify(`"${process.execPath}" "${BIN}" eval; :`)}], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, npm_command: "exec" } });
      sh.stderr.on("data", (d) => process.stderr.write(d));
      console.log(sh.pid);
      const forward = (s) => sh.kill(s);
      process.on("SIGINT", forward); process.on("SIGTERM", forward);
      sh.on("exit", (code, sig) => process.exit(code ?? 128));`;
    const npm = spawn(process.execPath, ["-e", fakeNpm], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    npm.stderr.on("data", (d) => { stderr += String(d); });
    const shPid = await new Promise<number>((res) => npm.stdout.once("data", (d) => res(Number(String(d).trim()))));
    // wait until the CLI is scoring (full held-out text: ~20 s of work at 1 thread)
    for (let i = 0; i < 600 && !/eval \d+\/\d+/.test(stderr); i++) await sleep(50);
    expect(stderr).toMatch(/eval \d+\/\d+/);
    const children = readFileSync(`/proc/${shPid}/task/${shPid}/children`, "utf8").trim().split(/\s+/).map(Number);
    expect(children.length).toBe(1);
    const nodePid = children[0]!;
    npm.kill(signal);
    const t0 = performance.now();
    while (existsSync(`/proc/${nodePid}`) && performance.now() - t0 < 10_000) await sleep(50);
    const gone = !existsSync(`/proc/${nodePid}`);
    if (!gone) process.kill(nodePid, "SIGKILL");
    expect(gone, "the CLI kept running after npm exited").toBe(true);
    expect(performance.now() - t0).toBeLessThan(5_000);
  });
});

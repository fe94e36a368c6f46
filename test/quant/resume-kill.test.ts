/**
 * kill -9 in the middle of `quantize-llm gptq`, then `--resume`: the checkpoint must be
 * byte-identical to an uninterrupted run, and nothing may appear under the final name
 * before the run completes.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { BUNDLED_CALIB_TEXT, PACKAGE_ROOT } from "../../src/load/paths.ts";
import { makeTinyModel } from "../helpers/tiny-model.ts";

const tmp = mkdtempSync(join(tmpdir(), "qllm-kill-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const BIN = join(PACKAGE_ROOT, "bin", "quantize-llm.js");

function args(model: string, out: string): string[] {
  return [BIN, "gptq", model, "-o", out, "--bits", "3", "--group-size", "32", "--act-order", "--calib-text", BUNDLED_CALIB_TEXT,
    "--calib-samples", "24", "--calib-seqlen", "128", "--no-eval", "--threads", "1"];
}

function journalBlocks(out: string): number {
  try { return (JSON.parse(readFileSync(join(`${out}.partial`, "journal.json"), "utf8")) as { blocks: unknown[] }).blocks.length; } catch { return 0; }
}

it("kill -9 mid-run, then --resume, gives the same bytes as an uninterrupted run", async () => {
  const m = await makeTinyModel({ modelType: "llama", hidden: 128, intermediate: 256, layers: 8, heads: 4, kvHeads: 2, seed: 9, tokenizer: "bundled", dir: join(tmp, "model") });
  const ref = join(tmp, "ref"), out = join(tmp, "out");
  const full = spawnSync(process.execPath, args(m.dir, ref), { encoding: "utf8" });
  expect(full.status, full.stderr).toBe(0);

  const child = spawn(process.execPath, args(m.dir, out), { stdio: "ignore" });
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const t0 = Date.now();
  while (journalBlocks(out) < 2 && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 20));
  expect(journalBlocks(out)).toBeGreaterThanOrEqual(2);
  child.kill("SIGKILL");
  await exited;
  const killedAt = journalBlocks(out);
  expect(killedAt).toBeLessThan(8); // really interrupted mid-way
  expect(existsSync(out)).toBe(false); // nothing under the final name

  const again = spawnSync(process.execPath, args(m.dir, out), { encoding: "utf8" });
  expect(again.status).toBe(2);
  expect(again.stderr).toMatch(/--resume/);
  const resumed = spawnSync(process.execPath, [...args(m.dir, out), "--resume"], { encoding: "utf8" });
  expect(resumed.status, resumed.stderr).toBe(0);
  expect(resumed.stderr).toMatch(/resumed from journal/);

  const files = readdirSync(ref).filter((f) => f !== "quant-report.json").sort();
  expect(readdirSync(out).filter((f) => f !== "quant-report.json").sort()).toEqual(files);
  for (const f of files) expect(readFileSync(join(out, f)).equals(readFileSync(join(ref, f))), f).toBe(true);
  expect(existsSync(`${out}.partial`)).toBe(false);
});

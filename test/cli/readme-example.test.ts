/**
 * Issue 10: the README's library example runs as written, with the loader the README states
 * (`node --import tsx`), importing the package by its name as a user's project would.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { PACKAGE_ROOT } from "../../src/load/paths.ts";

test("README 'Library API' example runs with node --import tsx and prints its figures", () => {
  const readme = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Library API"));
  expect(section).toMatch(/node --import tsx example\.mts/);
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  expect(code).toBeDefined();
  const dir = mkdtempSync(join(tmpdir(), "qllm-readme-"));
  try {
    mkdirSync(join(dir, "node_modules"));
    // `npm install quantize-llm`: the package, and tsx (one of its dependencies) next to it
    symlinkSync(PACKAGE_ROOT, join(dir, "node_modules", "quantize-llm"), "dir");
    symlinkSync(join(PACKAGE_ROOT, "node_modules", "tsx"), join(dir, "node_modules", "tsx"), "dir");
    writeFileSync(join(dir, "example.mts"), code!);
    const r = spawnSync(process.execPath, ["--import", "tsx", "example.mts"], {
      cwd: dir, encoding: "utf8", timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^GPTQ loss \d\.\d{3}e[-+]\d+, damp 0\.01; RTN codes 8192\nperplexity \d+\.\d{3}\n$/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
}, 180_000);

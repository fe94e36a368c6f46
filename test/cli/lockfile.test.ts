/**
 * `npm ci` refuses a lock file that lacks any dependency of a locked package, optional
 * platform packages included (node-llama-cpp lists one per OS/GPU). Checks the same
 * rule offline: every (optional) dependency of every lock entry resolves to an entry.
 * npm 11 lists, at the end of every install, the dependencies whose install scripts
 * package.json's allowScripts neither approves nor denies; the second test keeps that list empty.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/load/paths.ts";

interface LockEntry {
  version?: string; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; devDependencies?: Record<string, string>;
  hasInstallScript?: boolean; allowScripts?: Record<string, boolean>;
}

/** Node's lookup: node_modules/<name> next to the entry, then in each parent folder. */
function resolveIn(packages: Record<string, LockEntry>, from: string, name: string): string | null {
  let base = from;
  for (;;) {
    const key = base === "" ? `node_modules/${name}` : `${base}/node_modules/${name}`;
    if (packages[key]) return key;
    if (base === "") return null;
    const i = base.lastIndexOf("/node_modules/");
    base = i < 0 ? "" : base.slice(0, i);
  }
}

describe("package-lock.json", () => {
  it("holds an entry for every dependency npm ci checks, optional platform packages included", () => {
    const lock = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as LockEntry;
    const missing: string[] = [];
    for (const [key, e] of Object.entries(lock.packages)) {
      const deps = { ...e.dependencies, ...e.optionalDependencies, ...(key === "" ? e.devDependencies : {}) };
      for (const [name, spec] of Object.entries(deps)) {
        const at = resolveIn(lock.packages, key, name);
        if (at === null) missing.push(`${name}@${spec} (needed by ${key || "the root"})`);
        // exact pins (platform packages are pinned to their parent's version) must match
        else if (/^\d+\.\d+\.\d+$/.test(spec) && lock.packages[at]!.version !== spec) missing.push(`${name}@${spec} (locked ${lock.packages[at]!.version})`);
      }
    }
    expect(missing).toEqual([]);
    // the root entry mirrors package.json (npm ci's first check)
    expect(lock.packages[""]!.dependencies).toEqual(pkg.dependencies);
    expect(lock.packages[""]!.devDependencies).toEqual(pkg.devDependencies);
  });

  it("every locked dependency with an install script is approved or denied in allowScripts (npm 11: else npm ci warns)", () => {
    const lock = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as LockEntry;
    const withScripts = Object.entries(lock.packages).filter(([k, e]) => k !== "" && e.hasInstallScript === true).map(([k]) => k.slice(k.lastIndexOf("node_modules/") + 13));
    expect(withScripts.length).toBeGreaterThan(0);
    expect(withScripts.filter((name) => typeof pkg.allowScripts?.[name] !== "boolean")).toEqual([]);
  });
});

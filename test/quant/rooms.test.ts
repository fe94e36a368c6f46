/**
 * The rooms of src/ (README "How it is built") form a ladder: a file imports only from its
 * own room or from rooms below it, and no two files import each other, directly or around
 * a longer circle. Read from the import statements of the source files themselves.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, test } from "vitest";

/** Bottom up; README states the same order. */
const ROOMS = ["util", "arch", "tensor", "tokenizer", "pack", "io", "backend", "nn", "metrics", "load", "export", "generate", "serve", "methods", "quantize", "cli"];
const SRC = resolve(import.meta.dirname, "../../src");

function files(d: string): string[] {
  return readdirSync(d).flatMap((f) => { const p = join(d, f); return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : []; });
}
/** Relative imports and re-exports of one file, resolved to absolute paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/^(?:import|export)\s[^;]*?from\s+"(\.{1,2}\/[^"]+)"/gms)].map((m) => resolve(dirname(file), m[1]!));
}
const roomOf = (file: string): string => relative(SRC, file).split("/")[0]!;
const all = files(SRC);
const graph = new Map(all.map((f) => [f, importsOf(f)]));

describe("src/ rooms", () => {
  test("every room of src/ is in the ladder", () => {
    const rooms = [...new Set(all.map(roomOf))].filter((r) => r !== "index.ts");
    expect(rooms.filter((r) => !ROOMS.includes(r))).toEqual([]);
  });

  test("no file imports from a room above its own", () => {
    const bad: string[] = [];
    for (const [f, deps] of graph) {
      const r = roomOf(f);
      if (r === "index.ts") continue;
      for (const d of deps) if (ROOMS.indexOf(roomOf(d)) > ROOMS.indexOf(r)) bad.push(`${relative(SRC, f)} → ${relative(SRC, d)}`);
    }
    expect(bad).toEqual([]);
  });

  test("no import circles between files", () => {
    const state = new Map<string, "open" | "done">();
    const circles: string[] = [];
    const visit = (f: string, path: string[]): void => {
      if (state.get(f) === "done") return;
      if (state.get(f) === "open") { circles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(SRC, p)).join(" → ")); return; }
      state.set(f, "open");
      for (const d of graph.get(f) ?? []) visit(d, [...path, f]);
      state.set(f, "done");
    };
    for (const f of all) visit(f, []);
    expect(circles).toEqual([]);
  });
});

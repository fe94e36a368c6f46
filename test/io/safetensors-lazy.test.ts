/**
 * Byte-exact proof of laziness: every read the reader makes goes through a counting
 * wrapper around node:fs, so the test sees exactly how many bytes it read, and where.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, expect, it, vi } from "vitest";
import { openSafetensors, writeSafetensors } from "../../src/io/safetensors.ts";

/** [position, length] of every read made through node:fs or node:fs/promises. */
const reads = vi.hoisted(() => [] as Array<[number, number]>);

vi.mock("node:fs/promises", async (importOriginal) => {
  const fsp = await importOriginal<typeof import("node:fs/promises")>();
  const open = async (...args: Parameters<typeof fsp.open>) => {
    const h = await fsp.open(...args);
    const read = h.read.bind(h) as (b: Uint8Array, o: number, l: number, p: number) => Promise<{ bytesRead: number }>;
    Object.defineProperty(h, "read", {
      value: async (b: Uint8Array, o: number, l: number, p: number) => {
        const r = await read(b, o, l, p);
        reads.push([p, r.bytesRead]);
        return r;
      },
    });
    return h;
  };
  return { ...fsp, open, default: { ...fsp, open } };
});

vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const readSync = (fd: number, b: Uint8Array, o: number, l: number, p: number): number => {
    const n = fs.readSync(fd, b, o, l, p);
    reads.push([p, n]);
    return n;
  };
  return { ...fs, readSync, default: { ...fs, readSync } };
});

let dir = "";
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), "qllm-lazy-")); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });
beforeEach(() => { reads.length = 0; });

it("open reads only the length and the header; readRaw/readRawSync read exactly one tensor", async () => {
  const p = join(dir, "m.safetensors");
  const BIG = 8 << 20; // 8 MiB tensor first, a 16-byte tensor after it
  await writeSafetensors(p, [
    { name: "big", dtype: "U8", shape: [BIG], data: new Uint8Array(BIG) },
    { name: "small", dtype: "I32", shape: [4], data: new Uint8Array(new Int32Array([1, 2, 3, 4]).buffer) },
  ]);
  reads.length = 0;

  const f = await openSafetensors(p);
  const n = f.dataStart - 8;
  expect(reads).toEqual([[0, 8], [8, n]]);
  reads.length = 0;

  expect(Array.from(await f.readF32("small"))).toEqual([1, 2, 3, 4]);
  expect(reads).toEqual([[f.dataStart + BIG, 16]]);
  reads.length = 0;

  expect(Array.from(f.readF32Sync("small"))).toEqual([1, 2, 3, 4]);
  expect(reads).toEqual([[f.dataStart + BIG, 16]]);
  await f.close();
});

it("a bad header is rejected after reading only the 8-byte length", async () => {
  const p = join(dir, "bad.safetensors");
  const bytes = new Uint8Array(1 << 20);
  new DataView(bytes.buffer).setBigUint64(0, 2n ** 40n, true);
  await writeFile(p, bytes);
  reads.length = 0;
  await expect(openSafetensors(p)).rejects.toThrow(/absurdly large/);
  expect(reads).toEqual([[0, 8]]);
});

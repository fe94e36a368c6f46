/**
 * io/direct-write.ts AppendFile: the bytes on disk are exactly the bytes appended, in both
 * modes (O_DIRECT where this host allows it, the page cache with QLLM_DIRECT_IO=0), across
 * staging-buffer boundaries (8 MiB), with unaligned lengths, syncs in between, a close
 * without a sync, and a continuation ("r+") inside a 4 KiB block.
 */
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { AppendFile, directIoWanted } from "../../src/io/direct-write.ts";

const dir = mkdtempSync(join(tmpdir(), "qllm-direct-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const saved = process.env["QLLM_DIRECT_IO"];
afterEach(() => { if (saved === undefined) delete process.env["QLLM_DIRECT_IO"]; else process.env["QLLM_DIRECT_IO"] = saved; });

/** n deterministic pseudo-random bytes (xorshift32 from `seed`). */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s & 0xff;
  }
  return out;
}

const concat = (parts: Uint8Array[]): Buffer => Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
const MiB = 2 ** 20;
// Chunk sizes that cross the 8 MiB staging buffers at odd offsets, and tiny tails.
const SIZES = [1, 4095, 4097, 3 * MiB + 7, 9 * MiB + 123, 0, 17, 8 * MiB, 5 * MiB - 1, 2];

describe.each([["direct (when available)", "1"], ["page cache", "0"]])("AppendFile, %s", (_name, env) => {
  it("writes exactly the appended bytes, with syncs in between and a close without one", async () => {
    process.env["QLLM_DIRECT_IO"] = env;
    const path = join(dir, `a-${env}.bin`);
    const f = await AppendFile.open(path, "wx");
    expect(f.direct).toBe(env === "1" && directIoWanted());
    const parts = SIZES.map((n, i) => bytes(n, i + 1));
    for (const [i, p] of parts.entries()) {
      await f.append(p);
      if (i % 3 === 2) {
        await f.sync();
        expect(readFileSync(path).equals(concat(parts.slice(0, i + 1)))).toBe(true); // synced: the file is exactly that long
      }
    }
    expect(f.position).toBe(SIZES.reduce((a, b) => a + b, 0));
    await f.close();
    await f.close(); // idempotent
    expect(readFileSync(path).equals(concat(parts))).toBe(true);
    await expect(AppendFile.open(path, "wx")).rejects.toMatchObject({ code: "EEXIST" });
  });

  it('continues an existing file at an unaligned position ("r+"), and "w" truncates', async () => {
    process.env["QLLM_DIRECT_IO"] = env;
    const path = join(dir, `b-${env}.bin`);
    const head = bytes(3 * 4096 + 1000, 7);
    writeFileSync(path, concat([head, bytes(5000, 8)])); // bytes past the position: truncated away first, as a resume does
    truncateSync(path, head.length);
    const f = await AppendFile.open(path, "r+", head.length);
    const tail = [bytes(10 * MiB + 3, 9), bytes(100, 10)];
    for (const t of tail) await f.append(t);
    await f.sync(true);
    await f.close();
    expect(readFileSync(path).equals(concat([head, ...tail]))).toBe(true);

    const g = await AppendFile.open(path, "w");
    await g.append(bytes(10, 11));
    await g.close();
    expect(readFileSync(path).equals(concat([bytes(10, 11)]))).toBe(true);
  });
});

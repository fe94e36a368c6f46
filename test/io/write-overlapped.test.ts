/** io/atomic.ts writeOverlapped: order, one write in flight while the next item is produced, abort on any error. */
import { describe, expect, it } from "vitest";
import { writeOverlapped } from "../../src/io/atomic.ts";

function recorder() {
  const log: string[] = [];
  let inFlight = 0, maxInFlight = 0;
  const w = { finish: async () => { log.push("finish"); }, abort: async () => { log.push("abort"); } };
  const write = async (i: number, d: string): Promise<void> => {
    inFlight++; maxInFlight = Math.max(maxInFlight, inFlight);
    log.push(`write-start ${i} ${d}`);
    await new Promise((r) => setTimeout(r, 5));
    log.push(`write-end ${i}`);
    inFlight--;
  };
  return { log, w, write, max: () => maxInFlight };
}

describe("writeOverlapped", () => {
  it("writes in order, produces item i + 1 while item i is written, then finishes", async () => {
    const r = recorder();
    await writeOverlapped(r.w, 3, (i) => { r.log.push(`produce ${i}`); return `d${i}`; }, r.write);
    expect(r.log).toEqual(["produce 0", "write-start 0 d0", "produce 1", "write-end 0", "write-start 1 d1", "produce 2", "write-end 1", "write-start 2 d2", "write-end 2", "finish"]);
    expect(r.max()).toBe(1);
  });

  it.each([["produce", 1], ["write", 1]] as const)("a failing %s aborts the writer after the write in flight settles", async (where, at) => {
    const r = recorder();
    const boom = new Error("boom");
    const p = writeOverlapped(r.w, 3,
      (i) => { if (where === "produce" && i === at) throw boom; return `d${i}`; },
      (i, d) => (where === "write" && i === at ? Promise.reject(boom) : r.write(i, d)));
    await expect(p).rejects.toBe(boom);
    expect(r.log.at(-1)).toBe("abort");
    expect(r.log).not.toContain("finish");
    expect(r.log.indexOf("write-end 0")).toBeLessThan(r.log.indexOf("abort"));
  });
});

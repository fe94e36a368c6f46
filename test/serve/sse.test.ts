import type { ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import { SseWriter } from "../../src/serve/sse.ts";

/** A response that records each write and when it happened. */
function fakeResponse() {
  const writes: { text: string; at: number }[] = [];
  const res = {
    writableEnded: false,
    write(text: string) { writes.push({ text, at: performance.now() }); return true; },
    end() { this.writableEnded = true; },
  };
  return { res, writes };
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("SseWriter", () => {
  it("writes the first event at once, coalesces fast ones into one write within flushMs, keeps order", async () => {
    const { res, writes } = fakeResponse();
    const sse = new SseWriter(res as unknown as ServerResponse, 250); // long enough that a stall of a loaded machine does not flush early
    const t0 = performance.now();
    sse.send({ a: 1 });
    expect(writes.map((w) => w.text)).toEqual(['data: {"a":1}\n\n']);
    for (let i = 0; i < 5; i++) sse.send(`e${i}`);
    expect(writes).toHaveLength(1); // held: the last write is < 250 ms old
    await sleep(400);
    expect(writes).toHaveLength(2);
    expect(writes[1]!.text).toBe("data: e0\n\ndata: e1\n\ndata: e2\n\ndata: e3\n\ndata: e4\n\n");
    expect(writes[1]!.at - t0).toBeGreaterThanOrEqual(245);
    await sleep(300);
    sse.send("late"); // the last write is ≥ 250 ms old: at once
    expect(writes).toHaveLength(3);
    sse.send("x");
    sse.end(); // flushes what is held, then ends
    expect(writes.map((w) => w.text).slice(3)).toEqual(["data: x\n\n"]);
    expect(res.writableEnded).toBe(true);
    sse.send("after end");
    await sleep(300);
    expect(writes).toHaveLength(4);
  });

  it("a slow producer (slower than flushMs) gets one write per event", async () => {
    const { res, writes } = fakeResponse();
    const sse = new SseWriter(res as unknown as ServerResponse, 5);
    for (let i = 0; i < 4; i++) { sse.send(`t${i}`); expect(writes).toHaveLength(i + 1); await sleep(8); }
    sse.end();
  });
});

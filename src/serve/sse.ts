/**
 * Server-sent events on one response, with bounded write coalescing.
 *
 * Each event is its own `data: …\n\n` record (clients see one event per token, as
 * from OpenAI), but the socket write is batched: an event is written at once when the
 * last write is at least `flushMs` old (a model slower than that streams every token
 * as it comes), otherwise it waits at most until `flushMs` after the last write. On a
 * model that makes a token in well under a millisecond this turns one write syscall
 * per token (and, on loopback, the receiver's TCP work charged to us) into one per
 * `flushMs`; the added latency is bounded by `flushMs`.
 */
import type { ServerResponse } from "node:http";

/** Longest time an event waits for others to share its write (ms). */
export const SSE_FLUSH_MS = 4;

export class SseWriter {
  private pending = "";
  private lastWrite = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly res: ServerResponse, private readonly flushMs = SSE_FLUSH_MS) {}

  /** Queue one event: a string is sent as is, anything else as JSON. */
  send(data: unknown): void {
    if (this.res.writableEnded) return;
    this.pending += `data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;
    const now = performance.now();
    if (now - this.lastWrite >= this.flushMs) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.lastWrite + this.flushMs - now);
  }

  /** Write what is queued now. */
  flush(): void {
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
    if (this.pending.length === 0 || this.res.writableEnded) { this.pending = ""; return; }
    this.res.write(this.pending);
    this.pending = "";
    this.lastWrite = performance.now();
  }

  /** Write what is queued and end the response. */
  end(): void {
    this.flush();
    if (!this.res.writableEnded) this.res.end();
  }
}

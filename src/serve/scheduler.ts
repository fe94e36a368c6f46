/**
 * One model, a fixed number of slots (each a Session with its own KV cache), and a
 * bounded queue of requests waiting for a slot. A full queue refuses at once (the
 * server answers 429); a waiter whose signal aborts (client gone, timeout) leaves the
 * queue; a released slot goes straight to the oldest waiter.
 */
import type { Session } from "../generate/engine.ts";

export class QueueFullError extends Error {
  constructor(readonly limit: number) { super(`the request queue is full (${limit} waiting)`); }
}

interface Waiter { resolve(s: Session): void; reject(e: unknown): void; signal: AbortSignal; onAbort: () => void }

export class Scheduler {
  private readonly free: Session[];
  private readonly waiting: Waiter[] = [];
  constructor(readonly slots: readonly Session[], readonly maxQueue: number) {
    this.free = [...slots];
  }

  get busy(): number { return this.slots.length - this.free.length; }
  get queued(): number { return this.waiting.length; }

  /** A free slot, now or when one is released; rejects with QueueFullError or the signal's reason. */
  acquire(signal: AbortSignal): Promise<Session> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const s = this.free.pop();
    if (s) return Promise.resolve(s);
    if (this.waiting.length >= this.maxQueue) return Promise.reject(new QueueFullError(this.maxQueue));
    return new Promise<Session>((resolve, reject) => {
      const w: Waiter = {
        resolve, reject, signal,
        onAbort: () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener("abort", w.onAbort, { once: true });
      this.waiting.push(w);
    });
  }

  release(s: Session): void {
    const w = this.waiting.shift();
    if (w) {
      w.signal.removeEventListener("abort", w.onAbort);
      w.resolve(s);
    } else {
      this.free.push(s);
    }
  }
}

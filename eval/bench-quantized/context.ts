/**
 * What every section of bench-quantized shares: the native backend, the thread and
 * repetition counts, the probe's bandwidth (set by the probe section, read by the
 * others), llama.cpp's harness (started on first use), and small helpers.
 */
import type { NativeBackend } from "../../src/backend/native.ts";
import { GgmlHarness } from "./llamacpp.ts";

export interface BenchContext {
  nb: NativeBackend;
  threads: number;
  /** A/B rounds per case (and probe passes / 2) */
  reps: number;
  /** Median GB/s of the read-bandwidth probe (probe section) */
  probeGBs: number;
  harness(): Promise<GgmlHarness>;
  /** libggml-cpu-<variant>.so the harness loaded, once started */
  llamaVariant: string;
  log(line: string): void;
  /** The GEMV section's [N, K] shapes (--gemv-shapes); default matmul.ts GEMV_SHAPES */
  gemvShapes?: [number, number][];
}

export function createContext(nb: NativeBackend, threads: number, reps: number, log: (l: string) => void): BenchContext & { close(): Promise<void> } {
  let h: Promise<GgmlHarness> | null = null;
  const ctx = {
    nb, threads, reps, probeGBs: NaN, log, llamaVariant: "not started",
    harness: () => (h ??= GgmlHarness.start(threads).then((g) => { ctx.llamaVariant = g.cpuVariant; return g; })),
    close: async () => { if (h !== null) await (await h).close(); },
  };
  return ctx;
}

export function median(a: readonly number[]): number {
  const s = [...a].sort((x, y) => x - y);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/** "1.23×" = reference time / our time. */
export function ratio(refTime: number, ourTime: number): string {
  return `${(refTime / ourTime).toFixed(2)}×`;
}

export function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}

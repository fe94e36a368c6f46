/** What chat and serve print about a run: the kernel path, and per-answer speed. */
import type { Backend } from "../backend/backend.ts";
import { NativeBackend } from "../backend/native.ts";
import { perSecond, type GenerateStats } from "./engine.ts";

/** e.g. "native avx512, 2 threads" or "ref (plain TypeScript)". */
export function kernelPath(backend: Backend): string {
  if (backend instanceof NativeBackend) return `native ${backend.kernelLevel}, ${backend.threads} thread${backend.threads === 1 ? "" : "s"}`;
  return `${backend.name} (plain TypeScript)`;
}

/** The figures `chat --json` prints as its last line. */
export interface RunFigures {
  prompt_tokens: number;
  /** Prompt tokens prefilled (not already in the KV cache). */
  prefill_tokens: number;
  generated_tokens: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  peak_rss_mib: number;
  finish_reason: string;
  kernel_path: string;
}

export function runFigures(s: GenerateStats, finishReason: string, kernel: string): RunFigures {
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  return {
    prompt_tokens: s.promptTokens, prefill_tokens: s.prefillTokens, generated_tokens: s.generatedTokens,
    prefill_tokens_per_s: r2(perSecond(s.prefillTokens, s.prefillMs)), decode_tokens_per_s: r2(perSecond(s.decodeSteps, s.decodeMs)),
    // resourceUsage().maxRSS is in KiB.
    peak_rss_mib: r2(process.resourceUsage().maxRSS / 1024), finish_reason: finishReason, kernel_path: kernel,
  };
}

/** One line after each answer: "[12 tokens, 250.3 tokens/s; prompt 30 tokens at 800.1 tokens/s]". */
export function speedLine(s: GenerateStats): string {
  return `[${s.generatedTokens} tokens, ${perSecond(s.decodeSteps, s.decodeMs).toFixed(1)} tokens/s; ` +
    `prefill ${s.prefillTokens} tokens at ${perSecond(s.prefillTokens, s.prefillMs).toFixed(1)} tokens/s]`;
}

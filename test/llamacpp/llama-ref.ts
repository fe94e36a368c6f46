/**
 * llama.cpp (via node-llama-cpp's prebuilt CPU binaries) as a reference engine for tests and
 * benchmarks: full per-position logits, llama.cpp-protocol perplexity and greedy decoding on
 * the SAME token ids our engine sees. Nothing is downloaded or built: `build: "never"`.
 */
import { getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";
import { perplexityWindows, tokenNll } from "../../src/metrics/perplexity.ts";

export interface LlamaRef {
  llama: Llama;
  model: LlamaModel;
  context: LlamaContext;
  seq: LlamaContextSequence;
  vocab: number;
  dispose(): Promise<void>;
}

/**
 * Load a GGUF with an exact-as-possible CPU setup: F32 KV cache (the default is F16),
 * no flash attention, one batch per window, `threads` threads (tests use 1: vitest runs
 * two files at once on two cores).
 */
export async function openLlamaRef(ggufPath: string, opts: { contextSize: number; threads: number; vocab: number }): Promise<LlamaRef> {
  const llama = await getLlama({
    gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, progressLogs: false,
    logLevel: LlamaLogLevel.error, maxThreads: opts.threads,
  });
  const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0, useMmap: true });
  const context = await model.createContext({
    contextSize: opts.contextSize, batchSize: opts.contextSize, threads: opts.threads, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
  });
  const seq = context.getSequence();
  return {
    llama, model, context, seq, vocab: opts.vocab,
    dispose: async () => { await context.dispose(); await model.dispose(); await llama.dispose(); },
  };
}

/** Feed `tokens` from an empty sequence; logits [positions.length, V] at the given positions (all when omitted). */
export async function llamaLogits(ref: LlamaRef, tokens: readonly number[], positions?: readonly number[]): Promise<Float32Array> {
  const want = new Set(positions ?? tokens.map((_, i) => i));
  await ref.seq.clearHistory();
  const input = tokens.map((t, i) => (want.has(i) ? ([t as Token, { generateNext: { logits: true } }] as const) : (t as Token)));
  const res = await ref.seq.controlledEvaluate(input as Parameters<LlamaContextSequence["controlledEvaluate"]>[0]);
  const order = [...want].sort((a, b) => a - b);
  const V = ref.vocab;
  const out = new Float32Array(order.length * V);
  order.forEach((p, r) => {
    const logits = res[p]?.next.logits;
    if (logits === undefined || logits.size !== V) throw new Error(`llama.cpp returned no full logits at position ${p}`);
    for (const [id, v] of logits) out[r * V + id] = v;
  });
  return out;
}

export interface LlamaPerplexity { ppl: number; nll: number; tokensScored: number; windows: number; seconds: number }

/** llama.cpp protocol (src/metrics/perplexity.ts `perplexityWindows`), scored by llama.cpp. */
export async function llamaPerplexity(
  ref: LlamaRef, tokens: readonly number[], ctx: number, bosId: number | null, maxWindows = Infinity,
): Promise<LlamaPerplexity> {
  const { windows, first } = perplexityWindows(tokens, "llama.cpp", ctx, bosId);
  const use = windows.slice(0, maxWindows);
  const positions = Array.from({ length: ctx - 1 - first }, (_, i) => first + i);
  const V = ref.vocab;
  const t0 = performance.now();
  let sum = 0, scored = 0;
  for (const win of use) {
    const logits = await llamaLogits(ref, win, positions);
    positions.forEach((p, r) => { sum += tokenNll(logits, r * V, V, win[p + 1]!); scored++; });
  }
  const nll = sum / scored;
  return { ppl: Math.exp(nll), nll, tokensScored: scored, windows: use.length, seconds: (performance.now() - t0) / 1000 };
}

/** Greedy decoding of `n` tokens after `prompt`, from an empty sequence. */
export async function llamaGreedy(ref: LlamaRef, prompt: readonly number[], n: number): Promise<number[]> {
  await ref.seq.clearHistory();
  const out: number[] = [];
  let input: Parameters<LlamaContextSequence["controlledEvaluate"]>[0] =
    prompt.map((t, i) => (i === prompt.length - 1 ? [t as Token, { generateNext: { token: true, options: { temperature: 0 } } }] : (t as Token)));
  for (let i = 0; i < n; i++) {
    const res = await ref.seq.controlledEvaluate(input);
    const next = res.at(-1)?.next.token;
    if (next === undefined || next === null) throw new Error(`llama.cpp produced no token at step ${i}`);
    out.push(next);
    input = [[next, { generateNext: { token: true, options: { temperature: 0 } } }]];
  }
  return out;
}

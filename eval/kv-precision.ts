/**
 * What an f16 KV cache does to a model's output (issue 9: the KV precision default): per
 * model, the held-out perplexity with an f32 and an f16 cache (gptq protocol, 512-token
 * windows of the bundled eval text, every token scored), and greedy generation from
 * `--prompts` prompts (`--prompt-len` tokens cut from the eval text, `--gen` new tokens each)
 * on both caches: how many ids agree position by position, and how many runs agree in full.
 * The rounding applies to keys (after RoPE) and values as they are written (nn/block.ts);
 * everything else is the same build and backend.
 *
 * Quantized models of the bundled one: `quantize-llm gptq --bits 4 --group-size 128 --out DIR` (awq the same),
 * `quantize-llm export --format gguf --type q4_0 --output FILE` (eval/reports/kv-precision.md names the settings).
 *
 *   /work/bin/heavy npx tsx eval/kv-precision.ts [--models models/qllm-tiny,/tmp/kvf16/gptq,…]
 *         [--threads 2] [--prompts 8] [--prompt-len 64] [--gen 64] [--write eval/reports/kv-precision.md]
 */
import { execSync } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { BUNDLED_EVAL_TEXT, BUNDLED_MODEL_DIR } from "../src/load/paths.ts";
import { loadModel } from "../src/load/hf-folder.ts";
import { perplexity } from "../src/metrics/perplexity.ts";
import { selectBackend } from "../src/backend/select.ts";
import type { KvDType, Model } from "../src/nn/model.ts";

const { values: opts } = parseArgs({
  options: {
    models: { type: "string", default: BUNDLED_MODEL_DIR }, threads: { type: "string", default: "2" },
    prompts: { type: "string", default: "8" }, "prompt-len": { type: "string", default: "64" }, gen: { type: "string", default: "64" },
    write: { type: "string" },
  },
});
const backend = selectBackend({ threads: Number(opts.threads) });
const nPrompts = Number(opts.prompts), promptLen = Number(opts["prompt-len"]), genLen = Number(opts.gen);
const KVS: KvDType[] = ["f32", "f16"];

/** Greedy ids after `prompt` on a fresh cache of element type kv. */
function greedy(model: Model, prompt: number[], kv: KvDType): number[] {
  const V = model.cfg.vocabSize;
  const cache = model.newCache(prompt.length + genLen, kv);
  let logits = model.forward(prompt, cache, { logits: "last" });
  const ids: number[] = [];
  for (let i = 0; i < genLen; i++) {
    let best = 0;
    for (let j = 1; j < V; j++) if (logits[j]! > logits[best]!) best = j;
    ids.push(best);
    if (i + 1 < genLen) logits = model.forward([best], cache, { logits: "last" });
  }
  return ids;
}

const commit = execSync("git rev-parse --short HEAD", { encoding: "utf8" }).trim();
const lines: string[] = [];
const say = (s: string): void => { console.log(s); lines.push(s); };
say(`Models on the ${backend.name} backend (${(backend as { kernelLevel?: string }).kernelLevel ?? "plain TS"}), ${backend.threads} threads, packed weights, int8 activations; perplexity: gptq protocol, ctx 512, ${BUNDLED_EVAL_TEXT.split("/").slice(-3).join("/")}; ` +
  `greedy: ${nPrompts} prompts of ${promptLen} tokens (evenly spaced in the eval text), ${genLen} new ids each, f32 vs f16 cache.`);
say("");
say("| model | ppl f32 | ppl f16 | Δ ppl | ids equal | runs equal | where the others first differ |");
say("|---|---:|---:|---:|---:|---:|---:|");
for (const dir of opts.models.split(",")) {
  const { model, tokenizer } = await loadModel(dir, backend);
  const tokens = tokenizer.encode(readFileSync(BUNDLED_EVAL_TEXT, "utf8"), { addSpecial: true });
  const ppl = KVS.map((kv) => perplexity(model, tokens, { protocol: "gptq", ctx: 512, bosId: tokenizer.bosId, kv }).ppl);
  let same = 0, total = 0, runsSame = 0;
  const firstDiff: number[] = [];
  for (let p = 0; p < nPrompts; p++) {
    const at = Math.floor((p * (tokens.length - promptLen)) / nPrompts);
    const prompt = tokens.slice(at, at + promptLen);
    const [a, b] = KVS.map((kv) => greedy(model, prompt, kv)) as [number[], number[]];
    let k = 0;
    while (k < genLen && a[k] === b[k]) k++;
    firstDiff.push(k);
    if (k === genLen) runsSame++;
    for (let i = 0; i < genLen; i++) { total++; if (a[i] === b[i]) same++; }
  }
  const diverged = firstDiff.filter((k) => k < genLen).sort((x, y) => x - y);
  say(`| ${dir.split("/").pop()} | ${ppl[0]!.toFixed(4)} | ${ppl[1]!.toFixed(4)} | ${(ppl[1]! - ppl[0]!).toFixed(4)} | ` +
    `${same}/${total} | ${runsSame}/${nPrompts} | ${diverged.length === 0 ? "–" : `new id ${diverged.join(", ")}`} |`);
}
if (opts.write !== undefined) {
  const tmp = `${opts.write}.tmp`;
  writeFileSync(tmp, `# KV cache precision: f32 vs f16 (eval/kv-precision.ts)\n\n\`npx tsx eval/kv-precision.ts --models ${opts.models}\`` +
    ` (commit ${commit})\n\n${lines.join("\n")}\n`);
  renameSync(tmp, opts.write);
}

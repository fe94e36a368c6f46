/**
 * What the quality programs (gptq-results.ts, group-grid.ts) share: their flags
 * (--threads, --calib-samples, --quick, --write) and the held-out perplexity of a model
 * folder on the bundled evaluation text (gptq protocol: 512-token windows, every token scored).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { BUNDLED_EVAL_TEXT, loadHfModel, perplexity, selectBackend } from "../src/index.ts";

export function qualityRun() {
  const { values } = parseArgs({ options: {
    threads: { type: "string" }, "calib-samples": { type: "string" }, write: { type: "boolean" }, quick: { type: "boolean" },
  } });
  const threads = Number(values.threads ?? 2);
  const backend = selectBackend({ threads });
  const calibSamples = Number(values["calib-samples"] ?? 128);
  /** Held-out perplexity of the model folder `dir` on models/qllm-tiny/data/eval.txt. */
  const ppl = async (dir: string): Promise<number> => {
    const { model, tokenizer } = await loadHfModel(dir, backend);
    const tokens = tokenizer.encode(readFileSync(BUNDLED_EVAL_TEXT, "utf8"), { addSpecial: true });
    return perplexity(model, tokens, { protocol: "gptq", ctx: 512, bosId: tokenizer.bosId }).ppl;
  };
  return { values, threads, backend, calibSamples, ppl };
}

/** The flags `chat` shares between its engines: sampler, limits, stop strings. */
import { samplerOptions, type SamplerOptions } from "../generate/sampler.ts";
import { UsageError } from "../util/errors.ts";

/** Flag name → [sampler option, default]. */
const SAMPLER_FLAGS: Record<string, [keyof SamplerOptions, number]> = {
  temperature: ["temperature", 0.7],
  "top-k": ["topK", 40],
  "top-p": ["topP", 0.95],
  "min-p": ["minP", 0],
  "repeat-penalty": ["repetitionPenalty", 1],
  "frequency-penalty": ["frequencyPenalty", 0],
  "presence-penalty": ["presencePenalty", 0],
  "repeat-last-n": ["penaltyLastN", 64],
  seed: ["seed", 0],
};

export const SAMPLER_FLAG_SPECS = Object.fromEntries(Object.keys(SAMPLER_FLAGS).map((f) => [f, { type: "string" as const }])) as
  Record<keyof typeof SAMPLER_FLAGS, { type: "string" }>;

export const SAMPLER_USAGE = `  --temperature T       0 = greedy (default 0.7)
  --top-k N             keep the N most likely tokens, 0 = off (default 40)
  --top-p P             nucleus sampling, 1 = off (default 0.95)
  --min-p P             drop tokens below P · p(best), 0 = off (default 0)
  --repeat-penalty R    CTRL repetition penalty, 1 = off (default 1)
  --frequency-penalty F, --presence-penalty P   OpenAI-style, in [-2, 2] (default 0)
  --repeat-last-n N     tokens the penalties look back over (default 64)
  --seed N              sampling seed: same seed, same text (default 0)
`;

/** Which sampler flags the user gave (an engine that cannot honour one refuses it). */
export function givenSamplerFlags(values: Record<string, unknown>): string[] {
  return Object.keys(SAMPLER_FLAGS).filter((f) => values[f] !== undefined);
}

export function samplerFromFlags(values: Record<string, unknown>): SamplerOptions {
  const partial: Partial<SamplerOptions> = {};
  const flagOf = new Map<keyof SamplerOptions, string>();
  for (const [flag, [opt, dflt]] of Object.entries(SAMPLER_FLAGS)) {
    const v = values[flag];
    flagOf.set(opt, `--${flag}`);
    if (v !== undefined && typeof v !== "string") throw new UsageError(`invalid value for --${flag}`, { field: `--${flag}`, found: String(v) });
    const n = v === undefined ? dflt : v.trim() === "" ? NaN : Number(v);
    partial[opt] = n;
  }
  return samplerOptions(partial, (k) => flagOf.get(k) ?? k);
}

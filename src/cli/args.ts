/** Shared flag parsing helpers: every numeric flag is validated with a typed error. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../util/errors.ts";

export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`bad arguments for "${command}"`, {
      found: (e as Error).message, hint: `run "quantize-llm ${command} --help" for the list of flags`,
    });
  }
}

export function intFlag(name: string, v: string | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`invalid value for --${name}`, { field: `--${name}`, expected: `an integer ≥ ${min}`, found: JSON.stringify(v) });
  }
  return n;
}

export function choiceFlag<C extends string>(name: string, v: string | undefined, choices: readonly C[], dflt: C): C {
  if (v === undefined) return dflt;
  if (!(choices as readonly string[]).includes(v)) {
    throw new UsageError(`invalid value for --${name}`, { field: `--${name}`, expected: `one of ${choices.join(", ")}`, found: JSON.stringify(v) });
  }
  return v as C;
}

export function onePositional(command: string, positionals: string[]): string | undefined {
  if (positionals.length > 1) {
    throw new UsageError(`"${command}" takes at most one model argument`, {
      expected: "one model path", found: positionals.join(" "), hint: "quote paths that contain spaces",
    });
  }
  return positionals[0];
}

/** Shared flag parsing helpers: every numeric flag is validated with a typed error. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../util/errors.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** A negative number is a value, never a flag: `--group-size -1`, `--damp -1e-3`. */
const NEGATIVE_NUMBER = /^-(\d|\.\d)/;

/**
 * node:util parseArgs refuses `--opt -1` ("argument is ambiguous"): a string option
 * followed by a negative number is rewritten to `--opt=-1` first (short `-x -1` too).
 */
export function joinNegativeValues(argv: readonly string[], options: Options): string[] {
  const out: string[] = [];
  const takesValue = (tok: string): string | null => {
    if (tok.startsWith("--") && !tok.includes("=")) return options[tok.slice(2)]?.type === "string" ? tok : null;
    if (/^-[^-]$/.test(tok)) {
      const long = Object.entries(options).find(([, o]) => o.short === tok[1])?.[0];
      return long !== undefined && options[long]!.type === "string" ? `--${long}` : null;
    }
    return null;
  };
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!, next = argv[i + 1];
    if (tok === "--") { out.push(...argv.slice(i)); break; }
    const long = takesValue(tok);
    if (long !== null && next !== undefined && NEGATIVE_NUMBER.test(next)) { out.push(`${long}=${next}`); i++; } else out.push(tok);
  }
  return out;
}

export function parseFlags<T extends Options>(command: string, argv: string[], options: T) {
  try {
    return parseArgs({ args: joinNegativeValues(argv, options), options, allowPositionals: true, strict: true });
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

/** `--group-size`: −1 (one group per row) or a size ≥ 8; the usual ones are listed. */
export function groupSizeFlag(v: string | undefined, dflt: number, usual: readonly number[]): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || !(n === -1 || n >= 8)) {
    throw new UsageError("invalid value for --group-size", {
      field: "--group-size", expected: `${usual.join(", ")} (-1 = one group per row), or another integer ≥ 8 dividing every layer's input size`,
      found: JSON.stringify(v), hint: "128 is the usual choice; 32 maps exactly onto GGUF Q4_0/Q4_1/Q8_0",
    });
  }
  return n;
}

/** An integer from a fixed list (`--bits`), with a hint on what the choices mean. */
export function intChoiceFlag(name: string, v: string | undefined, choices: readonly number[], dflt: number, summary: string, hint: string): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!choices.includes(n)) {
    throw new UsageError(summary, { field: `--${name}`, expected: `one of ${choices.join(", ")}`, found: JSON.stringify(v), hint });
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

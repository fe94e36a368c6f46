/**
 * Typed errors for every boundary (CLI, files, configs). Each says WHERE (file, field),
 * what was EXPECTED, what was FOUND, and a HINT on how to fix it. Internal invariants
 * use `invariant()` instead: those are bugs, not user errors.
 */

export interface ErrorDetails {
  /** File the problem is in, when there is one. */
  file?: string;
  /** Field, tensor name or key inside that file. */
  field?: string;
  expected?: string;
  found?: string;
  hint?: string;
}

export class QuantizeLlmError extends Error {
  readonly code: string;
  readonly details: ErrorDetails;
  constructor(code: string, summary: string, details: ErrorDetails = {}) {
    super(formatMessage(summary, details));
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }
}

function formatMessage(summary: string, d: ErrorDetails): string {
  const lines = [summary];
  if (d.file !== undefined) lines.push(`  file:     ${d.file}`);
  if (d.field !== undefined) lines.push(`  field:    ${d.field}`);
  if (d.expected !== undefined) lines.push(`  expected: ${d.expected}`);
  if (d.found !== undefined) lines.push(`  found:    ${d.found}`);
  if (d.hint !== undefined) lines.push(`  hint:     ${d.hint}`);
  return lines.join("\n");
}

/** A file is malformed: truncated, bad header, inconsistent offsets, ... */
export class FormatError extends QuantizeLlmError {
  constructor(summary: string, details: ErrorDetails = {}) {
    super("E_FORMAT", summary, details);
  }
}

/** A model config (config.json, tokenizer files) is missing, invalid or unsupported. */
export class ConfigError extends QuantizeLlmError {
  constructor(summary: string, details: ErrorDetails = {}) {
    super("E_CONFIG", summary, details);
  }
}

/** A command-line argument or API option is invalid. */
export class UsageError extends QuantizeLlmError {
  constructor(summary: string, details: ErrorDetails = {}) {
    super("E_USAGE", summary, details);
  }
}

/** An optional dependency or the native addon is missing. */
export class DependencyError extends QuantizeLlmError {
  constructor(summary: string, details: ErrorDetails = {}) {
    super("E_DEPENDENCY", summary, details);
  }
}

/** A computation could not go on with the numbers it got (NaN/Inf, a Hessian not positive definite at any damping). */
export class NumericError extends QuantizeLlmError {
  constructor(summary: string, details: ErrorDetails = {}) {
    super("E_NUMERIC", summary, details);
  }
}

/**
 * The one finiteness check of arrays that flow into or out of the quantizers: a NaN or Inf
 * is a NumericError naming what was checked, the first bad index and value, and `file`
 * (the checkpoint) when known.
 */
export function assertFinite(a: ArrayLike<number>, what: string, file?: string): void {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) throw nonFiniteError(what, i, a[i]!, file);
}

/** The error assertFinite throws, for checks made elsewhere (a native scan reports the index). */
export function nonFiniteError(what: string, i: number, value: number, file?: string): NumericError {
  return new NumericError(`${what} contains NaN or Inf`, {
    ...(file !== undefined ? { file } : {}), field: `${what}[${i}]`, expected: "finite values", found: String(value),
    hint: "the checkpoint is corrupt or overflowed in its dtype; check it with quantize-llm eval before quantizing",
  });
}

/** The user interrupted a long run (Ctrl-C / an aborted signal); `file` is the work folder kept for --resume. */
export class InterruptedError extends QuantizeLlmError {
  constructor(work: string) {
    super("E_INTERRUPTED", "quantization interrupted", {
      file: work, hint: "run the same command with --resume to continue from the last finished block",
    });
  }
}

/** An internal invariant was violated: a bug in quantize-llm, not bad input. */
export class InvariantError extends Error {
  constructor(message: string) {
    super(`internal error (please report): ${message}`);
    this.name = "InvariantError";
  }
}

export function invariant(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new InvariantError(typeof message === "string" ? message : message());
}

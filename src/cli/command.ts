/**
 * One entry per CLI command. main.ts holds the table; each command lives in its
 * own file and parses its own flags with node:util parseArgs.
 */
export interface Command {
  name: string;
  /** One line for `quantize-llm --help`. */
  summary: string;
  /** Full usage text for `quantize-llm <name> --help`. */
  usage: string;
  /** Runs the command; returns the process exit code. Throw QuantizeLlmError for user errors. */
  run(argv: string[]): Promise<number>;
}

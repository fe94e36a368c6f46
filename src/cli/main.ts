/** quantize-llm command-line entry: a table of commands, typed errors printed without stack traces. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../load/paths.ts";
import { QuantizeLlmError } from "../util/errors.ts";
import { fromSystemError, isSystemError } from "../util/fs-errors.ts";
import type { Command } from "./command.ts";
import { evalCommand } from "./eval.ts";
import { chatCommand } from "./chat.ts";
import { awqCommand, gptqCommand, rtnCommand } from "./quantize.ts";
import { exportCommand } from "./export.ts";
import { int8Command } from "./int8.ts";
import { serveCommand } from "./serve.ts";
import { inspectCommand } from "./inspect.ts";

const COMMANDS: readonly Command[] = [gptqCommand, awqCommand, rtnCommand, int8Command, evalCommand, exportCommand, chatCommand, serveCommand, inspectCommand];

function help(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "usage: quantize-llm <command> [model] [options]",
    "       quantize-llm --version",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    "",
    'Every command that takes a model uses the bundled model (models/qllm-tiny) when none is given.',
    'Run "quantize-llm <command> --help" for its options.',
    "",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(help());
    return name === undefined ? 1 : 0;
  }
  if (name === "--version" || name === "-v" || name === "version") {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string };
    process.stdout.write(`quantize-llm ${pkg.version} (node ${process.versions.node})\n`);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`error: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof QuantizeLlmError) {
      process.stderr.write(`error: ${e.message}\n`);
      return 2;
    }
    if (isSystemError(e)) {
      // File-system failures (disk full, permissions, a vanished file): operation, path, errno, hint; no stack trace.
      process.stderr.write(`error: ${fromSystemError(e).message}\n`);
      return 2;
    }
    throw e;
  }
}

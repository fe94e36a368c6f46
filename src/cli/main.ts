/** quantize-llm command-line entry: a table of commands, typed errors printed without stack traces. */
import { QuantizeLlmError } from "../util/errors.ts";
import type { Command } from "./command.ts";
import { evalCommand } from "./eval.ts";
import { chatCommand } from "./chat.ts";
import { awqCommand, gptqCommand, rtnCommand } from "./quantize.ts";
import { exportCommand } from "./export.ts";
import { int8Command } from "./int8.ts";
import { serveCommand } from "./serve.ts";

const COMMANDS: readonly Command[] = [gptqCommand, awqCommand, rtnCommand, int8Command, evalCommand, exportCommand, chatCommand, serveCommand];

function help(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "usage: quantize-llm <command> [model] [options]",
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
    const sys = e as NodeJS.ErrnoException;
    if (typeof sys?.code === "string" && typeof sys.syscall === "string") {
      // File-system failures (disk full, permissions, a vanished file): say what and where, no stack trace.
      const hints: Record<string, string> = {
        ENOSPC: "the disk is full: free space and rerun (with --resume for quantization); outputs are written under a temporary name, so nothing incomplete was left under the final name",
        EACCES: "check the permissions of the output folder",
        ENOENT: "check the path",
      };
      process.stderr.write(`error: ${sys.syscall} failed (${sys.code})\n  file:     ${sys.path ?? "?"}\n  hint:     ${hints[sys.code] ?? "see the system error above"}\n`);
      return 2;
    }
    throw e;
  }
}

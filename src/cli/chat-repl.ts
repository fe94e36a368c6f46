/**
 * The interactive chat loop, shared by both engines: one line per message, answers
 * streamed; /reset starts over, /exit or Ctrl-D quits, Ctrl-C stops the current
 * answer (a second Ctrl-C quits). An input error is reported, not taken for the end.
 */
import { createInterface } from "node:readline";
import type { TurnOptions } from "../generate/conversation.ts";
import type { GenerateResult } from "../generate/engine.ts";
import { speedLine } from "../generate/report.ts";
import { QuantizeLlmError, UsageError } from "../util/errors.ts";

/** What the loop needs from an engine's conversation. */
export interface Chatter {
  ask(user: string, o: TurnOptions): Promise<GenerateResult>;
  reset(): void | Promise<void>;
}

export interface ReplIo {
  input: NodeJS.ReadableStream & { isTTY?: boolean };
  output: NodeJS.WritableStream;
  /** Speed lines and errors. */
  err: NodeJS.WritableStream;
}

export async function repl(
  chat: Chatter, turn: TurnOptions, title: string, io: ReplIo = { input: process.stdin, output: process.stdout, err: process.stderr },
): Promise<number> {
  const out = io.output;
  const rl = createInterface({ input: io.input, output: out, terminal: io.input.isTTY === true });
  let current: AbortController | null = null;
  let interrupts = 0;
  const onInterrupt = (): void => {
    if (current) { current.abort(); return; }
    if (++interrupts >= 2) { out.write("\n"); rl.close(); return; }
    out.write("\n(Ctrl-C again, Ctrl-D or /exit quits)\n");
    rl.prompt();
  };
  rl.on("SIGINT", onInterrupt);
  process.on("SIGINT", onInterrupt);
  out.write(`chat with ${title} — /reset starts over, /exit or Ctrl-D quits, Ctrl-C stops an answer\n`);
  rl.setPrompt("> ");
  rl.prompt();
  try {
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === "/exit" || line === "/quit") break;
      if (line === "/reset") { await chat.reset(); out.write("(conversation reset)\n"); rl.prompt(); continue; }
      if (line === "") { rl.prompt(); continue; }
      interrupts = 0;
      current = new AbortController();
      try {
        const r = await chat.ask(raw, { ...turn, signal: current.signal });
        out.write(r.finishReason === "cancelled" ? " [stopped]\n" : "\n");
        if (r.finishReason === "cancelled") interrupts = 1; // a second Ctrl-C quits
        io.err.write(`${speedLine(r.stats)}\n`);
      } catch (e) {
        if (!(e instanceof QuantizeLlmError)) throw e;
        io.err.write(`error: ${e.message}\n`);
      } finally {
        current = null;
      }
      rl.prompt();
    }
  } catch (e) {
    // The end of input ends the loop above; anything else is an error to report.
    throw new UsageError("reading the terminal input failed", { found: (e as Error).message, hint: "is stdin readable? use --prompt for one-shot use" });
  } finally {
    process.off("SIGINT", onInterrupt);
    rl.close();
  }
  return 0;
}

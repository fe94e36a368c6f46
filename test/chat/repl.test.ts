/**
 * The interactive chat loop: two turns, /reset, /exit on a scripted input (answers equal
 * a Conversation's own); an input error is reported, not taken for the end of input; and
 * at the command line, SIGINT (Ctrl-C) stops an answer and returns to the prompt, a
 * second one quits, and Ctrl-D (end of input) quits.
 */
import { spawn } from "node:child_process";
import { PassThrough } from "node:stream";
import { beforeAll, describe, expect, test } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
import { repl } from "../../src/cli/chat-repl.ts";
import { Conversation } from "../../src/generate/conversation.ts";
import { Session } from "../../src/generate/engine.ts";
import { samplerOptions } from "../../src/generate/sampler.ts";
import { loadModel, type LoadedModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_MODEL_DIR, PACKAGE_ROOT } from "../../src/load/paths.ts";
import { UsageError } from "../../src/util/errors.ts";

let m: LoadedModel;
beforeAll(async () => { m = await loadModel(BUNDLED_MODEL_DIR, selectBackend({ threads: 1 })); });

/** A writable that collects text. */
function sink(): { stream: PassThrough; text(): string } {
  const stream = new PassThrough();
  let t = "";
  stream.on("data", (d: Buffer) => { t += d.toString(); });
  return { stream, text: () => t };
}

const turnOpts = { maxTokens: 12, sampler: samplerOptions({}) };

describe("chat loop", () => {
  test("two turns, /reset, /exit: the answers a Conversation gives, in order", async () => {
    const input = new PassThrough();
    const out = sink();
    const err = sink();
    const conv = new Conversation(new Session(m.model), m.tokenizer);
    const done = repl(conv, { ...turnOpts, onText: (d) => out.stream.write(d) }, "tiny", { input, output: out.stream, err: err.stream });
    input.write("Who was there?\nAnd then?\n/reset\nWho was there?\n/exit\nnever read\n");
    expect(await done).toBe(0);
    const ref = new Conversation(new Session(m.model), m.tokenizer);
    const a1 = (await ref.ask("Who was there?", turnOpts)).text;
    const a2 = (await ref.ask("And then?", turnOpts)).text;
    expect(out.text()).toBe(
      "chat with tiny — /reset starts over, /exit or Ctrl-D quits, Ctrl-C stops an answer\n" +
      `> ${a1}\n> ${a2}\n> (conversation reset)\n> ${a1}\n> `,
    );
    expect(err.text().match(/\[\d+ tokens, [\d.]+ tokens\/s; prefill \d+ tokens at [\d.]+ tokens\/s\]/g)).toHaveLength(3);
    expect(conv.messages).toHaveLength(2); // after /reset: one turn
  });

  test("an input error is reported, not treated as the end of input", async () => {
    const input = new PassThrough();
    const out = sink();
    const conv = new Conversation(new Session(m.model), m.tokenizer);
    const done = repl(conv, turnOpts, "tiny", { input, output: out.stream, err: sink().stream });
    input.write("Who was there?\n");
    setTimeout(() => input.destroy(Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" })), 50);
    const e = await done.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).toMatch(/reading the terminal input failed[\s\S]*EIO: i\/o error/);
  });

  test("at the command line: Ctrl-C stops an answer and returns to the prompt, a second quits; Ctrl-D quits", async () => {
    const run = (script: (child: ReturnType<typeof spawn>, out: () => string) => void): Promise<{ code: number | null; out: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [`${PACKAGE_ROOT}bin/quantize-llm.js`, "chat", "--max-tokens", "400", "--ignore-eos", "--temperature", "0"], {
          env: { ...process.env, QLLM_THREADS: "1" },
        });
        let out = "";
        child.stdout!.on("data", (d: Buffer) => { out += d.toString(); });
        script(child, () => out);
        child.on("exit", (code) => resolve({ code, out }));
      });
    const waitFor = (get: () => string, re: RegExp): Promise<void> => new Promise((r) => {
      const t = setInterval(() => { if (re.test(get())) { clearInterval(t); r(); } }, 10);
    });
    const interrupted = await run(async (child, out) => {
      await waitFor(out, /\n> $/);
      child.stdin!.write("Who was there?\n");
      await waitFor(out, /> \S+/); // the answer has started streaming
      child.kill("SIGINT");
      await waitFor(out, / \[stopped\]\n> $/);
      child.kill("SIGINT");
    });
    expect(interrupted.code).toBe(0);
    expect(interrupted.out).toMatch(/ \[stopped\]\n> \n$/);
    // 400 tokens were asked for: the answer was cut short.
    const answer = /> (.*) \[stopped\]/s.exec(interrupted.out)![1]!;
    expect(m.tokenizer.encode(answer, { addSpecial: false }).length).toBeLessThan(300);
    const eof = await run(async (child, out) => { await waitFor(out, /\n> $/); child.stdin!.end(); });
    expect(eof.code).toBe(0);
  });
});

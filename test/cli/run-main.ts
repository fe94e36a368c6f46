/** Runs the CLI's main() in this process with stdout/stderr captured: the user's view, without a process start per case. */
import { main } from "../../src/cli/main.ts";

export interface CliResult { status: number; stdout: string; stderr: string }

export async function runMain(...argv: string[]): Promise<CliResult> {
  let stdout = "", stderr = "";
  const out = process.stdout.write.bind(process.stdout), err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string | Uint8Array) => { stdout += String(s); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => { stderr += String(s); return true; }) as typeof process.stderr.write;
  try {
    const status = await main(argv);
    return { status, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

/**
 * Which backend a command runs on: "native" (the C++ addon), "ref" (plain TS),
 * or "auto" — native when the addon loads, else ref with a warning on stderr.
 */
import os from "node:os";
import { DependencyError, UsageError } from "../util/errors.ts";
import type { Backend } from "./backend.ts";
import { createNativeBackend } from "./native.ts";
import { refBackend } from "./ref.ts";

export type BackendChoice = "auto" | "native" | "ref";

export interface SelectBackendOptions {
  backend?: BackendChoice;
  /** Native pool size (default: defaultThreads()). The ref backend is single-threaded. */
  threads?: number;
}

const CHOICES: readonly BackendChoice[] = ["auto", "native", "ref"];

/** Threads for the native pool: env QLLM_THREADS if set, else one per core. */
export function defaultThreads(): number {
  const env = process.env["QLLM_THREADS"];
  if (env !== undefined && env.trim() !== "") {
    const n = Number(env);
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new UsageError("QLLM_THREADS must be a positive integer", {
        field: "QLLM_THREADS", expected: "an integer ≥ 1", found: JSON.stringify(env),
        hint: "unset it to use one thread per core",
      });
    }
    return n;
  }
  return os.availableParallelism();
}

// The fallback warning is printed once per process, however many models load:
// inherently process state, hence this one module-level flag.
let warnedFallback = false;

export function selectBackend(opts: SelectBackendOptions = {}): Backend {
  const choice = opts.backend ?? "auto";
  if (!CHOICES.includes(choice)) {
    throw new UsageError("unknown backend", { field: "backend", expected: CHOICES.join(" | "), found: String(choice) });
  }
  if (choice === "ref") return refBackend;
  const threads = opts.threads ?? defaultThreads();
  if (choice === "native") return createNativeBackend({ threads });
  try {
    return createNativeBackend({ threads });
  } catch (e) {
    if (!(e instanceof DependencyError)) throw e;
    if (!warnedFallback) {
      warnedFallback = true;
      process.stderr.write(`warning: using the slow reference backend.\n${e.message}\n`);
    }
    return refBackend;
  }
}

/** Where the bundled model lives, and model-argument resolution shared by every command. */
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";

/** Root of the installed package (the folder holding package.json). */
export const PACKAGE_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The small trained model shipped in models/ so every command works offline. */
export const BUNDLED_MODEL_DIR = resolve(PACKAGE_ROOT, "models", "qllm-tiny");

/** Held-out evaluation text of the bundled model (never used for calibration). */
export const BUNDLED_EVAL_TEXT = resolve(BUNDLED_MODEL_DIR, "data", "eval.txt");

/** Calibration split of the bundled model. */
export const BUNDLED_CALIB_TEXT = resolve(BUNDLED_MODEL_DIR, "data", "calib.txt");

export function resolveModelArg(arg: string | undefined): string {
  return arg === undefined ? BUNDLED_MODEL_DIR : resolve(arg);
}

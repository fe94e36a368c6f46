/**
 * The resume journal (FORMATS.md §5): a JSON file in the work folder recording the
 * settings and every finished block. Rewritten atomically after each block, so a
 * kill -9 leaves either the old or the new journal, never a torn one.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../io/atomic.ts";
import { FormatError, UsageError } from "../util/errors.ts";
import type { LayerReport } from "./report.ts";

export const JOURNAL_MAGIC = "quantize-llm/journal";
export const JOURNAL_VERSION = 1;

export interface JournalBlock {
  index: number;
  /** Block file name inside the work folder. */
  file: string;
  layers: LayerReport[];
  seconds: number;
}

export interface Journal {
  magic: typeof JOURNAL_MAGIC;
  version: typeof JOURNAL_VERSION;
  model: string;
  /** Canonical JSON of the settings that produced the blocks. */
  settings: string;
  blocks: JournalBlock[];
}

export function readJournal(path: string): Journal | null {
  if (!existsSync(path)) return null;
  let j: Partial<Journal>;
  try { j = JSON.parse(readFileSync(path, "utf8")) as Partial<Journal>; } catch (e) {
    throw new FormatError("resume journal is not valid JSON", { file: path, found: (e as Error).message, hint: "delete the .partial folder to start over" });
  }
  if (j.magic !== JOURNAL_MAGIC) throw new FormatError("not a quantize-llm journal", { file: path, field: "magic", expected: JOURNAL_MAGIC, found: JSON.stringify(j.magic) });
  if (j.version !== JOURNAL_VERSION) {
    throw new FormatError("unsupported journal version", { file: path, field: "version", expected: String(JOURNAL_VERSION), found: JSON.stringify(j.version), hint: "resume with the quantize-llm version that started the run, or delete the .partial folder" });
  }
  return j as Journal;
}

export async function writeJournal(path: string, j: Journal): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(j, null, 1) + "\n");
}

export function checkResumable(j: Journal, model: string, settings: string, path: string): void {
  if (j.model !== model || j.settings !== settings) {
    throw new UsageError("the interrupted run used different settings", {
      file: path, expected: `model ${model}, settings ${settings}`, found: `model ${j.model}, settings ${j.settings}`,
      hint: "resume with the same command line, or delete the .partial folder to start over",
    });
  }
}

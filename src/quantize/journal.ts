/**
 * The resume journal (FORMATS.md §5): a JSON file in the work folder recording the
 * settings and every finished block. Rewritten atomically after each block, so a
 * kill -9 leaves either the old or the new journal, never a torn one. A block is listed
 * once its bytes are on disk: for a streamed output (quantize/output.ts) with the stream
 * position after it (a resume truncates the shards there), else with its block file.
 * Version 2: streamed HF folders (version 1 had a block file per block for every format).
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { isSystemError } from "../util/fs-errors.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { FormatError, UsageError } from "../util/errors.ts";
import type { LayerReport } from "./report.ts";
import type { StreamPosition } from "../io/safetensors-stream.ts";

export const JOURNAL_MAGIC = "quantize-llm/journal";
export const JOURNAL_VERSION = 2;

export interface JournalBlock {
  index: number;
  /** Block-file outputs: the block file's name inside the work folder. */
  file?: string;
  /** Streamed outputs: where the output stream ends after this block (synced before it was journaled). */
  end?: StreamPosition;
  layers: LayerReport[];
  seconds: number;
}

export interface Journal {
  magic: typeof JOURNAL_MAGIC;
  version: typeof JOURNAL_VERSION;
  model: string;
  /** Canonical JSON of the settings that produced the blocks. */
  settings: string;
  /** Streamed outputs: digest of the planned shard layout (a resume must plan the same). */
  layout?: string;
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
    throw new FormatError("unsupported journal version", { file: path, field: "version", expected: String(JOURNAL_VERSION), found: JSON.stringify(j.version), hint: "resume with the quantize-llm version that started the run, or pass --overwrite to discard it and start over" });
  }
  return j as Journal;
}

export async function writeJournal(path: string, j: Journal): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(j, null, 1) + "\n");
}

export function checkResumable(j: Journal, model: string, settings: string, path: string): void {
  if (j.model === model && j.settings === settings) return;
  // issue 10: name the fields that differ, old → new, instead of printing both JSON blobs
  const diffs = settingsDiff(j.settings, settings);
  if (j.model !== model) diffs.unshift(`model: ${j.model} → ${model}`);
  throw new UsageError("the interrupted run used different settings", {
    file: path, field: diffs.map((d) => d.split(":")[0]).join(", "),
    found: diffs.join("; ") + " (interrupted run → this command)",
    hint: "resume with the interrupted run's flags, or pass --overwrite (without --resume) to discard it and start over",
  });
}

/** `field: old → new` for every settings key whose value differs (keys missing on one side shown as "unset"). */
export function settingsDiff(oldJson: string, newJson: string): string[] {
  const parse = (t: string): Record<string, unknown> => { try { return JSON.parse(t) as Record<string, unknown>; } catch { return {}; } };
  const a = parse(oldJson), b = parse(newJson);
  const show = (v: unknown): string => (v === undefined ? "unset" : JSON.stringify(v));
  return [...new Set([...Object.keys(a), ...Object.keys(b)])]
    .filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
    .map((k) => `${k}: ${show(a[k])} → ${show(b[k])}`);
}

/**
 * After a run failed (not interrupted): keep its work folder only when --resume can use it,
 * i.e. a system error (disk full, I/O) after at least one finished block. Bad input found
 * mid-way would fail the same way again, so that journal is removed (issue 10). Returns the
 * kept folder, or null when it was removed (or there was none).
 */
export function discardFailedRun(work: string, err: unknown): string | null {
  const path = `${work}/journal.json`;
  let blocks = 0;
  try { blocks = readJournal(path)?.blocks.length ?? 0; } catch { /* an unreadable journal is useless too */ }
  if (isSystemError(err) && blocks > 0) return work;
  rmSync(work, { recursive: true, force: true });
  return null;
}

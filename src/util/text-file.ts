/**
 * Text inputs (--text, --eval-text, --calib-text) read with checks a user can act on: a
 * folder, a binary file (NUL bytes) or a non-UTF-8 file is refused before any compute,
 * with the byte offset of the first problem (a binary --text once ran for minutes and
 * printed perplexity 2e8).
 */
import { readFileSync, statSync } from "node:fs";
import { FormatError, UsageError } from "./errors.ts";
import { fromSystemError, isSystemError } from "./fs-errors.ts";

/** Offset of the first byte that is not part of a well-formed UTF-8 sequence, or -1. */
export function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length;) {
    const c = b[i]!;
    if (c < 0x80) { i++; continue; }
    const n = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (n < 0 || i + n >= b.length) return i;
    const c1 = b[i + 1]!;
    // second-byte ranges that exclude overlongs, surrogates and > U+10FFFF (Unicode Table 3-7)
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80, hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    if (c1 < lo || c1 > hi) return i;
    for (let k = 2; k <= n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return i;
    i += n + 1;
  }
  return -1;
}

/** Read a UTF-8 text file given by `flag`; refuses folders, binary files and invalid UTF-8. */
export function readTextFile(path: string, flag: string): string {
  let bytes: Buffer;
  try {
    if (statSync(path).isDirectory()) {
      throw new UsageError(`${flag} names a folder, not a text file`, { file: path, field: flag, expected: "a UTF-8 text file", found: "a folder", hint: "name the text file inside it" });
    }
    bytes = readFileSync(path);
  } catch (e) {
    if (isSystemError(e) && e.code === "ENOENT") throw new UsageError("text file not found", { file: path, field: flag, hint: "check the path" });
    throw isSystemError(e) ? fromSystemError(e, path) : e;
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    throw new FormatError(`${flag} is not a text file`, {
      file: path, field: flag, expected: "UTF-8 text", found: `a NUL byte at offset ${nul} (a binary file)`,
      hint: "pass a plain-text file, e.g. a WikiText-2 split saved as .txt",
    });
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const bad = firstInvalidUtf8(bytes);
    throw new FormatError(`${flag} is not UTF-8 text`, {
      file: path, field: flag, expected: "UTF-8 text", found: `byte 0x${bytes[bad]!.toString(16).padStart(2, "0")} at offset ${bad} starts no valid UTF-8 sequence`,
      hint: "convert the file to UTF-8 first, e.g. iconv -f latin1 -t utf-8 in.txt > out.txt",
    });
  }
}

/**
 * The rule for every command that writes (FORMATS.md §5, issue 10): check the target
 * before any compute. Its folder must exist and be writable; an existing target of the
 * wrong kind (a folder where a file goes, or a file where a folder goes) is an error even
 * with --overwrite, one of the right kind needs --overwrite.
 */
import { accessSync, constants, lstatSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { UsageError } from "./errors.ts";
import { fromSystemError, isSystemError } from "./fs-errors.ts";

export type OutputKind = "file" | "folder";

export interface OutputTargetOptions {
  /** The flag that named the target, e.g. "-o". */
  flag: string;
  /** The flag that allows replacing it, e.g. "--overwrite". */
  overwriteFlag: string;
  overwrite: boolean;
}

const what = (isDir: boolean): string => (isDir ? "a folder" : "a file");

export function checkOutputTarget(path: string, kind: OutputKind, o: OutputTargetOptions): void {
  const parent = dirname(path);
  try {
    if (!statSync(parent).isDirectory()) {
      throw new UsageError("the output's parent is not a folder", { file: parent, field: o.flag, expected: "a folder", found: "a file", hint: `choose another ${o.flag}` });
    }
    // access(2) reports the real cause (EROFS, EACCES); mkdir -p would say ENOENT on a read-only disk.
    accessSync(parent, constants.W_OK);
  } catch (e) {
    if (isSystemError(e) && e.code === "ENOENT") {
      throw new UsageError("output folder does not exist", { file: parent, field: o.flag, hint: `create it first (mkdir -p ${parent}), or choose another ${o.flag}` });
    }
    if (isSystemError(e)) {
      const err = fromSystemError(e, parent);
      throw new UsageError(`cannot write the output here: ${err.message.split("\n")[0]}`, { file: parent, field: o.flag, found: err.details.found!, hint: err.details.hint! });
    }
    throw e;
  }
  let isDir: boolean;
  try { isDir = lstatSync(path).isDirectory(); } catch (e) {
    if (isSystemError(e) && e.code === "ENOENT") return;
    throw isSystemError(e) ? fromSystemError(e, path) : e;
  }
  if (isDir !== (kind === "folder")) {
    throw new UsageError(`the output path is ${what(isDir)}`, {
      file: path, field: o.flag, expected: `${kind === "folder" ? "a folder" : "a file"} (or nothing)`, found: what(isDir),
      hint: `${o.overwriteFlag} only replaces ${kind === "folder" ? "a folder" : "a file"}; remove it yourself, or choose another ${o.flag}`,
    });
  }
  if (!o.overwrite) {
    throw new UsageError(`output ${kind} already exists`, { file: path, field: o.flag, hint: `pass ${o.overwriteFlag} to replace it, or choose another ${o.flag}` });
  }
}

/**
 * File-system failures as the user should read them: the operation, the path, the real
 * errno and a hint that applies. Used by main.ts for any system error that reaches the
 * top, and by the up-front output checks (output-target.ts).
 */
import { QuantizeLlmError, type ErrorDetails } from "./errors.ts";

/** An operation on a file or folder failed (errno and system message kept). */
export class FileSystemError extends QuantizeLlmError {
  readonly errno: string;
  constructor(summary: string, errno: string, details: ErrorDetails = {}) {
    super("E_FS", summary, details);
    this.errno = errno;
  }
}

/** What each errno means for someone running quantize-llm (no hint may say "see above"). */
const HINTS: Record<string, string> = {
  ENOSPC: "the disk is full: free space and rerun (with --resume for quantization); outputs are written under a temporary name, so nothing incomplete was left under the final name",
  EDQUOT: "your disk quota is used up: free space and rerun (with --resume for quantization)",
  EACCES: "you lack permission for this path: choose a folder you can write to, or fix its permissions",
  EPERM: "the operating system does not permit this here: choose another location",
  EROFS: "this file system is read-only: choose an output location on a writable disk (-o)",
  ENOENT: "the path or one of its parent folders does not exist: check the spelling, or create the folder first",
  ENOTDIR: "a part of this path is a file, not a folder: check the path",
  EISDIR: "this is a folder where a file is expected: name a file",
  EEXIST: "something already exists at this path: remove it or choose another name",
  ENOTEMPTY: "the folder is not empty: remove it or choose another name",
  EMFILE: "too many files are open: raise the limit (ulimit -n) and rerun",
  ENFILE: "the system has too many open files: close other programs and rerun",
  ENAMETOOLONG: "the path is too long: use a shorter path",
  ELOOP: "the path has a symbolic-link loop: check the links along it",
  EXDEV: "a rename crossed file systems: keep the output folder on one disk",
  EBUSY: "the file is in use by another program: close it and rerun",
  EIO: "the disk reported an input/output error: check the disk (dmesg) and rerun",
  EFBIG: "the file is larger than this file system allows: write to another file system, or use --max-shard-size",
};

const OPERATIONS: Record<string, string> = {
  open: "open", read: "read", write: "write", mkdir: "create folder", rmdir: "remove folder", unlink: "remove file",
  rename: "rename", stat: "stat", lstat: "stat", scandir: "list folder", access: "access", copyfile: "copy", fsync: "fsync",
  close: "close", ftruncate: "truncate", rm: "remove",
};

export function isSystemError(e: unknown): e is NodeJS.ErrnoException & { code: string } {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === "string" && /^E[A-Z0-9]+$/.test((e as NodeJS.ErrnoException).code!);
}

export function errnoHint(code: string): string {
  return HINTS[code] ?? `the operating system refused the operation (${code}): check the path, its permissions and free disk space`;
}

/** A Node system error as a FileSystemError; `path` stands in when the error carries none (readFileSync of a folder). */
export function fromSystemError(e: NodeJS.ErrnoException & { code: string }, path?: string): FileSystemError {
  const op = e.syscall !== undefined ? (OPERATIONS[e.syscall] ?? e.syscall) : "file operation";
  const where = e.path ?? path;
  const details: ErrorDetails = {
    file: where !== undefined ? where + ((e as { dest?: string }).dest !== undefined ? ` → ${(e as { dest?: string }).dest}` : "") : "(the system did not say which)",
    found: `${e.code}: ${e.message.replace(/^E[A-Z0-9]+: /, "")}`,
    hint: errnoHint(e.code),
  };
  return new FileSystemError(`${op} failed (${e.code})`, e.code, details);
}

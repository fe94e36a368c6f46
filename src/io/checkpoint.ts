/**
 * A model folder as one tensor store: a single `model.safetensors`, or shards listed by
 * `model.safetensors.index.json` (FORMATS.md §1). Every shard header is opened and
 * validated once, up front, so a bad index fails at open and not halfway through a
 * quantization run; tensor bytes are read lazily, one tensor at a time.
 */

import { mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { isAbsolute, join, win32 } from "node:path";
import type { DType } from "../tensor/dtype.ts";
import { ConfigError, FormatError, UsageError } from "../util/errors.ts";
import { writeFileAtomic } from "./atomic.ts";
import {
  buildSafetensorsHeader, openSafetensors, tensorByteSize, writeSafetensors,
  type SafetensorsFile, type TensorDecl, type TensorSource,
} from "./safetensors.ts";

/** File names used by transformers (`SAFE_WEIGHTS_NAME`, `SAFE_WEIGHTS_INDEX_NAME` in transformers/utils/constants). */
export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";
/** Shard names written by `save_pretrained`: model-00001-of-00003.safetensors. */
const SHARD_RE = /^model-\d{5}-of-\d{5}\.safetensors$/;

export interface CheckpointTensorInfo {
  name: string;
  dtype: DType;
  /** Dimensions, C order. */
  shape: number[];
  /** File name inside the checkpoint folder. */
  file: string;
}

export class Checkpoint {
  /** The index's "metadata" object (sharded), undefined for a single file. */
  readonly indexMetadata: Readonly<Record<string, unknown>> | undefined;
  /** Harmless inconsistencies: tensors in a shard but not mapped to it, total_size mismatch. */
  readonly warnings: readonly string[];
  /** Open shards by file name; read each one's `__metadata__` here. */
  readonly shards: ReadonlyMap<string, SafetensorsFile>;
  /** tensor name -> file name, in index order (sharded) or file order (single). */
  readonly #fileOf: ReadonlyMap<string, string>;

  constructor(
    readonly dir: string, shards: ReadonlyMap<string, SafetensorsFile>, fileOf: ReadonlyMap<string, string>,
    indexMetadata: Record<string, unknown> | undefined, warnings: readonly string[],
  ) {
    this.shards = shards;
    this.#fileOf = fileOf;
    this.indexMetadata = indexMetadata;
    this.warnings = warnings;
  }

  has(name: string): boolean {
    return this.#fileOf.has(name);
  }

  names(): string[] {
    return [...this.#fileOf.keys()];
  }

  info(name: string): CheckpointTensorInfo {
    const file = this.#fileName(name);
    const t = this.shards.get(file)!.info(name);
    return { name, dtype: t.dtype, shape: t.shape.slice(), file };
  }

  /** The shard's path and the absolute byte range [begin, end) of a tensor's data in it (for a mapping of the file). */
  locate(name: string): { path: string; begin: number; end: number } {
    const f = this.#shard(name);
    const t = f.info(name);
    return { path: f.path, begin: f.dataStart + t.begin, end: f.dataStart + t.end };
  }

  readRaw(name: string): Promise<Uint8Array> {
    return this.#shard(name).readRaw(name);
  }

  readF32(name: string): Promise<Float32Array> {
    return this.#shard(name).readF32(name);
  }

  readRawSync(name: string): Uint8Array {
    return this.#shard(name).readRawSync(name);
  }

  readF32Sync(name: string): Float32Array {
    return this.#shard(name).readF32Sync(name);
  }

  /** Close every shard; idempotent. */
  async close(): Promise<void> {
    await closeAll([...this.shards.values()]);
  }

  #shard(name: string): SafetensorsFile {
    return this.shards.get(this.#fileName(name))!; // openCheckpoint maps every tensor to an open shard
  }

  #fileName(name: string): string {
    const file = this.#fileOf.get(name);
    if (file === undefined) {
      throw new FormatError(`tensor "${name}" not found in checkpoint`, {
        file: this.dir, field: name, hint: `the checkpoint has ${this.#fileOf.size} tensors; list them with names()`,
      });
    }
    return file;
  }
}

async function closeAll(files: readonly SafetensorsFile[]): Promise<void> {
  const failed = (await Promise.allSettled(files.map((f) => f.close()))).find((r) => r.status === "rejected");
  if (failed !== undefined) throw failed.reason;
}

/** Open a model folder: `model.safetensors`, else `model.safetensors.index.json` + shards. */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const entries = await listFolder(dir);
  if (entries.has(SINGLE_FILE)) {
    const f = await openSafetensors(join(dir, SINGLE_FILE));
    const fileOf = new Map([...f.tensors.keys()].map((k) => [k, SINGLE_FILE]));
    // transformers also prefers the single file when both exist.
    const warnings = entries.has(INDEX_FILE) ? [`both ${SINGLE_FILE} and ${INDEX_FILE} exist; using ${SINGLE_FILE}`] : [];
    return new Checkpoint(dir, new Map([[SINGLE_FILE, f]]), fileOf, undefined, warnings);
  }
  if (entries.has(INDEX_FILE)) return openSharded(dir, entries);
  const bins = [...entries].filter((e) => e.endsWith(".bin") || e.endsWith(".pt") || e.endsWith(".pth"));
  const others = [...entries].filter((e) => e.endsWith(".safetensors"));
  throw new ConfigError("no safetensors checkpoint in the model folder", {
    file: dir, expected: `${SINGLE_FILE} or ${INDEX_FILE}`, found: [...others, ...bins].join(", ") || "neither",
    hint: others.length > 0
      ? `found ${others.join(", ")} without an index: name a single file ${SINGLE_FILE}, or add ${INDEX_FILE}`
      : `expected ${SINGLE_FILE} or ${INDEX_FILE} in ${dir}; .bin (pickle) checkpoints are not supported: convert them with ` +
        `python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('${dir}').save_pretrained('${dir}-st', safe_serialization=True)"`,
  });
}

async function listFolder(dir: string): Promise<Set<string>> {
  const hint = `pass the folder holding config.json and ${SINGLE_FILE} (or ${INDEX_FILE})`;
  try {
    if (!(await stat(dir)).isDirectory()) throw new ConfigError("model path is not a folder", { file: dir, hint });
    return new Set(await readdir(dir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new ConfigError("model folder not found", { file: dir, hint });
    throw err;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

async function openSharded(dir: string, entries: ReadonlySet<string>): Promise<Checkpoint> {
  const indexPath = join(dir, INDEX_FILE);
  const bad = (summary: string, d: { field?: string; expected?: string; found?: string; hint?: string } = {}): FormatError =>
    new FormatError(`sharded checkpoint index: ${summary}`, { file: indexPath, ...d });
  let root: unknown;
  try {
    root = JSON.parse(await readFile(indexPath, "utf8"));
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    throw bad("not valid JSON", { found: err.message });
  }
  if (!isObject(root)) throw bad("not a JSON object", { expected: '{"metadata": {...}, "weight_map": {...}}' });
  const { metadata, weight_map: map } = root;
  if (metadata !== undefined && metadata !== null && !isObject(metadata)) throw bad('"metadata" is not an object', { field: "metadata" });
  if (!isObject(map)) throw bad('"weight_map" is missing or not an object', { field: "weight_map", expected: "{tensor: file}" });

  for (const [tensor, file] of Object.entries(map)) {
    const problem = shardNameProblem(file, entries);
    if (problem !== undefined) {
      throw bad(`bad shard file name for tensor "${tensor}": ${problem}`, {
        field: `weight_map.${tensor}`, found: JSON.stringify(file), hint: "shard names must be plain file names inside the model folder",
      });
    }
  }
  const fileOf = new Map(Object.entries(map as Record<string, string>)); // a Map: tensor names may be "__proto__"
  const names = [...new Set(fileOf.values())];
  const opened = await Promise.allSettled(names.map((n) => openSafetensors(join(dir, n))));
  const shards = new Map<string, SafetensorsFile>();
  opened.forEach((r, i) => { if (r.status === "fulfilled") shards.set(names[i]!, r.value); });
  const failed = opened.find((r) => r.status === "rejected");
  try {
    if (failed !== undefined) throw failed.reason;
    let totalBytes = 0;
    for (const [tensor, file] of fileOf) {
      const shard = shards.get(file)!;
      const t = shard.tensors.get(tensor);
      if (t === undefined) {
        throw bad(`tensor "${tensor}" is mapped to ${file} but that file does not contain it`, {
          field: tensor, hint: "the index and the shards come from different saves; download the checkpoint again",
        });
      }
      totalBytes += t.end - t.begin;
    }
    const warnings: string[] = [];
    for (const [file, shard] of shards) {
      for (const tensor of shard.tensors.keys()) {
        if (fileOf.get(tensor) !== file) warnings.push(`tensor "${tensor}" in ${file} is not mapped to it by ${INDEX_FILE}; ignored`);
      }
    }
    const declared = isObject(metadata) ? metadata["total_size"] : undefined;
    if (declared !== undefined && declared !== totalBytes) {
      warnings.push(`${INDEX_FILE} metadata.total_size is ${JSON.stringify(declared)} but the mapped tensors hold ${totalBytes} bytes`);
    }
    return new Checkpoint(dir, shards, fileOf, isObject(metadata) ? metadata : {}, warnings);
  } catch (err) {
    await closeAll([...shards.values()]);
    throw err;
  }
}

/** Why `name` cannot be a shard file name, or undefined if it can. */
function shardNameProblem(name: unknown, entries: ReadonlySet<string>): string | undefined {
  if (typeof name !== "string" || name === "") return "not a non-empty string";
  if (isAbsolute(name) || win32.isAbsolute(name) || /^[A-Za-z]:/.test(name)) return "absolute path";
  if (name.includes("/") || name.includes("\\")) return "contains a path separator";
  if (name.includes("..")) return 'contains ".."';
  if (name.includes("\0")) return "contains a NUL byte";
  if (!entries.has(name)) return "file does not exist in the model folder";
  return undefined;
}

export interface ShardedWriteOptions {
  /** Shard size budget in tensor bytes (headers excluded, as in transformers' `max_shard_size`). */
  maxShardBytes: number;
  /** `__metadata__` of every file, e.g. {format: "pt"}. */
  metadata?: Record<string, string> | undefined;
}

/**
 * Write `tensors` (in order) as `model.safetensors` if they fit in one shard, else as
 * `model-0000i-of-0000N.safetensors` + `model.safetensors.index.json`. Each file is written
 * atomically; afterwards stale files of the other layout are removed, as `save_pretrained` does.
 * Tensors are packed greedily in order; a tensor larger than the budget gets a shard of its own.
 */
export async function writeShardedSafetensors(
  dir: string, tensors: readonly TensorSource[], opts: ShardedWriteOptions,
): Promise<{ files: string[]; totalSize: number }> {
  buildSafetensorsHeader(tensors); // validates names (unique across shards), dtypes and shapes up front
  await mkdir(dir, { recursive: true });
  const { groups, files, totalSize } = planShards(tensors, opts.maxShardBytes);
  if (groups.length <= 1) {
    await writeSafetensors(join(dir, SINGLE_FILE), groups[0] ?? [], opts.metadata);
    await removeStale(dir, new Set([SINGLE_FILE]));
    return { files, totalSize };
  }
  for (const [i, group] of groups.entries()) await writeSafetensors(join(dir, files[i]!), group, opts.metadata);
  await writeFileAtomic(join(dir, INDEX_FILE), shardIndexJson(groups, files, totalSize));
  await removeStale(dir, new Set([...files, INDEX_FILE]));
  return { files, totalSize };
}

/**
 * The shard layout of `tensors` (in order) under a budget of `maxShardBytes` tensor bytes per
 * shard: packed greedily in order, a tensor larger than the budget gets a shard of its own;
 * one group is `model.safetensors`, more are `model-0000i-of-0000N.safetensors`. Shared by
 * writeShardedSafetensors and the quantizer's one-pass writer (io/safetensors-stream.ts), so
 * both lay out the same checkpoint.
 */
export function planShards<T extends TensorDecl>(tensors: readonly T[], maxShardBytes: number): { groups: T[][]; files: string[]; totalSize: number } {
  if (!Number.isSafeInteger(maxShardBytes) || maxShardBytes <= 0) {
    throw new UsageError("maxShardBytes must be a positive integer", { field: "maxShardBytes", found: String(maxShardBytes) });
  }
  const groups: T[][] = [];
  let size = 0;
  let totalSize = 0;
  for (const t of tensors) {
    const nbytes = tensorByteSize(t.shape, t.dtype)!;
    const last = groups.at(-1);
    if (last === undefined || (last.length > 0 && size + nbytes > maxShardBytes)) {
      groups.push([t]);
      size = nbytes;
    } else {
      last.push(t);
      size += nbytes;
    }
    totalSize += nbytes;
  }
  if (groups.length <= 1) return { groups, files: [SINGLE_FILE], totalSize };
  const pad = (i: number): string => String(i).padStart(5, "0");
  return { groups, files: groups.map((_, i) => `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`), totalSize };
}

/** `model.safetensors.index.json` of a sharded layout, as transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n". */
export function shardIndexJson(groups: readonly (readonly TensorDecl[])[], files: readonly string[], totalSize: number): string {
  const weightMap = new Map<string, string>(); // not an object: a tensor may be named "__proto__"
  groups.forEach((g, i) => { for (const t of g) weightMap.set(t.name, files[i]!); });
  const sorted = Object.fromEntries([...weightMap].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: sorted }, null, 2)}\n`;
}

/** Remove checkpoint files of a previous save that the new layout does not use. */
async function removeStale(dir: string, keep: ReadonlySet<string>): Promise<void> {
  for (const e of await readdir(dir)) {
    if (keep.has(e)) continue;
    if (e === SINGLE_FILE || e === INDEX_FILE || SHARD_RE.test(e)) await rm(join(dir, e), { force: true });
  }
}

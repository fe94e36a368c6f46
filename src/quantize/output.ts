/**
 * Where the pipeline's finished blocks go, and what the journal records of them (issue 10:
 * each weight byte written once). Two kinds, chosen by the format (formats/format.ts):
 *
 *   streamed     formats with `stream` (the HF folders): the final shards are laid out up
 *                front in <out>.partial/final (io/safetensors-stream.ts); the embedding is
 *                written first, each block's tensors are appended as the block finishes,
 *                then fdatasync, then the journal records the stream position. A resume
 *                truncates the shards to the last journaled position and appends from there.
 *   block files  the others (GGUF, made from all blocks at the end): block-NNNN.safetensors
 *                per block in <out>.partial (written atomically), listed by the journal;
 *                `finish` builds the output from them.
 *
 * Either way a block is in the journal only once its bytes are on disk, and nothing but
 * <out>.partial (and at the end <out>) appears.
 */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Checkpoint } from "../io/checkpoint.ts";
import { openSafetensors, writeSafetensors, type SafetensorsFile, type TensorDecl, type TensorSource as WriteSource } from "../io/safetensors.ts";
import { ShardedStreamWriter, ShardPlan } from "../io/safetensors-stream.ts";
import { FormatError } from "../util/errors.ts";
import type { BlockTensorReader, FinishInput, FinishResult, Format, StreamSource } from "./formats/format.ts";
import { writeJournal, type Journal, type JournalBlock } from "./journal.ts";
import type { ModelConfig } from "../arch/config.ts";
import type { QuantSettings } from "./settings.ts";

/** Bytes per piece when a checkpoint tensor is copied into the output (StreamSource.readAt). */
const COPY_CHUNK = 1 << 20;

export type BlockEntry = Pick<JournalBlock, "index" | "layers" | "seconds">;
export type FinishArgs = Omit<FinishInput, "path" | "blockFiles" | "files">;

export interface BlockOutput {
  /** Write block `entry.index`'s tensors (data in memory), make them durable, then add `entry` to the journal. */
  write(entry: BlockEntry, tensors: WriteSource[]): Promise<void>;
  /** A finished (journaled) block's tensors as written, for resume. */
  read(b: number): Promise<{ reader: BlockTensorReader; file: string; close(): Promise<void> }>;
  /** After the last block: the rest of the output, then the format's finish, all in `path`. */
  finish(o: FinishArgs): Promise<FinishResult>;
  /** Where the output is assembled (renamed to <out> by the caller). */
  readonly path: string;
  /** Stop writing (error or interruption): what is journaled stays for --resume. Idempotent. */
  close(): Promise<void>;
}

export interface OutputSetup {
  format: Format;
  cfg: ModelConfig;
  s: QuantSettings;
  ckpt: Checkpoint;
  /** <out>.partial: exists, with the journal in it. */
  work: string;
  journal: Journal;
  journalPath: string;
  maxShardBytes: number;
  /** True for a fresh journal (nothing written yet). */
  fresh: boolean;
}

/** The output for `o.format` (see the file comment); a streamed one also sets `journal.layout` on a fresh run and checks it on resume. */
export async function openBlockOutput(o: OutputSetup): Promise<BlockOutput> {
  return o.format.stream !== undefined ? openStreamed(o) : openBlockFiles(o);
}

async function openStreamed(o: OutputSetup): Promise<BlockOutput> {
  const { cfg, journal, journalPath } = o;
  const layout = o.format.stream!(cfg, o.s, o.ckpt);
  const decls: TensorDecl[] = [...layout.head];
  const ends: number[] = []; // tensors written after block b
  for (let b = 0; b < cfg.numLayers; b++) { decls.push(...layout.block(b)); ends.push(decls.length); }
  decls.push(...layout.tail);
  const plan = new ShardPlan(decls, o.maxShardBytes, layout.metadata);
  const final = join(o.work, "final");
  if (o.fresh) {
    journal.layout = plan.digest();
    await writeJournal(journalPath, journal);
  } else if (journal.layout !== plan.digest()) {
    throw new FormatError("the interrupted run laid out its output differently", {
      file: journalPath, field: "layout", hint: "it was started with another shard size or another quantize-llm version; pass --overwrite to start over",
    });
  }
  // The journaled blocks are a prefix 0..d-1 (blocks finish in order); the stream ends after the last.
  const done = journal.blocks.map((x) => x.index).sort((a, b) => a - b);
  if (done.some((x, i) => x !== i) || journal.blocks.some((x) => x.end === undefined)) {
    throw new FormatError("the journal's finished blocks are not a prefix of the model's blocks", { file: journalPath, found: done.join(", "), hint: "pass --overwrite to start over" });
  }
  const last = journal.blocks.find((x) => x.index === done.length - 1);
  mkdirSync(final, { recursive: true });
  const w = await ShardedStreamWriter.open(final, plan, last?.end);
  // Tensors copied from the checkpoint (the embedding, lm_head) go through one small buffer.
  let chunk: Uint8Array | undefined;
  const writeAll = async (ts: readonly StreamSource[]): Promise<void> => {
    for (const t of ts) {
      if (t.readAt !== undefined) await w.writeFrom(t.name, t.readAt, chunk ??= new Uint8Array(COPY_CHUNK));
      else await w.write(t.name, typeof t.data === "function" ? await t.data() : t.data);
    }
  };
  // The embedding goes first, while block 0 computes (the first block's write waits for it).
  let head: Promise<void> = last === undefined ? writeAll(layout.head) : Promise.resolve();
  head.catch(() => {}); // awaited by the first write, finish or close
  return {
    path: final,
    async write(entry, tensors) {
      await head;
      if (w.written !== (entry.index === 0 ? layout.head.length : ends[entry.index - 1]!)) {
        throw new FormatError(`block ${entry.index} out of order for the streamed output`, { file: final, found: `${w.written} tensors written` });
      }
      await writeAll(tensors);
      const end = await w.sync();
      journal.blocks.push({ ...entry, end });
      await writeJournal(journalPath, journal);
    },
    async read() {
      return { reader: w, file: final, close: async () => {} };
    },
    async finish(f) {
      await head;
      await writeAll(layout.tailTensors(f));
      const files = await w.finish();
      return { tensorBytes: plan.totalSize, ...await o.format.finish({ ...f, path: final, blockFiles: [], files }) };
    },
    async close() {
      await head.catch(() => {});
      head = Promise.resolve();
      await w.close();
    },
  };
}

function openBlockFiles(o: OutputSetup): BlockOutput {
  const { work, journal, journalPath } = o;
  const final = join(work, "final");
  return {
    path: final,
    async write(entry, tensors) {
      const file = `block-${String(entry.index).padStart(4, "0")}.safetensors`;
      await writeSafetensors(join(work, file), tensors);
      journal.blocks.push({ ...entry, file });
      await writeJournal(journalPath, journal);
    },
    async read(b) {
      const file = journal.blocks.find((x) => x.index === b)!.file!;
      const f = await openSafetensors(join(work, file));
      return { reader: f, file, close: () => f.close() };
    },
    async finish(f) {
      rmSync(final, { recursive: true, force: true });
      const ordered = journal.blocks.slice().sort((a, b) => a.index - b.index);
      const blockFiles: SafetensorsFile[] = [];
      try {
        for (const jb of ordered) blockFiles.push(await openSafetensors(join(work, jb.file!)));
        return await o.format.finish({ ...f, path: final, blockFiles, files: [] });
      } finally {
        await Promise.all(blockFiles.map((x) => x.close()));
      }
    },
    async close() {},
  };
}

/**
 * The one-pass output of the HF folder formats (issue 10, quantize/output.ts): blocks are
 * appended to the final shards in <out>.partial/final and the journal records the synced
 * stream position. The stream writer lays out exactly what writeShardedSafetensors writes,
 * resumes from any journaled position to the same bytes (bytes written after the last sync
 * are cut off), refuses a journal that does not fit; the pipeline's sharded output resumes
 * to identical bytes and holds the same tensors as a one-file output.
 */
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
import { openCheckpoint, writeShardedSafetensors } from "../../src/io/checkpoint.ts";
import type { TensorSource } from "../../src/io/safetensors.ts";
import { ShardedStreamWriter, ShardPlan, type StreamPosition } from "../../src/io/safetensors-stream.ts";
import { InterruptedError, quantizeModel, type QuantizeJob } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";
import { FormatError } from "../../src/util/errors.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

const tmp = mkdtempSync(join(tmpdir(), "qllm-stream-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const backend = selectBackend();

const TENSORS: TensorSource[] = [
  { name: "a", dtype: "F32", shape: [3, 4], data: Uint8Array.from({ length: 48 }, (_, i) => i) },
  { name: "b", dtype: "I32", shape: [5], data: Uint8Array.from({ length: 20 }, (_, i) => 100 + i) },
  { name: "c", dtype: "F16", shape: [7], data: Uint8Array.from({ length: 14 }, (_, i) => 200 + i) },
  { name: "d", dtype: "U8", shape: [0], data: new Uint8Array(0) },
  { name: "e", dtype: "BF16", shape: [2, 9], data: Uint8Array.from({ length: 36 }, (_, i) => 50 + i) },
];
const META = { format: "pt" };
const bytes = (t: TensorSource): Uint8Array => t.data as Uint8Array;

function folderBytes(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f))]));
}

describe("ShardedStreamWriter", () => {
  it.each([1 << 20, 40, 20])("lays out what writeShardedSafetensors writes (shard budget %i bytes)", async (maxShardBytes) => {
    const ref = join(tmp, `ref-${maxShardBytes}`), got = join(tmp, `got-${maxShardBytes}`);
    await writeShardedSafetensors(ref, TENSORS, { maxShardBytes, metadata: META });
    mkdirSync(got);
    const w = await ShardedStreamWriter.open(got, new ShardPlan(TENSORS, maxShardBytes, META));
    for (const t of TENSORS) await w.write(t.name, bytes(t));
    await w.finish();
    expect(folderBytes(got)).toEqual(folderBytes(ref));
  });

  it.each([1, 7, 13, 1 << 20])("writeFrom (pieces of %i bytes) writes the bytes write does", async (piece) => {
    const ref = join(tmp, `from-ref-${piece}`), got = join(tmp, `from-got-${piece}`);
    await writeShardedSafetensors(ref, TENSORS, { maxShardBytes: 40, metadata: META });
    mkdirSync(got);
    const w = await ShardedStreamWriter.open(got, new ShardPlan(TENSORS, 40, META));
    const chunk = new Uint8Array(piece).fill(0xee);
    const asked: number[] = [];
    for (const t of TENSORS) {
      await w.writeFrom(t.name, (dst, offset) => { asked.push(dst.length); dst.set(bytes(t).subarray(offset, offset + dst.length)); }, chunk);
    }
    await w.finish();
    expect(folderBytes(got)).toEqual(folderBytes(ref));
    expect(Math.max(...asked)).toBeLessThanOrEqual(piece);
    const w2 = await ShardedStreamWriter.open(join(tmp, `from-got-${piece}`), new ShardPlan(TENSORS, 40, META));
    await expect(w2.writeFrom("b", () => {}, chunk)).rejects.toThrow(/declaration order/);
    await w2.close();
  });

  it("resumes from every synced position to the same bytes, cutting off what was written after the sync", async () => {
    const plan = new ShardPlan(TENSORS, 40, META);
    const ref = join(tmp, "resume-ref");
    await writeShardedSafetensors(ref, TENSORS, { maxShardBytes: 40, metadata: META });
    for (let n = 0; n <= TENSORS.length; n++) {
      const dir = join(tmp, `resume-${n}`);
      mkdirSync(dir);
      let w = await ShardedStreamWriter.open(dir, plan);
      for (const t of TENSORS.slice(0, n)) await w.write(t.name, bytes(t));
      const at: StreamPosition = await w.sync();
      expect(at).toEqual(plan.positionAfter(n));
      if (n < TENSORS.length) await w.write(TENSORS[n]!.name, bytes(TENSORS[n]!)); // not synced, not journaled
      await w.close();
      if (n > 0) appendFileSync(join(dir, at.file), "torn tail"); // a write cut short after the sync
      w = await ShardedStreamWriter.open(dir, plan, at);
      if (n > 0) expect(w.readRawSync(TENSORS[n - 1]!.name)).toEqual(bytes(TENSORS[n - 1]!));
      for (const t of TENSORS.slice(n)) await w.write(t.name, bytes(t));
      await w.finish();
      expect(folderBytes(dir), `resumed after ${n} tensors`).toEqual(folderBytes(ref));
    }
  });

  it("refuses a position that does not fit the plan, a shard shorter than journaled, and out-of-order tensors", async () => {
    const plan = new ShardPlan(TENSORS, 40, META);
    const dir = join(tmp, "refuse");
    mkdirSync(dir);
    const w = await ShardedStreamWriter.open(dir, plan);
    await expect(w.write("b", bytes(TENSORS[1]!))).rejects.toThrow(/declaration order/);
    for (const t of TENSORS.slice(0, 2)) await w.write(t.name, bytes(t));
    const at = await w.sync();
    await w.close();
    await expect(ShardedStreamWriter.open(dir, plan, { ...at, bytes: at.bytes - 1 })).rejects.toThrow(/does not match this output's layout/);
    await expect(ShardedStreamWriter.open(dir, new ShardPlan(TENSORS, 1 << 20, META), at)).rejects.toBeInstanceOf(FormatError);
    rmSync(join(dir, at.file));
    await expect(ShardedStreamWriter.open(dir, plan, at)).rejects.toThrow(/shorter than its journal says/);
  });
});

describe("pipeline: streamed HF folder", () => {
  let model: TinyModel;
  const tiny = async (): Promise<TinyModel> => (model ??= await makeTinyModel({ modelType: "llama", hidden: 64, intermediate: 128, layers: 4, heads: 4, kvHeads: 2, seed: 3, tokenizer: "bundled", dir: join(tmp, "model") }));
  const settings: QuantSettings = {
    method: "rtn", bits: 4, groupSize: 32, sym: true, actOrder: false, staticGroups: false, damp: 0.01,
    blockSize: 128, trueSequential: true, format: "gptq", calibSamples: 0, calibSeqlen: 16, calibSeed: 0, calibText: "",
  };
  const job = (m: TinyModel, out: string, o: Partial<QuantizeJob> = {}): QuantizeJob => ({ modelDir: m.dir, outDir: join(tmp, out), settings, backend, ...o });
  const models = (dir: string): Map<string, Buffer> => new Map([...folderBytes(dir)].filter(([f]) => f !== "quant-report.json"));

  it("a sharded output interrupted mid-run (with a torn tail) resumes to identical bytes, holding the one-file output's tensors", async () => {
    const m = await tiny();
    const SHARD = 30_000; // several shards, some boundaries inside a block
    const one = await quantizeModel(job(m, "one"));
    const full = await quantizeModel(job(m, "full", { maxShardBytes: SHARD }));
    expect(full.files.length).toBeGreaterThan(3);
    expect(full.files).toContain("model.safetensors.index.json");

    const ac = new AbortController();
    const seen = new Set<string>();
    await expect(quantizeModel(job(m, "cut", {
      maxShardBytes: SHARD, signal: ac.signal,
      onEvent: (e) => {
        for (const f of readdirSync(join(tmp, "cut.partial"))) seen.add(f);
        if (e.type === "block-done" && e.block === 1) ac.abort();
      },
    }))).rejects.toBeInstanceOf(InterruptedError);
    expect(existsSync(join(tmp, "cut"))).toBe(false);
    expect([...seen].sort()).toEqual(["final", "journal.json"]); // no block files, no temp files beside them
    const journal = JSON.parse(readFileSync(join(tmp, "cut.partial", "journal.json"), "utf8")) as { version: number; blocks: { end: StreamPosition }[] };
    expect(journal.version).toBe(2);
    const end = journal.blocks.at(-1)!.end;
    appendFileSync(join(tmp, "cut.partial", "final", end.file), Buffer.alloc(1000, 7));

    const resumed = await quantizeModel(job(m, "cut", { maxShardBytes: SHARD, resume: true }));
    expect(models(resumed.outDir)).toEqual(models(full.outDir));
    expect(existsSync(join(tmp, "cut.partial"))).toBe(false);

    const a = await openCheckpoint(one.outDir), b = await openCheckpoint(full.outDir);
    try {
      expect(b.names().sort()).toEqual(a.names().sort());
      for (const n of a.names()) expect(Buffer.from(b.readRawSync(n)).equals(Buffer.from(a.readRawSync(n))), n).toBe(true);
    } finally { await a.close(); await b.close(); }
  });

  it("a resume with another shard size is refused, naming the layout", async () => {
    const m = await tiny();
    const ac = new AbortController();
    await expect(quantizeModel(job(m, "other", { maxShardBytes: 30_000, signal: ac.signal, onEvent: (e) => { if (e.type === "block-done") ac.abort(); } }))).rejects.toBeInstanceOf(InterruptedError);
    await expect(quantizeModel(job(m, "other", { resume: true }))).rejects.toThrow(/laid out its output differently/);
    const r = await quantizeModel(job(m, "other", { overwrite: true }));
    expect(r.files).toEqual(["model.safetensors"]);
  });
});

import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INDEX_FILE, SINGLE_FILE, openCheckpoint, writeShardedSafetensors, type Checkpoint } from "../../src/io/checkpoint.ts";
import { writeSafetensors, type TensorSource } from "../../src/io/safetensors.ts";
import { fromF32 } from "../../src/tensor/dtype.ts";
import { ConfigError, FormatError } from "../../src/util/errors.ts";

let root = "";
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), "qllm-ckpt-")); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

let counter = 0;
async function freshDir(): Promise<string> {
  const d = join(root, `m${counter++}`);
  await mkdir(d);
  return d;
}

const f32 = (name: string, values: number[]): TensorSource =>
  ({ name, dtype: "F32", shape: [values.length], data: fromF32("F32", new Float32Array(values)) });
/** Six 16-byte tensors, in "model order". */
const TENSORS: TensorSource[] = ["embed", "l0.q", "l0.k", "l1.q", "l1.k", "norm"].map((n, i) => f32(n, [i, i + 0.5, -i, 1]));

async function withCheckpoint(dir: string, body: (c: Checkpoint) => Promise<void>): Promise<void> {
  const c = await openCheckpoint(dir);
  try {
    await body(c);
  } finally {
    await c.close();
  }
}

async function expectAllTensors(c: Checkpoint): Promise<void> {
  expect(c.names().sort()).toEqual(TENSORS.map((t) => t.name).sort());
  for (const [i, t] of TENSORS.entries()) {
    expect(c.has(t.name)).toBe(true);
    expect(Array.from(await c.readF32(t.name))).toEqual([i, i + 0.5, -i, 1]);
    expect(Array.from(c.readF32Sync(t.name))).toEqual([i, i + 0.5, -i, 1]);
    expect(c.readRawSync(t.name)).toEqual(await c.readRaw(t.name));
  }
}

describe("single file", () => {
  it("reads model.safetensors", async () => {
    const dir = await freshDir();
    const { files } = await writeShardedSafetensors(dir, TENSORS, { maxShardBytes: 1 << 20, metadata: { format: "pt" } });
    expect(files).toEqual([SINGLE_FILE]);
    expect(await readdir(dir)).toEqual([SINGLE_FILE]);
    await withCheckpoint(dir, async (c) => {
      await expectAllTensors(c);
      expect(c.names()).toEqual(TENSORS.map((t) => t.name)); // file order
      expect(c.info("l0.k")).toEqual({ name: "l0.k", dtype: "F32", shape: [4], file: SINGLE_FILE });
      expect(c.indexMetadata).toBeUndefined();
      expect(c.shards.get(SINGLE_FILE)?.metadata).toEqual({ format: "pt" });
      expect(c.warnings).toEqual([]);
      expect(c.has("nope")).toBe(false);
      expect(() => c.info("nope")).toThrow(FormatError);
      expect(() => c.readF32Sync("nope")).toThrow(/tensor "nope" not found in checkpoint[\s\S]*file:/);
    });
  });
});

describe("sharded", () => {
  it("round trips: 3 shards + index, same tensors back", async () => {
    const dir = await freshDir();
    const { files, totalSize } = await writeShardedSafetensors(dir, TENSORS, { maxShardBytes: 40 }); // 2 tensors per shard
    expect(files).toEqual(["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]);
    expect(totalSize).toBe(96);
    const index = JSON.parse(await readFile(join(dir, INDEX_FILE), "utf8")) as { metadata: unknown; weight_map: Record<string, string> };
    expect(index.metadata).toEqual({ total_size: 96 });
    expect(Object.keys(index.weight_map)).toEqual(TENSORS.map((t) => t.name).sort()); // sorted, as transformers writes it
    expect(index.weight_map["l0.k"]).toBe(files[1]);
    await withCheckpoint(dir, async (c) => {
      await expectAllTensors(c);
      expect(c.info("norm").file).toBe(files[2]);
      expect(c.indexMetadata).toEqual({ total_size: 96 });
      expect(c.shards.size).toBe(3);
      expect(c.warnings).toEqual([]);
    });
  });

  it("gives a tensor larger than the budget a shard of its own", async () => {
    const dir = await freshDir();
    const big = f32("big", Array.from({ length: 32 }, (_, i) => i));
    const { files } = await writeShardedSafetensors(dir, [TENSORS[0]!, big, TENSORS[1]!], { maxShardBytes: 40 });
    expect(files.length).toBe(3);
    await withCheckpoint(dir, async (c) => { expect(c.info("big").file).toBe(files[1]); });
  });

  it("keeps tensors whose names are Object.prototype keys", async () => {
    const dir = await freshDir();
    const odd = [f32("__proto__", [1]), f32("constructor", [2]), f32("toString", [3])];
    await writeShardedSafetensors(dir, odd, { maxShardBytes: 4 });
    await withCheckpoint(dir, async (c) => {
      expect(c.names()).toEqual(["__proto__", "constructor", "toString"]);
      expect(Array.from(await c.readF32("__proto__"))).toEqual([1]);
      expect(c.info("toString").file).toBe("model-00003-of-00003.safetensors");
      expect(c.warnings).toEqual([]);
    });
  });

  it("removes the files of the previous layout when re-saving", async () => {
    const dir = await freshDir();
    await writeShardedSafetensors(dir, TENSORS, { maxShardBytes: 40 });
    await writeFile(join(dir, "config.json"), "{}");
    await writeShardedSafetensors(dir, TENSORS, { maxShardBytes: 1 << 20 });
    expect((await readdir(dir)).sort()).toEqual(["config.json", SINGLE_FILE]);
    await writeShardedSafetensors(dir, TENSORS, { maxShardBytes: 60 });
    expect((await readdir(dir)).sort()).toEqual(["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", INDEX_FILE]);
    await withCheckpoint(dir, expectAllTensors);
  });
});

/** A hand-written index over two real shards (a: "x"; b: "y", "z"). */
async function indexedDir(weightMap: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
  const dir = await freshDir();
  await writeSafetensors(join(dir, "a.safetensors"), [f32("x", [1])]);
  await writeSafetensors(join(dir, "b.safetensors"), [f32("y", [2]), f32("z", [3])]);
  await writeFile(join(dir, INDEX_FILE), JSON.stringify({ metadata: {}, weight_map: weightMap, ...extra }));
  return dir;
}

async function rejectsIndex(dir: string, problem: RegExp): Promise<void> {
  const err = await openCheckpoint(dir).then(async (c) => { await c.close(); return "opened"; }, (e: unknown) => e);
  expect(err).toBeInstanceOf(FormatError);
  expect((err as FormatError).message).toContain(join(dir, INDEX_FILE));
  expect((err as FormatError).message.split("\n")[0]).toMatch(problem);
}

describe("index validation", () => {
  it("accepts a hand-written index and warns about unmapped tensors and a wrong total_size", async () => {
    const dir = await indexedDir({ x: "a.safetensors", y: "b.safetensors" }, { metadata: { total_size: 999 } });
    await withCheckpoint(dir, async (c) => {
      expect(c.names()).toEqual(["x", "y"]);
      expect(Array.from(await c.readF32("y"))).toEqual([2]);
      expect(c.has("z")).toBe(false);
      expect(c.warnings).toHaveLength(2);
      expect(c.warnings[0]).toMatch(/tensor "z" in b\.safetensors is not mapped/);
      expect(c.warnings[1]).toMatch(/total_size is 999 but the mapped tensors hold 8 bytes/);
    });
  });

  it.each([
    ["../x.safetensors", /absolute path|path separator/],
    ["/abs.safetensors", /absolute path/],
    ["sub/x.safetensors", /path separator/],
    ["sub\\x.safetensors", /path separator/],
    ["C:x.safetensors", /absolute path/],
    ["..", /contains "\.\."/],
    ["", /not a non-empty string/],
  ])("rejects shard name %j", async (name, problem) => {
    const dir = await indexedDir({ x: "a.safetensors", y: name });
    // Make each escaping name really exist, so only the name check can reject it.
    await mkdir(join(dir, "sub"));
    await writeSafetensors(join(dir, "sub", "x.safetensors"), [f32("y", [2])]);
    await writeSafetensors(join(dir, "..", "x.safetensors"), [f32("y", [2])]);
    await rejectsIndex(dir, new RegExp(`bad shard file name for tensor "y": .*(${problem.source})`));
  });

  it("rejects a missing shard", async () => {
    await rejectsIndex(await indexedDir({ x: "a.safetensors", y: "c.safetensors" }), /"y".*file does not exist in the model folder/);
  });

  it("rejects a tensor missing from its shard", async () => {
    await rejectsIndex(await indexedDir({ x: "a.safetensors", y: "a.safetensors" }), /tensor "y" is mapped to a\.safetensors but that file does not contain it/);
  });

  it.each([
    ["invalid JSON", "{ weight_map", /not valid JSON/],
    ["not an object", "[]", /not a JSON object/],
    ["no weight_map", '{"metadata": {}}', /"weight_map" is missing or not an object/],
    ["weight_map an array", '{"weight_map": ["a.safetensors"]}', /"weight_map" is missing or not an object/],
    ["metadata a string", '{"metadata": "x", "weight_map": {}}', /"metadata" is not an object/],
    ["a shard name that is a number", '{"weight_map": {"x": 3}}', /not a non-empty string/],
  ])("rejects an index with %s", async (_label, text, problem) => {
    const dir = await indexedDir({});
    await writeFile(join(dir, INDEX_FILE), text);
    await rejectsIndex(dir, problem);
  });

  it("reports a malformed shard with the shard's own path", async () => {
    const dir = await indexedDir({ x: "a.safetensors", y: "b.safetensors" });
    await writeFile(join(dir, "b.safetensors"), new Uint8Array(5));
    await expect(openCheckpoint(dir)).rejects.toThrow(new RegExp(`too short[\\s\\S]*${join(dir, "b.safetensors")}`));
  });
});

describe("missing checkpoints", () => {
  async function configError(dir: string): Promise<ConfigError> {
    const err = await openCheckpoint(dir).then(() => "opened", (e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toContain(dir);
    return err as ConfigError;
  }

  it("a folder that does not exist", async () => {
    expect((await configError(join(root, "nowhere"))).message).toMatch(/model folder not found/);
  });

  it("a file instead of a folder", async () => {
    const dir = await freshDir();
    await writeSafetensors(join(dir, "w.safetensors"), []);
    expect((await configError(join(dir, "w.safetensors"))).message).toMatch(/not a folder/);
  });

  it("a pickle checkpoint: the hint says how to convert it", async () => {
    const dir = await freshDir();
    await writeFile(join(dir, "pytorch_model.bin"), "");
    const err = await configError(dir);
    expect(err.details.found).toBe("pytorch_model.bin");
    expect(err.details.hint).toMatch(/expected model\.safetensors or model\.safetensors\.index\.json in .*\.bin \(pickle\) checkpoints are not supported: convert them with .*safe_serialization=True/);
  });

  it("shards without an index", async () => {
    const dir = await freshDir();
    await writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), []);
    expect((await configError(dir)).details.hint).toMatch(/found model-00001-of-00002\.safetensors without an index/);
  });
});

import { mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  HEADER_ALIGN, MAX_HEADER_BYTES, SafetensorsWriter, openSafetensors, writeSafetensors, type TensorSource,
} from "../../src/io/safetensors.ts";
import { fromF32, type DType } from "../../src/tensor/dtype.ts";
import { FormatError, InvariantError, UsageError } from "../../src/util/errors.ts";

let dir = "";
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), "qllm-st-")); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

let counter = 0;
const fresh = (): string => join(dir, `f${counter++}.safetensors`);
async function put(bytes: Uint8Array): Promise<string> {
  const p = fresh();
  await writeFile(p, bytes);
  return p;
}

/** A file built byte by byte as FORMATS.md §1 says, independent of our writer. `n` overrides the length field. */
function rawFile(header: string, data: Uint8Array = new Uint8Array(0), n?: bigint): Uint8Array {
  const h = Buffer.from(header, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(n ?? BigInt(h.length));
  return new Uint8Array(Buffer.concat([len, h, data]));
}
const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const entry = (dtype: string, shape: unknown, offsets: unknown): string =>
  JSON.stringify({ dtype, shape, data_offsets: offsets });

/** Per dtype: raw bytes of [1, -2, 3, 0] (or the nearest representable) and the f32 values readF32 must return. */
const SAMPLES: Record<DType, { data: Uint8Array; f32: number[] }> = {
  F32: { data: fromF32("F32", new Float32Array([1.5, -2, 3.25, 0])), f32: [1.5, -2, 3.25, 0] },
  F16: { data: fromF32("F16", new Float32Array([1.5, -2, 65504, 0])), f32: [1.5, -2, 65504, 0] },
  BF16: { data: fromF32("BF16", new Float32Array([1.5, -2, 3.25, 0])), f32: [1.5, -2, 3.25, 0] },
  F64: { data: bytesOf(new Float64Array([1.5, -2, 1e10, 0])), f32: [1.5, -2, 1e10, 0] },
  I64: { data: bytesOf(new BigInt64Array([1n, -2n, 3n, 0n])), f32: [1, -2, 3, 0] },
  I32: { data: bytesOf(new Int32Array([1, -2, 1 << 20, 0])), f32: [1, -2, 1 << 20, 0] },
  I16: { data: bytesOf(new Int16Array([1, -2, 300, 0])), f32: [1, -2, 300, 0] },
  U16: { data: bytesOf(new Uint16Array([1, 65535, 300, 0])), f32: [1, 65535, 300, 0] },
  I8: { data: bytesOf(new Int8Array([1, -2, 127, -128])), f32: [1, -2, 127, -128] },
  U8: { data: new Uint8Array([1, 2, 255, 0]), f32: [1, 2, 255, 0] },
  BOOL: { data: new Uint8Array([1, 0, 1, 0]), f32: [1, 0, 1, 0] },
};

describe("round trip", () => {
  it("every dtype, with metadata, header padded to 8 and data aligned", async () => {
    const p = fresh();
    const tensors: TensorSource[] = Object.entries(SAMPLES).map(([dtype, s]) => ({ name: `t.${dtype}`, dtype: dtype as DType, shape: [2, 2], data: s.data }));
    tensors.push({ name: "scalar", dtype: "F32", shape: [], data: fromF32("F32", new Float32Array([7])) });
    tensors.push({ name: "empty", dtype: "F16", shape: [3, 0], data: new Uint8Array(0) });
    await writeSafetensors(p, tensors, { format: "pt", "π": "ünïcode" });

    const bytes = new Uint8Array(await readFile(p));
    const n = Number(Buffer.from(bytes).readBigUInt64LE(0));
    expect(n % HEADER_ALIGN).toBe(0);
    const header = Buffer.from(bytes.subarray(8, 8 + n)).toString("utf8");
    expect(header.trimEnd().endsWith("}")).toBe(true);
    expect(header.slice(header.trimEnd().length)).toMatch(/^ {0,7}$/); // padding is spaces only

    const f = await openSafetensors(p);
    try {
      expect(f.dataStart).toBe(8 + n);
      expect(f.dataStart % HEADER_ALIGN).toBe(0);
      expect(f.metadata).toEqual({ format: "pt", "π": "ünïcode" });
      expect([...f.tensors.keys()]).toEqual(tensors.map((t) => t.name)); // written back to back in the given order
      for (const [dtype, s] of Object.entries(SAMPLES)) {
        const name = `t.${dtype}`;
        expect(f.info(name)).toMatchObject({ dtype, shape: [2, 2] });
        expect(await f.readRaw(name)).toEqual(s.data);
        expect(Array.from(await f.readF32(name))).toEqual(s.f32);
        expect(f.readRawSync(name)).toEqual(s.data);
        expect(Array.from(f.readF32Sync(name))).toEqual(s.f32);
      }
      expect(Array.from(await f.readF32("scalar"))).toEqual([7]);
      expect((await f.readRaw("empty")).length).toBe(0);
      expect(f.tensors.get("empty")).toMatchObject({ shape: [3, 0] });
    } finally {
      await f.close();
    }
  });

  it("a file with no tensors and no metadata", async () => {
    const p = fresh();
    await writeSafetensors(p, []);
    expect(new Uint8Array(await readFile(p))).toEqual(rawFile("{}      ")); // "{}" padded to 8
    const f = await openSafetensors(p);
    expect(f.tensors.size).toBe(0);
    expect(f.metadata).toEqual({});
    await f.close();
  });
});

describe("interop on hand-built bytes", () => {
  it("our writer's exact bytes for a tiny file", async () => {
    const p = fresh();
    await writeSafetensors(p, [{ name: "a", dtype: "F32", shape: [2], data: fromF32("F32", new Float32Array([1, -2])) }], { format: "pt" });
    // 85 bytes of JSON + 3 spaces = 88 = 0x58; 1.0f = 0x3f800000, -2.0f = 0xc0000000, little-endian.
    const json = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   ';
    const expected = [0x58, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from(json, "ascii"), 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0];
    expect(Array.from(await readFile(p))).toEqual(expected);
  });

  it("reads a file built byte by byte, unpadded, tensors listed out of offset order", async () => {
    // Like the reference crate's doc example: no padding, names not in data order.
    const header = `{"b":${entry("I32", [2, 2], [8, 24])},"a":${entry("BF16", [4], [0, 8])}}`;
    const data = new Uint8Array([0x80, 0x3f, 0x00, 0xc0, 0x00, 0x00, 0x80, 0xff, 1, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x80]);
    const f = await openSafetensors(await put(rawFile(header, data)));
    try {
      expect([...f.tensors.keys()]).toEqual(["a", "b"]); // file order
      expect(f.tensors.get("b")).toEqual({ name: "b", dtype: "I32", shape: [2, 2], begin: 8, end: 24 });
      expect(Array.from(await f.readF32("a"))).toEqual([1, -2, 0, -Infinity]);
      expect(Array.from(await f.readF32("b"))).toEqual([1, 2, -1, -(2 ** 31)]);
    } finally {
      await f.close();
    }
  });

  it("accepts null __metadata__ and extra whitespace, as serde does", async () => {
    const f = await openSafetensors(await put(rawFile(` \n{"__metadata__": null, "x": ${entry("U8", [1], [0, 1])}}\t `, new Uint8Array([9]))));
    expect(f.metadata).toEqual({});
    expect(Array.from(f.readRawSync("x"))).toEqual([9]);
    await f.close();
  });
});

async function rejects(bytes: Uint8Array, problem: RegExp, field?: string): Promise<FormatError> {
  const p = await put(bytes);
  const outcome = await openSafetensors(p).then(async (f) => { await f.close(); return "opened"; }, (e: unknown) => e);
  expect(outcome).toBeInstanceOf(FormatError);
  const err = outcome as FormatError;
  expect(err.message).toContain(p); // names the file
  expect(err.message.split("\n")[0]).toMatch(problem); // and the specific problem in its summary
  if (field !== undefined) {
    expect(err.details.field).toBe(field);
    expect(err.message).toContain(field);
  }
  return err;
}

const u8 = (n: number): Uint8Array => new Uint8Array(n);
const ok = (name = "w"): string => `"${name}":${entry("F32", [2], [0, 8])}`;

describe("rejects every malformed case of FORMATS.md §1 with a FormatError", () => {
  it.each([
    ["empty file", u8(0), /too short/],
    ["file shorter than 8 bytes", new Uint8Array([2, 0, 0, 0, 0]), /too short/],
    ["header length beyond the file", rawFile("{}", u8(0), 100n), /runs past the end of the file/],
    ["header length just over the 100 MB cap", rawFile("{}", u8(0), BigInt(MAX_HEADER_BYTES + 1)), /absurdly large/],
    ["header length 2^64 - 1", rawFile("{}", u8(0), 2n ** 64n - 1n), /absurdly large/],
    ["header not UTF-8", rawFile('{"xx": {}}').map((b, i) => (i === 10 ? 0xff : b)), /not valid UTF-8/],
    ["header with a BOM", rawFile("\uFEFF{}"), /not valid JSON/],
    ["invalid JSON", rawFile('{"w": {'), /not valid JSON/],
    ["header a JSON array", rawFile("[]"), /not a JSON object/],
    ["header JSON null", rawFile("null"), /not a JSON object/],
    ["header a JSON string", rawFile('"{}"'), /not a JSON object/],
  ] as const)("%s", async (_label, bytes, problem) => {
    await rejects(bytes, problem);
  });

  it.each([
    ["entry not an object", `{"w": [1, 2]}`, /entry is not an object/],
    ["entry null", `{"w": null}`, /entry is not an object/],
    ["missing dtype", `{"w": {"shape": [2], "data_offsets": [0, 8]}}`, /no "dtype"/],
    ["missing shape", `{"w": {"dtype": "F32", "data_offsets": [0, 8]}}`, /no "shape"/],
    ["missing data_offsets", `{"w": {"dtype": "F32", "shape": [2]}}`, /no "data_offsets"/],
    ["dtype not a string", `{"w": ${entry(5 as unknown as string, [2], [0, 8])}}`, /"dtype" is not a string/],
    ["unknown dtype", `{"w": ${entry("F17", [2], [0, 8])}}`, /unknown dtype "F17"/],
    ["dtype inherited from Object.prototype", `{"w": ${entry("constructor", [2], [0, 8])}}`, /unknown dtype/],
    ["valid safetensors dtype we do not support", `{"w": ${entry("F8_E4M3", [8], [0, 8])}}`, /dtype F8_E4M3 is not supported/],
    ["shape not an array", `{"w": ${entry("F32", 2, [0, 8])}}`, /"shape" is not an array/],
    ["negative dim", `{"w": ${entry("F32", [-2], [0, 8])}}`, /shape\[0\] is not a non-negative integer/],
    ["fractional dim", `{"w": ${entry("F32", [1, 2.5], [0, 8])}}`, /shape\[1\] is not a non-negative integer/],
    ["string dim", `{"w": ${entry("F32", ["2"], [0, 8])}}`, /shape\[0\] is not a non-negative integer/],
    ["dim beyond 2^53", `{"w": {"dtype": "F32", "shape": [1e300], "data_offsets": [0, 8]}}`, /shape\[0\] is not a non-negative integer/],
    ["element count overflows 2^53", `{"w": ${entry("F32", [2 ** 30, 2 ** 30, 2 ** 30], [0, 8])}}`, /element count overflows/],
    ["data_offsets not an array", `{"w": ${entry("F32", [2], "0-8")}}`, /"data_offsets" is not two non-negative integers/],
    ["data_offsets of 3 numbers", `{"w": ${entry("F32", [2], [0, 8, 16])}}`, /"data_offsets" is not two/],
    ["negative offset", `{"w": ${entry("F32", [2], [-8, 0])}}`, /"data_offsets" is not two/],
    ["fractional offset", `{"w": ${entry("F32", [2], [0.5, 8.5])}}`, /"data_offsets" is not two/],
    ["offset beyond 2^53", `{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 1e20]}}`, /"data_offsets" is not two/],
    ["begin > end", `{"w": ${entry("F32", [0], [8, 0])}}`, /begin > end/],
    ["end - begin != prod(shape) * itemsize", `{"w": ${entry("F32", [3], [0, 8])}}`, /byte size does not match shape and dtype/],
    ["a huge shape caught by the size check, not allocated", `{"w": ${entry("F32", [1e15], [0, 8])}}`, /byte size does not match/],
  ] as const)("%s", async (_label, header, problem) => {
    await rejects(rawFile(header, u8(8)), problem, "w");
  });

  it("a folder is not a safetensors file", async () => {
    const err = await openSafetensors(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect((err as FormatError).message).toMatch(/not a regular file[\s\S]*qllm-st-/);
  });

  it("offsets beyond the data region (file truncated)", async () => {
    const err = await rejects(rawFile(`{${ok("w")}}`, u8(5)), /data lies beyond the end of the file/, "w");
    expect(err.details.hint).toMatch(/truncated/);
  });

  it("a huge tensor beyond the file is rejected without allocating it", async () => {
    await rejects(rawFile(`{"w":${entry("F32", [1e15], [0, 4e15])}}`, u8(8)), /beyond the end of the file/, "w");
  });

  it("overlapping tensors, naming both", async () => {
    const err = await rejects(rawFile(`{${ok("a")},"b":${entry("F32", [2], [4, 12])}}`, u8(12)), /tensors "a" and "b" overlap/, "b");
    expect(err.message).toContain("[0, 8)");
  });

  it("a zero-size tensor inside another counts as overlap, as in the reference", async () => {
    await rejects(rawFile(`{${ok("a")},"z":${entry("F32", [0], [4, 4])}}`, u8(8)), /tensors "a" and "z" overlap/, "z");
  });

  it("a hole in the data region", async () => {
    const err = await rejects(rawFile(`{"a":${entry("F32", [1], [0, 4])},"b":${entry("F32", [1], [8, 12])}}`, u8(12)), /hole in the data region before tensor "b"/, "b");
    expect(err.message).toContain("bytes [4, 8) belong to no tensor");
  });

  it("a hole at the start of the data region", async () => {
    await rejects(rawFile(`{"a":${entry("F32", [1], [4, 8])}}`, u8(8)), /hole in the data region/, "a");
  });

  it("trailing bytes after the last tensor (the reference's MetadataIncompleteBuffer)", async () => {
    await rejects(rawFile(`{${ok()}}`, u8(9)), /trailing bytes after the last tensor/);
  });

  it.each([
    ["an array", `[]`, /"__metadata__" is not an object/, "__metadata__"],
    ["a string", `"pt"`, /"__metadata__" is not an object/, "__metadata__"],
    ["a non-string value", `{"format": "pt", "n": 3}`, /"__metadata__" value for "n" is not a string/, "__metadata__.n"],
  ] as const)("__metadata__ that is %s", async (_label, meta, problem, field) => {
    await rejects(rawFile(`{"__metadata__": ${meta}, ${ok()}}`, u8(8)), problem, field);
  });
});

describe("lazy reads", () => {
  it("reads one tensor of a 16 GiB sparse file without touching the rest", async () => {
    const BIG = 2 ** 34; // larger than any Buffer: reading the whole file could not even be attempted
    const header = `{"big":${entry("U8", [BIG], [0, BIG])},"small":${entry("F32", [4], [BIG, BIG + 16])}}`;
    const p = await put(rawFile(header));
    const dataStart = 8 + Buffer.byteLength(header);
    const h = await open(p, "r+");
    await h.truncate(dataStart + BIG + 16); // sparse: no blocks allocated for "big"
    await h.write(fromF32("F32", new Float32Array([1, 2, 3, 4])), 0, 16, dataStart + BIG);
    await h.close();

    const before = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    const f = await openSafetensors(p);
    try {
      expect(Array.from(await f.readF32("small"))).toEqual([1, 2, 3, 4]);
      expect(Array.from(f.readF32Sync("small"))).toEqual([1, 2, 3, 4]);
      expect(f.info("big").end).toBe(BIG);
    } finally {
      await f.close();
    }
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 << 20);
  });

  it("reading after close is a bug, not a format error", async () => {
    const p = fresh();
    await writeSafetensors(p, [{ name: "x", dtype: "U8", shape: [1], data: new Uint8Array([1]) }]);
    const f = await openSafetensors(p);
    await f.close();
    await f.close(); // idempotent
    expect(() => f.readRawSync("x")).toThrow(InvariantError);
  });

  it("an unknown tensor name is a FormatError naming the file and tensor", async () => {
    const p = fresh();
    await writeSafetensors(p, [{ name: "x", dtype: "U8", shape: [1], data: new Uint8Array([1]) }]);
    const f = await openSafetensors(p);
    await expect(f.readRaw("y")).rejects.toThrow(FormatError);
    expect(() => f.info("y")).toThrow(/tensor "y" not found[\s\S]*file: .*f\d+\.safetensors[\s\S]*"x"/);
    await f.close();
  });
});

describe("writer", () => {
  const decls = [
    { name: "a", dtype: "F32", shape: [2] },
    { name: "b", dtype: "I8", shape: [3] },
  ] as const;
  const tmpFiles = async (): Promise<string[]> => (await readdir(dir)).filter((e) => e.includes(".tmp-"));

  it("streams tensors one at a time and renames on finish", async () => {
    const p = fresh();
    const w = await SafetensorsWriter.create(p, decls, { k: "v" });
    expect(w.tmpPath.startsWith(`${p}.tmp-${process.pid}-`)).toBe(true);
    expect(w.next?.name).toBe("a");
    await w.write("a", fromF32("F32", new Float32Array([1, 2])));
    await expect(readFile(p)).rejects.toThrow(/ENOENT/); // nothing at the final name until finish()
    await w.write("b", new Uint8Array([1, 2, 0xff]));
    expect(w.next).toBeUndefined();
    await w.finish();
    await w.abort(); // a no-op after finish
    const f = await openSafetensors(p);
    expect(Array.from(await f.readF32("b"))).toEqual([1, 2, -1]);
    expect(f.metadata).toEqual({ k: "v" });
    await f.close();
    expect(await tmpFiles()).toEqual([]);
  });

  it("rejects out-of-order tensors, wrong sizes and an early finish; abort removes the temp file", async () => {
    const p = fresh();
    const w = await SafetensorsWriter.create(p, decls);
    await expect(w.write("b", new Uint8Array(3))).rejects.toThrow(/declaration order[\s\S]*expected: "a"/);
    await expect(w.write("a", new Uint8Array(7))).rejects.toThrow(/wrong byte size[\s\S]*expected: 8 bytes/);
    await w.write("a", new Uint8Array(8));
    await expect(w.finish()).rejects.toThrow(UsageError);
    expect((await tmpFiles()).length).toBe(1);
    await w.abort();
    expect(await tmpFiles()).toEqual([]);
    await expect(readFile(p)).rejects.toThrow(/ENOENT/);
  });

  it.each([
    ["duplicate names", [{ name: "a", dtype: "U8", shape: [1] }, { name: "a", dtype: "U8", shape: [1] }], /duplicate tensor name/],
    ["the reserved name __metadata__", [{ name: "__metadata__", dtype: "U8", shape: [1] }], /reserved/],
    ["a negative dim", [{ name: "a", dtype: "U8", shape: [-1] }], /non-negative integers/],
    ["an unknown dtype", [{ name: "a", dtype: "Q4", shape: [1] }], /unknown dtype/],
  ])("validates declarations: %s", async (_label, d, problem) => {
    const p = fresh();
    const tensors = d.map((t) => ({ ...t, dtype: t.dtype as DType, data: new Uint8Array(1) }));
    await expect(writeSafetensors(p, tensors)).rejects.toThrow(problem);
    await expect(readFile(p)).rejects.toThrow(/ENOENT/);
    expect(await tmpFiles()).toEqual([]);
  });

  it("keeps the old file and leaves no temp file when a producer fails midway", async () => {
    const p = fresh();
    await writeSafetensors(p, [{ name: "old", dtype: "U8", shape: [1], data: new Uint8Array([1]) }]);
    const before = await readFile(p);
    const calls: string[] = [];
    await expect(writeSafetensors(p, [
      { name: "a", dtype: "U8", shape: [1], data: () => { calls.push("a"); return new Uint8Array([2]); } },
      { name: "b", dtype: "U8", shape: [1], data: async () => { calls.push("b"); throw new Error("quantizer failed"); } },
      { name: "c", dtype: "U8", shape: [1], data: () => { calls.push("c"); return new Uint8Array([3]); } },
    ])).rejects.toThrow("quantizer failed");
    expect(calls).toEqual(["a", "b"]); // producers are called lazily, in order
    expect(await readFile(p)).toEqual(before);
    expect(await tmpFiles()).toEqual([]);
  });
});

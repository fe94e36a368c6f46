/**
 * GGUF reader/writer (src/io/gguf.ts): round trips of every value type, alignment, the exact
 * bytes of a hand-computed file, every malformed case → FormatError, writer misuse →
 * UsageError (the llama Q/K permutation of exported tensors: qk-permute.test.ts).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { dequantizeBlocks, GGML_BLOCK_TYPES } from "../../src/pack/gguf-blocks.ts";
import {
  GGML_TYPES, GgufWriter, findGgmlType, ggmlTensorBytes, kv, openGguf, writeGguf,
  type GgufFile, type GgufTensorDecl, type GgufValue,
} from "../../src/io/gguf.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { f32ToBf16, f32ToF16, fromF32 } from "../../src/tensor/dtype.ts";
import { FormatError, UsageError } from "../../src/util/errors.ts";

let dir: string;
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), "qllm-gguf-test-")); });
afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

const f32Bytes = (...xs: number[]): Uint8Array => fromF32("F32", Float32Array.from(xs));

function expectFormatError(fn: () => unknown, message: RegExp): FormatError {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(FormatError);
  expect((err as Error).message).toMatch(message);
  return err as FormatError;
}

/** Open, run `fn`, close. */
function withGguf<T>(path: string, fn: (g: GgufFile) => T): T {
  const g = openGguf(path);
  try { return fn(g); } finally { g.close(); }
}

// ---------------------------------------------------------------- ggml type table

describe("ggml type table", () => {
  test("ids are unique and sizes match ggml-common.h for the types FORMATS.md lists", () => {
    expect(new Set(GGML_TYPES.map((t) => t.id)).size).toBe(GGML_TYPES.length);
    expect(new Set(GGML_TYPES.map((t) => t.name)).size).toBe(GGML_TYPES.length);
    const expected: [string, number, number, number][] = [
      ["F32", 0, 1, 4], ["F16", 1, 1, 2], ["Q4_0", 2, 32, 18], ["Q4_1", 3, 32, 20], ["Q5_0", 6, 32, 22], ["Q5_1", 7, 32, 24],
      ["Q8_0", 8, 32, 34], ["Q2_K", 10, 256, 84], ["Q3_K", 11, 256, 110], ["Q4_K", 12, 256, 144], ["Q5_K", 13, 256, 176],
      ["Q6_K", 14, 256, 210], ["BF16", 30, 1, 2],
    ];
    for (const [name, id, block, bytes] of expected) {
      expect(findGgmlType(name)).toEqual({ id, name, blockSize: block, bytesPerBlock: bytes });
      expect(findGgmlType(id)?.name).toBe(name);
    }
    expect(findGgmlType(4)).toBeUndefined(); // Q4_2, removed from ggml
    expect(findGgmlType("q4_k")?.id).toBe(12);
  });

  test("tensor byte sizes", () => {
    expect(ggmlTensorBytes(findGgmlType("F16")!, [3, 5])).toBe(30);
    expect(ggmlTensorBytes(findGgmlType("Q4_0")!, [64, 3])).toBe(2 * 18 * 3);
    expect(ggmlTensorBytes(findGgmlType("Q4_0")!, [48, 3])).toMatch(/not a multiple of the Q4_0 block size 32/);
    expect(ggmlTensorBytes(findGgmlType("F32")!, [2 ** 52])).toMatch(/exceeds/);
  });
});

// ---------------------------------------------------------------- round trips

describe("writer → reader round trip", () => {
  const allKvs: [string, GgufValue][] = [
    ["t.u8", kv.u8(255)], ["t.i8", kv.i8(-128)], ["t.u16", kv.u16(65535)], ["t.i16", kv.i16(-32768)],
    ["t.u32", kv.u32(4294967295)], ["t.i32", kv.i32(-2147483648)], ["t.f32", kv.f32(1.5)], ["t.bool", kv.bool(true)],
    ["t.bool0", kv.bool(false)], ["t.string", kv.str("héllo ✓ 🦙")], ["t.empty", kv.str("")],
    ["t.u64", kv.u64(2n ** 64n - 1n)], ["t.i64", kv.i64(-(2n ** 63n))], ["t.f64", kv.f64(Math.PI)],
    ["t.arr.u8", kv.array("u8", [0, 1, 255])], ["t.arr.i8", kv.array("i8", [-1, 127])],
    ["t.arr.u16", kv.array("u16", [65535])], ["t.arr.i16", kv.array("i16", [-2, 3])],
    ["t.arr.u32", kv.array("u32", [1, 2 ** 32 - 1])], ["t.arr.i32", kv.i32s([-5, 0, 7])],
    ["t.arr.f32", kv.f32s([0.25, -1e-3, Infinity])], ["t.arr.f64", kv.array("f64", [1e300, -0])],
    ["t.arr.bool", { type: "array", itemType: "bool", value: [true, false, true] }],
    ["t.arr.u64", { type: "array", itemType: "u64", value: [0n, 2n ** 64n - 1n] }],
    ["t.arr.i64", { type: "array", itemType: "i64", value: [-1n, 2n ** 63n - 1n] }],
    ["t.arr.string", kv.strings(["a b", "", "Ġthe", "<|im_end|>"])], ["t.arr.empty", kv.strings([])],
  ];

  test("every KV type and F32/F16/BF16 tensors", async () => {
    const path = join(dir, "roundtrip.gguf");
    const w32 = Float32Array.from([1, -2, 3.25, 1e-8, -0, 65504]);
    const w16 = Float32Array.from([0.5, -0.1, 1000, 3.14159]);
    const bf = Float32Array.from([1.1, -2.2, 3.3]);
    const q4 = new Uint8Array(18 * 2).map((_, i) => i);
    await writeGguf(path, allKvs, [
      { name: "w32", dims: [3, 2], type: "F32", data: fromF32("F32", w32) },
      { name: "w16", dims: [4], type: "F16", data: fromF32("F16", w16) },
      { name: "bf16", dims: [3, 1], type: "BF16", data: fromF32("BF16", bf) },
      { name: "q4", dims: [32, 2], type: "Q4_0", data: q4 },
    ]);
    withGguf(path, (g) => {
      expect(g.version).toBe(3);
      expect([...g.kv.keys()]).toEqual(allKvs.map(([k]) => k));
      for (const [k, v] of allKvs) {
        if (v.type === "f32") expect(g.kv.get(k)).toEqual({ type: "f32", value: Math.fround(v.value) });
        else if (v.type === "array" && v.itemType === "f32") expect(g.kv.get(k)).toEqual({ ...v, value: v.value.map(Math.fround) });
        else expect(g.kv.get(k)).toEqual(v);
      }
      expect(g.getString("t.string")).toBe("héllo ✓ 🦙");
      expect(g.getBool("t.bool")).toBe(true);
      expect(g.getNumber("t.i16")).toBe(-32768);
      expect(g.getStringArray("t.arr.string")).toEqual(["a b", "", "Ġthe", "<|im_end|>"]);
      expect(g.getNumberArray("t.arr.i32")).toEqual([-5, 0, 7]);
      expect(() => g.getString("t.u8")).toThrow(FormatError);
      expect(() => g.getNumber("missing.key")).toThrow(FormatError);
      expect(() => g.getNumber("t.u64")).toThrow(FormatError); // 2^64-1 does not fit a JS number

      expect(g.shape("w32")).toEqual([2, 3]);
      expect(g.readF32Sync("w32")).toEqual(w32);
      expect(g.readF32Sync("w16")).toEqual(Float32Array.from(w16, roundF16));
      expect(g.readF32Sync("bf16")).toEqual(Float32Array.from(bf, (x) => new Float32Array(new Uint32Array([f32ToBf16(x) << 16]).buffer)[0]!));
      expect(g.readBytesSync("q4")).toEqual(q4);
      expect(g.readF32Sync("q4")).toEqual(dequantizeBlocks(GGML_BLOCK_TYPES.Q4_0, q4, 64)); // decoded by src/pack/gguf-blocks.ts
      expectFormatError(() => g.tensor("nope"), /not found/);
    });
  });

  test("node-llama-cpp's independent GGUF parser reads our files identically", async () => {
    const path = join(dir, "roundtrip.gguf");
    const info = await readGgufFileInfo(path, { sourceType: "filesystem", logWarnings: false });
    expect(info.version).toBe(3);
    const md = info.metadata as unknown as { t: Record<string, unknown> };
    expect(md.t["u32"]).toBe(4294967295);
    expect(md.t["string"]).toBe("héllo ✓ 🦙");
    expect((md.t["arr"] as Record<string, unknown>)["string"]).toEqual(["a b", "", "Ġthe", "<|im_end|>"]);
    const ours = withGguf(path, (g) => [...g.tensors.values()].map((t) => ({ name: t.name, dims: t.dims, type: t.type.id, offset: t.offset })));
    expect(info.tensorInfo?.map((t) => ({ name: t.name, dims: t.dimensions.map(Number), type: t.ggmlType, offset: Number(t.offset) }))).toEqual(ours);
  });
});

function roundF16(x: number): number {
  const h = f32ToF16(x);
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

describe("alignment", () => {
  test("default 32: data start and every tensor offset are multiples of 32, padding is zero", async () => {
    const path = join(dir, "align32.gguf");
    const tensors = [3, 5, 8, 1].map((n, i) => ({ name: `t${i}`, dims: [n], type: "F32", data: f32Bytes(...Array.from({ length: n }, (_, j) => j + 1)) }));
    await writeGguf(path, [["general.architecture", kv.str("llama")]], tensors);
    const bytes = readFileSync(path);
    withGguf(path, (g) => {
      expect(g.alignment).toBe(32);
      expect(g.kv.has("general.alignment")).toBe(false);
      expect(g.dataStart % 32).toBe(0);
      expect([...g.tensors.values()].map((t) => t.offset)).toEqual([0, 32, 64, 96]);
      for (const t of g.tensors.values()) {
        const end = g.dataStart + t.offset + t.byteSize;
        expect([...bytes.subarray(end, g.dataStart + Math.ceil((t.offset + t.byteSize) / 32) * 32)].every((b) => b === 0)).toBe(true);
      }
      expect(g.fileSize).toBe(g.dataStart + 128);
    });
  });

  test("a non-default alignment is written as general.alignment (u32) and honoured", async () => {
    const path = join(dir, "align64.gguf");
    await writeGguf(path, [], [
      { name: "a", dims: [3], type: "F32", data: f32Bytes(1, 2, 3) },
      { name: "b", dims: [1], type: "F32", data: f32Bytes(4) },
    ], { alignment: 64 });
    withGguf(path, (g) => {
      expect(g.kv.get("general.alignment")).toEqual({ type: "u32", value: 64 });
      expect(g.alignment).toBe(64);
      expect(g.dataStart % 64).toBe(0);
      expect(g.tensor("b").offset).toBe(64);
      expect(g.readF32Sync("b")).toEqual(Float32Array.from([4]));
    });
    await expect(writeGguf(join(dir, "bad-align.gguf"), [], [], { alignment: 48 })).rejects.toThrow(UsageError);
  });
});

// ---------------------------------------------------------------- exact bytes

/**
 * Hand-computed layout of a file with one KV ("a" = u32 7) and one F32 tensor "t" = [1, -2]:
 *    0 magic | 4 version | 8 tensor_count | 16 kv_count
 *   24 key len | 32 "a" | 33 type (4 = u32) | 37 value
 *   41 name len | 49 "t" | 50 n_dims | 54 dims[0] | 62 ggml type | 66 offset
 *   74..96 zero padding | 96 data (8 bytes) | 104..128 zero padding
 */
const TINY = (() => {
  const b = new Uint8Array(128);
  const dv = new DataView(b.buffer);
  b.set([0x47, 0x47, 0x55, 0x46], 0);
  dv.setUint32(4, 3, true);
  dv.setBigUint64(8, 1n, true);
  dv.setBigUint64(16, 1n, true);
  dv.setBigUint64(24, 1n, true); b[32] = 0x61; dv.setUint32(33, 4, true); dv.setUint32(37, 7, true);
  dv.setBigUint64(41, 1n, true); b[49] = 0x74; dv.setUint32(50, 1, true); dv.setBigUint64(54, 2n, true); dv.setUint32(62, 0, true); dv.setBigUint64(66, 0n, true);
  dv.setFloat32(96, 1, true); dv.setFloat32(100, -2, true);
  return b;
})();
const OFF = { tensorCount: 8, kvCount: 16, keyLen: 24, valueType: 33, nameLen: 41, nDims: 50, dim0: 54, ggmlType: 62, offset: 66, data: 96 } as const;

describe("exact bytes", () => {
  test("a tiny file matches the hand-computed bytes", async () => {
    const path = join(dir, "tiny.gguf");
    await writeGguf(path, [["a", kv.u32(7)]], [{ name: "t", dims: [2], type: "F32", data: f32Bytes(1, -2) }]);
    expect(new Uint8Array(readFileSync(path))).toEqual(TINY);
    withGguf(path, (g) => {
      expect(g.dataStart).toBe(96);
      expect(g.readF32Sync("t")).toEqual(Float32Array.from([1, -2]));
    });
  });
});

// ---------------------------------------------------------------- malformed files

function patched(name: string, edit: (b: Uint8Array, dv: DataView) => Uint8Array | void, base: Uint8Array = TINY): string {
  const b = base.slice();
  const out = edit(b, new DataView(b.buffer)) ?? b;
  const path = join(dir, `bad-${name}.gguf`);
  writeFileSync(path, out);
  return path;
}

describe("malformed files → FormatError (file, field, expected, found)", () => {
  test("bad magic", () => {
    const e = expectFormatError(() => openGguf(patched("magic", (b) => { b.set([0x67, 0x67, 0x6a, 0x74], 0); })), /bad magic/);
    expect(e.details).toMatchObject({ field: "magic", expected: expect.stringContaining("GGUF") });
    expect(e.details.file).toContain("bad-magic.gguf");
  });

  test("unsupported versions", () => {
    for (const v of [1, 2, 4]) {
      const e = expectFormatError(() => openGguf(patched(`version${v}`, (_b, dv) => { dv.setUint32(4, v, true); })), /unsupported GGUF version/);
      expect(e.details).toMatchObject({ field: "version", expected: "3", found: String(v) });
    }
  });

  test("every truncation inside the header or the tensor data", () => {
    for (let cut = 0; cut < 104; cut++) {
      expectFormatError(() => openGguf(patched("cut", (b) => b.subarray(0, cut))), /truncated|too small|absurd|beyond the end/);
    }
    // The trailing padding after the last tensor is optional.
    for (const cut of [104, 110, 127]) withGguf(patched("cut-pad", (b) => b.subarray(0, cut)), (g) => expect(g.readF32Sync("t")).toEqual(Float32Array.from([1, -2])));
  });

  test("absurd counts and lengths are rejected before allocating", () => {
    expectFormatError(() => openGguf(patched("kvcount", (_b, dv) => { dv.setBigUint64(OFF.kvCount, 1n << 40n, true); })), /absurd kv_count/);
    expectFormatError(() => openGguf(patched("tcount", (_b, dv) => { dv.setBigUint64(OFF.tensorCount, 1n << 40n, true); })), /absurd tensor_count/);
    // a plausible count that does not fit in the file: the file was cut short
    expectFormatError(() => openGguf(patched("tcount-cut", (_b, dv) => { dv.setBigUint64(OFF.tensorCount, 1000n, true); })), /GGUF file is truncated/);
    expectFormatError(() => openGguf(patched("keylen", (_b, dv) => { dv.setBigUint64(OFF.keyLen, 1n << 40n, true); })), /string length is absurd/);
    expectFormatError(() => openGguf(patched("keylen64", (_b, dv) => { dv.setBigUint64(OFF.keyLen, (1n << 64n) - 1n, true); })), /out of range/);
    expectFormatError(() => openGguf(patched("namelen", (_b, dv) => { dv.setBigUint64(OFF.nameLen, 100000n, true); })), /string length is absurd/);
    expectFormatError(() => openGguf(patched("dim-huge", (_b, dv) => { dv.setBigUint64(OFF.dim0, 1n << 52n, true); })), /exceeds 2\^53/);
  });

  test("array lengths, nested arrays and unknown item types", async () => {
    // One KV: key "x" (1 byte) = array of u32 [1, 2]: key at 24, type at 33, item type at 37, count at 41.
    const path = join(dir, "arr.gguf");
    await writeGguf(path, [["x", kv.array("u32", [1, 2])]], []);
    const base = new Uint8Array(readFileSync(path));
    expect(new DataView(base.buffer).getUint32(33, true)).toBe(9);
    expectFormatError(() => openGguf(patched("arrlen", (_b, dv) => { dv.setBigUint64(41, 1n << 31n, true); }, base)), /absurd array length/);
    expectFormatError(() => openGguf(patched("arrlen2", (_b, dv) => { dv.setBigUint64(41, 5n, true); }, base)), /truncated|absurd/); // 20 bytes from 49 > 64-byte file
    expectFormatError(() => openGguf(patched("nested", (_b, dv) => { dv.setUint32(37, 9, true); }, base)), /nested arrays/);
    expectFormatError(() => openGguf(patched("itemtype", (_b, dv) => { dv.setUint32(37, 13, true); }, base)), /unknown value type/);
    await expect(writeGguf(join(dir, "nested.gguf"), [["x", { type: "array", itemType: "array" as "u8", value: [] }]], [])).rejects.toThrow(UsageError);
  });

  test("unknown value type, unknown ggml type, bad n_dims", () => {
    const e = expectFormatError(() => openGguf(patched("vtype", (_b, dv) => { dv.setUint32(OFF.valueType, 13, true); })), /unknown value type/);
    expect(e.details).toMatchObject({ field: "a", found: "13" });
    for (const t of [4, 31, 99]) expectFormatError(() => openGguf(patched("gtype", (_b, dv) => { dv.setUint32(OFF.ggmlType, t, true); })), /unknown ggml type/);
    for (const n of [0, 5]) expectFormatError(() => openGguf(patched("ndims", (_b, dv) => { dv.setUint32(OFF.nDims, n, true); })), /invalid number of dimensions|truncated/);
    expectFormatError(() => openGguf(patched("q4dims", (_b, dv) => { dv.setUint32(OFF.ggmlType, 2, true); })), /not a multiple of the Q4_0 block size/);
  });

  test("tensor data beyond the file, misaligned and overlapping offsets", async () => {
    const e = expectFormatError(() => openGguf(patched("beyond", (_b, dv) => { dv.setBigUint64(OFF.dim0, 100n, true); })), /beyond the end of the file/);
    expect(e.details.field).toBe("t");
    expectFormatError(() => openGguf(patched("beyond2", (_b, dv) => { dv.setBigUint64(OFF.offset, 32n, true); })), /beyond the end of the file/);
    const m = expectFormatError(() => openGguf(patched("misaligned", (_b, dv) => { dv.setBigUint64(OFF.offset, 4n, true); })), /misaligned tensor offset/);
    expect(m.details).toMatchObject({ field: "t", found: "4", expected: expect.stringContaining("32") });
    const two = join(dir, "two.gguf");
    await writeGguf(two, [], [{ name: "p", dims: [2], type: "F32", data: f32Bytes(1, 2) }, { name: "q", dims: [2], type: "F32", data: f32Bytes(3, 4) }]);
    const base = new Uint8Array(readFileSync(two));
    // Second tensor info: 24 + (8+1+4+8+4+8 = 33) → its offset field is at 24 + 33 + 25 = 82.
    expect(new DataView(base.buffer).getBigUint64(82, true)).toBe(32n);
    expectFormatError(() => openGguf(patched("overlap", (_b, dv) => { dv.setBigUint64(82, 0n, true); }, base)), /tensors overlap/);
    expectFormatError(() => openGguf(patched("dupname", (b) => { b[24 + 33 + 8] = 0x70; }, base)), /duplicate tensor name/);
  });

  test("duplicate keys, empty keys and bad general.alignment", async () => {
    const path = join(dir, "keys.gguf");
    await writeGguf(path, [["a", kv.u32(1)], ["b", kv.u32(2)]], []);
    const base = new Uint8Array(readFileSync(path));
    // kv[1] starts at 24 + 17 = 41; its key byte is at 49.
    expectFormatError(() => openGguf(patched("dupkey", (b) => { b[49] = 0x61; }, base)), /duplicate key/);
    expectFormatError(() => openGguf(patched("emptykey", (_b, dv) => { dv.setBigUint64(24, 0n, true); }, base)), /empty key|unknown value type|truncated/);
    const al = join(dir, "al.gguf");
    await writeGguf(al, [["general.alignment", kv.u32(64)]], []);
    const alBase = new Uint8Array(readFileSync(al));
    // key "general.alignment" (17 bytes) at 32..49, type at 49, value at 53.
    expectFormatError(() => openGguf(patched("al48", (_b, dv) => { dv.setUint32(53, 48, true); }, alBase)), /not a power of two/);
    expectFormatError(() => openGguf(patched("al0", (_b, dv) => { dv.setUint32(53, 0, true); }, alBase)), /not a power of two/);
    expectFormatError(() => openGguf(patched("altype", (_b, dv) => { dv.setUint32(49, 5, true); }, alBase)), /must be a u32/);
  });

  test("random corruption never escapes as anything but FormatError", async () => {
    const path = join(dir, "fuzz-base.gguf");
    await writeGguf(path, [["a", kv.u32(7)], ["s", kv.strings(["x", "yz"])], ["f", kv.f32s([1, 2])]], [
      { name: "t", dims: [4, 2], type: "F16", data: new Uint8Array(16) }, { name: "u", dims: [32], type: "Q8_0", data: new Uint8Array(34) },
    ]);
    const base = new Uint8Array(readFileSync(path));
    const rand = mulberry32(7);
    for (let i = 0; i < 1500; i++) {
      const b = base.slice();
      const flips = 1 + Math.floor(rand() * 3);
      for (let f = 0; f < flips; f++) b[Math.floor(rand() * 200)] = Math.floor(rand() * 256);
      const p = join(dir, "fuzz.gguf");
      writeFileSync(p, b);
      try { openGguf(p).close(); } catch (e) { if (!(e instanceof FormatError)) throw e; }
    }
  });
});

// ---------------------------------------------------------------- writer misuse and atomicity

describe("streaming writer", () => {
  const decls: GgufTensorDecl[] = [{ name: "a", dims: [2], type: "F32" }, { name: "b", dims: [3], type: "F16" }];

  test("writes into a temp file in the same folder, renamed on finish", async () => {
    const sub = mkdtempSync(join(dir, "w-"));
    const out = join(sub, "out.gguf");
    const w = await GgufWriter.create(out, [], decls);
    expect(w.next?.name).toBe("a");
    await w.writeTensor("a", f32Bytes(1, 2));
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(sub).some((f) => f.startsWith("out.gguf.tmp-"))).toBe(true);
    await w.writeTensor("b", fromF32("F16", Float32Array.from([1, 2, 3])));
    await w.finish();
    expect(readdirSync(sub)).toEqual(["out.gguf"]);
    expect(w.totalBytes).toBe(readFileSync(out).length);
  });

  test("misuse → UsageError; abort deletes the temp file and keeps an existing output", async () => {
    const sub = mkdtempSync(join(dir, "w-"));
    const out = join(sub, "out.gguf");
    writeFileSync(out, "previous");
    const w = await GgufWriter.create(out, [], decls);
    await expect(w.writeTensor("b", new Uint8Array(6))).rejects.toThrow(/declaration order/);
    await expect(w.writeTensor("a", new Uint8Array(7))).rejects.toThrow(/wrong byte size/);
    await w.writeTensor("a", f32Bytes(1, 2));
    await expect(w.finish()).rejects.toThrow(/before every tensor was written/);
    await w.abort();
    expect(readdirSync(sub)).toEqual(["out.gguf"]);
    expect(readFileSync(out, "utf8")).toBe("previous");
  });

  test("invalid declarations → UsageError", async () => {
    const bad = async (kvs: [string, GgufValue][], ts: GgufTensorDecl[]): Promise<unknown> => GgufWriter.create(join(dir, "never.gguf"), kvs, ts);
    await expect(bad([["k", kv.u8(256)]], [])).rejects.toThrow(UsageError);
    await expect(bad([["k", kv.i32(1.5)]], [])).rejects.toThrow(UsageError);
    await expect(bad([["k", kv.u32(1)], ["k", kv.u32(2)]], [])).rejects.toThrow(/duplicate key/);
    await expect(bad([["", kv.u32(1)]], [])).rejects.toThrow(/invalid key/);
    await expect(bad([], [{ name: "x", dims: [2], type: "Q9_9" }])).rejects.toThrow(/unknown ggml type/);
    await expect(bad([], [{ name: "x", dims: [48], type: "Q4_0" }])).rejects.toThrow(/block size/);
    await expect(bad([], [{ name: "x", dims: [1, 1, 1, 1, 1], type: "F32" }])).rejects.toThrow(/invalid dims/);
    await expect(bad([], [{ name: "x", dims: [2], type: "F32" }, { name: "x", dims: [2], type: "F32" }])).rejects.toThrow(/duplicate tensor/);
    await expect(bad([], [{ name: "x", dims: [2], type: "F32", byteSize: 4 }])).rejects.toThrow(/declared byte size/);
    expect(readdirSync(dir).some((f) => f.startsWith("never.gguf"))).toBe(false);
  });
});

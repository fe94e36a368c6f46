import { describe, expect, it } from "vitest";
import { packGptq, unpackGptq, gptqShapeProblem } from "../../src/pack/hf-gptq.ts";
import { packStream } from "../../src/pack/bits.ts";
import { rtnQuantizeLinear } from "../../src/methods/rtn.ts";
import { gptqQuantizeLinear } from "../../src/methods/gptq.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { FormatError, UsageError } from "../../src/util/errors.ts";
import { randn } from "../helpers/random-weights.ts";

describe("bit streams", () => {
  it("4-bit: value j at bits 4j (hand-packed word)", () => {
    const out = new Int32Array(1);
    packStream([1, 2, 3, 4, 5, 6, 7, 15], 0, 1, 8, 4, out, 0, 1);
    expect(out[0]! >>> 0).toBe(0xf7654321);
  });

  it("3-bit matches AutoGPTQ's three-word layout", () => {
    const vals = Array.from({ length: 32 }, (_, i) => (i * 5 + 3) % 8);
    const w = new Int32Array(3);
    packStream(vals, 0, 1, 32, 3, w, 0, 1);
    // Spell out qlinear_cuda_old.py's bits == 3 branch independently:
    const e: [number, number, number] = [0, 0, 0];
    for (let i = 0; i < 10; i++) e[0] |= vals[i]! << (3 * i);
    e[0] |= vals[10]! << 30;
    e[1] = (vals[10]! >> 2) & 1;
    for (let i = 11; i < 21; i++) e[1] |= vals[i]! << (3 * (i - 11) + 1);
    e[1] |= vals[21]! << 31;
    e[2] = (vals[21]! >> 1) & 3;
    for (let i = 22; i < 32; i++) e[2] |= vals[i]! << (3 * (i - 22) + 2);
    expect(Array.from(w)).toEqual(e.map((x) => x | 0));
  });
});

describe("HF-GPTQ pack ∘ unpack", () => {
  const rand = mulberry32(11);
  const N = 64, K = 128;
  const W = Float32Array.from({ length: N * K }, () => 0.03 * randn(rand));
  for (const bits of [2, 3, 4, 8]) {
    for (const g of [32, 64, 128, -1]) {
      for (const sym of [true, false]) {
        it(`${bits}-bit g${g} ${sym ? "sym" : "asym"}: identity (v2${sym ? " and v1" : ""})`, () => {
          const q = rtnQuantizeLinear({ weight: W, rows: N, cols: K, bits, groupSize: g, sym });
          for (const format of sym ? (["gptq", "gptq_v2"] as const) : (["gptq_v2"] as const)) {
            const t = packGptq(q, format);
            expect(t.qweight.length).toBe((K * bits / 32) * N);
            const u = unpackGptq(t, { N, K, bits, groupSize: g, sym, format });
            expect(u.codes).toEqual(q.codes);
            expect(u.scales).toEqual(q.scales);
            expect(u.zeros).toEqual(q.zeros);
            expect(u.gIdx).toEqual(q.gIdx);
          }
        });
      }
    }
  }

  it("act-order g_idx survives packing", () => {
    const H = new Float64Array(K * K);
    for (let i = 0; i < K; i++) H[i * K + i] = 1 + ((i * 37) % K);
    const q = gptqQuantizeLinear({ weight: W, rows: N, cols: K, hessian: H, bits: 4, groupSize: 32, sym: true, actOrder: true, staticGroups: false, damp: 0.01, blockSize: 128 });
    const u = unpackGptq(packGptq(q, "gptq"), { N, K, bits: 4, groupSize: 32, sym: true, format: "gptq" });
    expect(u.gIdx).toEqual(q.gIdx);
    expect(u.codes).toEqual(q.codes);
  });

  it("v1 refuses a zero point that would wrap", () => {
    const q = rtnQuantizeLinear({ weight: Float32Array.from({ length: N * K }, (_, i) => (i % 7) * 0.1), rows: N, cols: K, bits: 4, groupSize: 32, sym: false });
    expect(q.zeros.includes(0)).toBe(true);
    expect(() => packGptq(q, "gptq")).toThrow(UsageError);
    expect(() => packGptq(q, "gptq")).toThrow(/gptq_v2/);
  });

  it("shape constraints are explained", () => {
    expect(gptqShapeProblem(64, 100, 4)).toMatch(/multiple of 8/);
    expect(gptqShapeProblem(64, 80, 3)).toMatch(/multiple of 32/);
    expect(gptqShapeProblem(64, 128, 5)).toMatch(/bits must be one of/);
    expect(gptqShapeProblem(64, 128, 4)).toBeNull();
  });
});

describe("HF-GPTQ v1 zero points at 8 bits", () => {
  // One 8-bit layer, N = 4, K = 32, one group; qzeros [1, N·8/32 = 1] holds four stored zeros, byte n for column n.
  const N = 4, K = 32;
  const tensors = (storedZeros: number[]) => ({
    qweight: new Int32Array((K * 8 / 32) * N),
    qzeros: Int32Array.of(storedZeros.reduce((w, z, n) => w | (z << (8 * n)), 0)),
    scales: new Uint16Array(N).fill(0x3c00), // 1.0
    gIdx: new Int32Array(K),
  });
  const opts = { N, K, bits: 8, groupSize: -1, sym: false, format: "gptq" as const, name: "model.layers.0.mlp.down_proj", file: "model.safetensors" };

  it("stored 254 reads back as true zero 255 (v1 adds the 1 back)", () => {
    expect(Array.from(unpackGptq(tensors([0, 127, 200, 254]), opts).zeros)).toEqual([1, 128, 201, 255]);
  });

  it("stored 255 (true zero 256) is refused naming the layer and column, not wrapped to 0", () => {
    let err: unknown;
    try { unpackGptq(tensors([127, 255, 127, 127]), opts); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(FormatError);
    expect((err as FormatError).message).toMatch(/zero point 256/);
    expect((err as FormatError).details.field).toBe("model.layers.0.mlp.down_proj.qzeros[group 0, column 1]");
  });
});

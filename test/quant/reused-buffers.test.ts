/**
 * The quantizer's reused memory (issue 8 item 4: allocate the big per-block arrays once): every
 * large array the pipeline takes from a reused buffer must give the SAME bits as a
 * fresh array, even when the buffer holds the previous layer's (here: poisoned) values,
 * and block-by-block reads must land in the same memory. The whole pipeline on those
 * buffers is pinned by test/quant/pipeline.test.ts (resume byte-identical) and by
 * eval/output-checksums.ts (the bundled model's files unchanged).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNativeBackend, type NativeBackend } from "../../src/backend/native.ts";
import { refBackend } from "../../src/backend/ref.ts";
import { openCheckpoint, type Checkpoint } from "../../src/io/checkpoint.ts";
import { Scratch } from "../../src/load/canonical.ts";
import { checkpointSource, readModelConfig } from "../../src/load/hf-folder.ts";
import { gptqQuantizeLinearFast, HessianAccumulatorF32 } from "../../src/methods/gptq-fast.ts";
import { rtnQuantizeLinear, rtnQuantizeRows } from "../../src/methods/rtn.ts";
import { loadBlock, loadEmbedding } from "../../src/nn/weights.ts";
import { checkpointRowsF32Into } from "../../src/load/raw-read.ts";
import { relOutputError, relOutputErrorAsync } from "../../src/quantize/report.ts";
import { DTYPE_SIZE, fromF32, toF32, toF32Into, type DType } from "../../src/tensor/dtype.ts";
import { dequantize } from "../../src/tensor/quantized.ts";
import { packAwqGemm } from "../../src/pack/awq-gemm.ts";
import { packGptq } from "../../src/pack/hf-gptq.ts";
import { weightKernels } from "../../src/backend/weight-kernels.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { activations } from "../helpers/activations.ts";
import { randomArray } from "../helpers/random-weights.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

/** Same bits, element for element (NaN payloads and −0 included), reporting the first difference. */
function expectSameBits(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  expect(got.length, what).toBe(want.length);
  let first = -1;
  for (let i = 0; i < got.length && first < 0; i++) if (!Object.is(got[i], want[i])) first = i;
  expect(first === -1 ? "same" : `${what}[${first}]: ${got[first]} vs ${want[first]}`).toBe("same");
}

/** A buffer full of the worst leftovers: NaN (f32) or 0xff (bytes). */
const poisonF32 = (n: number): Float32Array => new Float32Array(n).fill(NaN);
const poisonU8 = (n: number): Uint8Array => new Uint8Array(n).fill(255);

let backend: NativeBackend;
beforeAll(() => { backend = createNativeBackend({ threads: 1 }); });

describe("toF32Into", () => {
  it("decodes every dtype to the bits toF32 gives, into a view that does not start at byte 0", () => {
    const rand = mulberry32(3);
    const vals = Float32Array.from([...randomArray(37, 3, rand), 0, -0, 65504, 1e-8, -1e30]);
    const cases: [DType, Uint8Array][] = [
      ["F32", fromF32("F32", vals)], ["F16", fromF32("F16", vals)], ["BF16", fromF32("BF16", vals)],
      ["I32", new Uint8Array(Int32Array.from(vals, (v) => Math.trunc(v * 1000) | 0).buffer)],
      ["U8", Uint8Array.from(vals, (v) => Math.abs(v * 50) & 255)],
      ["F64", new Uint8Array(Float64Array.from(vals).buffer)],
    ];
    for (const [dtype, bytes] of cases) {
      const n = bytes.byteLength / DTYPE_SIZE[dtype];
      const host = new Float32Array(n + 3).fill(NaN);
      const out = toF32Into(dtype, bytes, host.subarray(2, 2 + n));
      expectSameBits(out, toF32(dtype, bytes), dtype);
      expect(Number.isNaN(host[0]!) && Number.isNaN(host[1]!) && Number.isNaN(host[n + 2]!), `${dtype}: wrote outside its view`).toBe(true);
    }
  });

  it("refuses an output of the wrong length", () => {
    expect(() => toF32Into("F32", new Uint8Array(8), new Float32Array(3))).toThrow(/2 F32 values into an array of 3/);
  });
});

describe.each(["F32", "BF16"] as const)("loadBlock into reused buffers (%s checkpoint)", (dtype) => {
  let m: TinyModel, ckpt: Checkpoint;
  beforeAll(async () => {
    m = await makeTinyModel({ modelType: "qwen2", hidden: 64, intermediate: 96, layers: 2, heads: 4, kvHeads: 2, dtype, seed: 5 });
    ckpt = await openCheckpoint(m.dir);
  });
  afterAll(async () => { await ckpt.close(); await m.cleanup(); });

  it("reads the same values as fresh arrays, block after block into the same memory", () => {
    const cfg = readModelConfig(m.dir);
    const src = checkpointSource(ckpt, m.dir);
    const buffers = new Scratch();
    const memory: ArrayBufferLike[] = [];
    for (let b = 0; b < cfg.numLayers; b++) {
      const want = loadBlock(cfg, src, b);
      const got = loadBlock(cfg, src, b, { buffers });
      expectSameBits(got.attnNorm, want.attnNorm, `block ${b} attnNorm`);
      expectSameBits(got.mlpNorm, want.mlpNorm, `block ${b} mlpNorm`);
      const arrays: Float32Array[] = [got.attnNorm, got.mlpNorm];
      for (const spec of cfg.arch.linears) {
        const g = got.linears[spec.name], w = want.linears[spec.name];
        expectSameBits(g.weight, w.weight, `block ${b} ${spec.name}`);
        expect(g.bias === undefined).toBe(w.bias === undefined);
        if (g.bias) expectSameBits(g.bias, w.bias!, `block ${b} ${spec.name}.bias`);
        arrays.push(g.weight, ...(g.bias ? [g.bias] : []));
      }
      expect(arrays.some((a) => a.buffer === got.linears.q.weight.buffer && a !== got.linears.q.weight)).toBe(false); // one slot per array
      if (b === 0) memory.push(...arrays.map((a) => a.buffer));
      else expect(arrays.map((a) => a.buffer)).toEqual(memory); // block 1 reuses block 0's memory, array for array
    }
  });

  it("embeds token rows read one by one exactly as rows of the whole embedding", () => {
    const cfg = readModelConfig(m.dir);
    const H = cfg.hiddenSize;
    const embed = loadEmbedding(cfg, checkpointSource(ckpt, m.dir)); // [V, H]
    const ids = [0, 7, cfg.vocabSize - 1, 7, 3];
    const got = checkpointRowsF32Into(ckpt, cfg.arch.embed.hf, H, ids, poisonF32(ids.length * H), new Scratch());
    ids.forEach((id, t) => expectSameBits(got.subarray(t * H, (t + 1) * H), embed.subarray(id * H, (id + 1) * H), `row ${id}`));
    expect(() => checkpointRowsF32Into(ckpt, cfg.arch.embed.hf, H, [cfg.vocabSize], new Float32Array(H), new Scratch())).toThrow(/row/);
  });
});

describe("GPTQ, Hessian, report and RTN on reused buffers", () => {
  const N = 48, K = 160, T = 96;
  const rand = mulberry32(11);
  const W = randomArray(N * K, 0.05, rand); // [N, K]
  const X = activations(T, K, 7); // [T, K]

  it.each(["native", "ref"] as const)("a Hessian accumulated in dirty storage equals a fresh accumulator's (%s backend)", async (which) => {
    const b = which === "native" ? backend : refBackend;
    const fresh = new HessianAccumulatorF32(K);
    const reused = new HessianAccumulatorF32(K, poisonF32(K * K + 100));
    for (const acc of [fresh, reused]) {
      acc.add(b, X.subarray(0, 40 * K), 40);
      await acc.addAsync(b, X.subarray(40 * K), T - 40);
    }
    expectSameBits(reused.hessian(), fresh.hessian(), "H");
    expect(() => new HessianAccumulatorF32(K, new Float32Array(K * K - 1))).toThrow(/Hessian storage/);
  });

  it("GPTQ into dirty output buffers gives the bits of fresh ones, in those buffers", () => {
    const acc = new HessianAccumulatorF32(K);
    acc.add(backend, X, T);
    const opts = {
      backend, weight: W, rows: N, cols: K, hessian: acc.hessian(), bits: 4, groupSize: 32, sym: false,
      actOrder: true, staticGroups: false, damp: 0.01, blockSize: 64,
    };
    const want = gptqQuantizeLinearFast(opts);
    const G = K / 32;
    const grids = { scales: poisonF32(N * G), zeros: poisonU8(N * G), gIdx: new Int32Array(K).fill(-7) };
    const out = { codes: poisonU8(N * K), dequantized: poisonF32(N * K), hinv: poisonF32(K * K), grids };
    const got = gptqQuantizeLinearFast({ ...opts, out });
    expect(got.codes).toBe(out.codes);
    expect(got.dequantized).toBe(out.dequantized);
    expect(got.scales === grids.scales && got.zeros === grids.zeros && got.gIdx === grids.gIdx).toBe(true);
    expectSameBits(got.codes, want.codes, "codes");
    expectSameBits(got.dequantized, want.dequantized, "dequantized");
    expectSameBits(got.scales, want.scales, "scales");
    expectSameBits(got.zeros, want.zeros, "zeros");
    expectSameBits(got.gIdx, want.gIdx, "g_idx");
    expect([got.loss, got.dampUsed]).toEqual([want.loss, want.dampUsed]);
    expect(() => gptqQuantizeLinearFast({ ...opts, out: { ...out, hinv: new Float32Array(K) } })).toThrow(/GPTQ output buffers/);
    expect(() => gptqQuantizeLinearFast({ ...opts, out: { ...out, grids: { ...grids, gIdx: new Int32Array(K - 1) } } })).toThrow(/GPTQ grid buffers/);

    // packed into dirty reused memory (bits.ts PackAlloc): the bytes of fresh arrays
    const dirtyAlloc = (slot: string, n: number): Uint8Array => { seen.push(slot); return poisonU8(n + 8).subarray(8); };
    const seen: string[] = [];
    for (const format of ["gptq_v2", "gptq"] as const) {
      const sym = format === "gptq" ? { ...want, sym: true, zeros: want.zeros.map(() => 8) } : want;
      const fresh = packGptq(sym, format), reused = packGptq(sym, format, undefined, dirtyAlloc);
      for (const k of ["qweight", "qzeros", "scales", "gIdx"] as const) expectSameBits(reused[k], fresh[k], `${format} ${k}`);
    }
    const contiguous = gptqQuantizeLinearFast({ ...opts, actOrder: false });
    const awqFresh = packAwqGemm(contiguous), awqReused = packAwqGemm(contiguous, dirtyAlloc);
    for (const k of ["qweight", "qzeros", "scales"] as const) expectSameBits(awqReused[k], awqFresh[k], `awq ${k}`);
    expect([...new Set(seen)].sort()).toEqual(["g_idx", "qweight", "qzeros", "scales"]);

    // the relative output error on dirty scratch slots, both ways (GPTQ's loss, and the direct trace)
    const dirty = { f32: (_slot: string, n: number) => poisonF32(n) };
    const H = acc.hessian(), Q = want.dequantized;
    const g = { loss: want.loss, dampUsed: want.dampUsed };
    expect(relOutputError(backend, W, Q, H, N, K, g, dirty)).toBe(relOutputError(backend, W, Q, H, N, K, g));
    expect(relOutputError(backend, W, Q, H, N, K, undefined, dirty)).toBe(relOutputError(backend, W, Q, H, N, K));
    return Promise.all([
      relOutputErrorAsync(backend, W, Q, H, N, K, {}, g, dirty), relOutputErrorAsync(backend, W, Q, H, N, K, {}, g),
      relOutputErrorAsync(backend, W, Q, H, N, K, {}, undefined, dirty), relOutputErrorAsync(backend, W, Q, H, N, K),
    ]).then(([a, b, c, d]) => { expect(a).toBe(b); expect(c).toBe(d); });
  });

  it("RTN codes and dequantize into dirty buffers equal fresh arrays", () => {
    const want = rtnQuantizeLinear({ weight: W, rows: N, cols: K, bits: 3, groupSize: 32, sym: false });
    const codes = poisonU8(N * K);
    const got = rtnQuantizeLinear({ weight: W, rows: N, cols: K, bits: 3, groupSize: 32, sym: false, codes });
    expect(got.codes).toBe(codes);
    expectSameBits(got.codes, want.codes, "rtn codes");
    expectSameBits(dequantize(got, poisonF32(N * K)), dequantize(want), "dequantized");
    expect(() => dequantize(want, new Float32Array(N * K + 1))).toThrow(/dequantize/);

    const rowsWant = rtnQuantizeRows(weightKernels(backend), W, "F32", N, K, 4, 32, true);
    const rowsGot = rtnQuantizeRows(weightKernels(backend), W, "F32", N, K, 4, 32, true, poisonU8(N * K));
    expectSameBits(rowsGot.q.codes, rowsWant.q.codes, "rtn rows codes");
    expect([rowsGot.num, rowsGot.den]).toEqual([rowsWant.num, rowsWant.den]);
  });
});

/**
 * Every WGSL kernel against its CPU reference (src/backend/ref.ts, src/nn/), on odd shapes:
 * M = 1 and 17 (decode and prefill kernels), K not a multiple of the workgroup or the 32-wide
 * tile, N not a multiple of anything; with subgroup reductions and with the workgroup-memory
 * fallback. Tolerances (named):
 *   F32_ACC    GPU f32 accumulation vs the f64 reference, relative to Σ|x·w| of the dot product
 *   F16_WEIGHT f16 weights vs the original f32 weights: the f16 unit roundoff 2⁻¹¹ (+ F32_ACC)
 *   SGMAT_ACC  the subgroup-matrix kernel (where the adapter offers it; M ≥ SGMAT_MIN_ROWS) vs
 *              refMatmul on x and weights rounded to f16, as the kernel stages them: f16 products
 *              are exact in f32, what is left is f32 accumulation in the matrix units' order
 *   ATTN_F32   attention (f32 scores, softmax and P·V) vs refAttention (f64) and the native
 *              backend's attention on the same cache rows (f32 or f16), absolute on outputs in [-1, 1]
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { refAttention, refMatmul } from "../../src/backend/ref.ts";
import { selectBackend } from "../../src/backend/select.ts";
import { GpuKernels, UniformArena, grid2d } from "../../src/backend/webgpu-kernels.ts";
import { GEMV_MAX_ROWS, SGMAT_MIN_ROWS, MatmulOp, matmulPipelines, setPlan, simpleOp, uploadLinear } from "../../src/backend/webgpu-ops.ts";
import { dequantizeGpuLayout, gatherColumns, packF16Gpu, packQ4Gpu } from "../../src/backend/webgpu-weights.ts";
import type { GpuContext } from "../../src/backend/webgpu-device.ts";
import { rmsNorm } from "../../src/nn/block.ts";
import { RopeTable } from "../../src/nn/rope.ts";
import { fromQuantizedLinear } from "../../src/load/canonical.ts";
import { dequantize, type QuantizedLinear } from "../../src/tensor/quantized.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { f16ToF32, f32ToF16 } from "../../src/tensor/dtype.ts";
import { randomArray } from "../helpers/random-weights.ts";
import { dotScale, maxRelErr, tryOpenGpu } from "./gpu.ts";

const F32_ACC = 2e-6;
const F16_WEIGHT = 2 ** -11 + F32_ACC;
const SGMAT_ACC = 1e-4;
const ATTN_F32 = 2e-5;
const round16 = (a: Float32Array): Float32Array => a.map((v) => f16ToF32(f32ToF16(v)));

function randomQ4(N: number, K: number, groupSize: number, seed: number, actOrder = false): QuantizedLinear {
  const rand = mulberry32(seed);
  const G = Math.ceil(K / groupSize);
  const codes = Uint8Array.from({ length: N * K }, () => Math.floor(rand() * 16));
  const scales = Float32Array.from({ length: N * G }, () => f16ToF32(f32ToF16(0.01 + 0.05 * rand())));
  const zeros = Uint8Array.from({ length: N * G }, () => Math.floor(rand() * 16));
  let order = Array.from({ length: K }, (_, k) => k);
  if (actOrder) order = order.sort(() => rand() - 0.5); // order[i] = column at sweep position i
  const gIdx = new Int32Array(K);
  order.forEach((col, i) => { gIdx[col] = Math.floor(i / groupSize); });
  return { N, K, bits: 4, groupSize, sym: false, codes, scales, zeros, gIdx };
}

for (const subgroups of [true, false]) {
  /** The fallback pass reruns only kernels that reduce (gemv, rmsnorm, attention): the others do not depend on the choice. */
  const runs = (reduces: boolean) => subgroups || reduces;
  describe(`WebGPU kernels (${subgroups ? "subgroup" : "workgroup-memory"} reductions)`, () => {
    let ctx: GpuContext | null = null;
    let k: GpuKernels;
    beforeAll(async () => {
      ctx = await tryOpenGpu(subgroups);
      if (ctx) k = new GpuKernels(ctx);
    });
    afterAll(() => ctx?.device.destroy());

    it("compiles the reduction this pass is named after", (t) => {
      if (!ctx) return t.skip();
      if (subgroups && !ctx.info.subgroups) return t.skip(`the adapter (${ctx.info.description}) has no subgroups feature`);
      expect(ctx.info.subgroups).toBe(subgroups);
      const code = k.wgsl("gemv-q4");
      expect(code.includes("subgroupAdd(")).toBe(subgroups);
      expect(code.includes("enable subgroups;")).toBe(subgroups);
    });

    /** Whether an M-row matmul runs on the subgroup-matrix kernel on this device. */
    const onSgmat = (M: number): boolean => M >= SGMAT_MIN_ROWS && k.sgmatConfig !== null;

    it("builds the subgroup-matrix kernels where the adapter offers them", async (t) => {
      if (!ctx) return t.skip();
      if (k.sgmatConfig === null) return t.skip(`subgroup matrices not offered by ${ctx.info.description || ctx.info.device}`);
      const q4 = await matmulPipelines(k, "q4", true), f16 = await matmulPipelines(k, "f16", true);
      expect([...k.sgmatErrors.entries()]).toEqual([]);
      expect(q4.sgmat).not.toBeNull();
      expect(f16.sgmat).not.toBeNull();
    });

    async function matmul(layout: ReturnType<typeof packF16Gpu> | NonNullable<ReturnType<typeof packQ4Gpu>>, x: Float32Array, M: number, bias?: Float32Array, acc?: Float32Array): Promise<Float32Array> {
      const arena = new UniformArena(k.device, 4);
      const lin = uploadLinear(k, layout, "w", bias);
      const pipes = await matmulPipelines(k, lin.format, true);
      expect(pipes.sgmat !== null).toBe(k.sgmatConfig !== null);
      const xb = k.buffer(x, "x"), yb = k.buffer(acc ?? new Float32Array(M * lin.N + 3), "y");
      const op = new MatmulOp(k, arena, pipes, await k.pipeline("gather_cols"), lin, xb, yb, k.buffer(x.byteLength, "xp"), "mm");
      op.plan(arena, M, acc ? 3 : 0, acc !== undefined);
      arena.flush(k.device);
      const enc = k.device.createCommandEncoder();
      k.encode(enc, op.ops);
      const y = await k.read(yb, (M * lin.N + 3) * 4, enc);
      return acc ? y.subarray(3) : y.subarray(0, M * lin.N);
    }

    for (const [M, K, N] of [[1, 200, 37], [17, 200, 37], [3, 1000, 5], [40, 520, 70]] as const) {
      it.runIf(runs(M < GEMV_MAX_ROWS))(`f16 matmul M=${M} K=${K} N=${N} equals refMatmul on the f16 weights, and the f32 weights within F16_WEIGHT`, async (t) => {
        if (!ctx) return t.skip();
        const rand = mulberry32(M * 7 + K);
        const w = randomArray(N * K, 0.05, rand), x = randomArray(M * K, 1, rand), bias = randomArray(N, 0.1, rand);
        const layout = packF16Gpu(w, N, K);
        const y = await matmul(layout, x, M, bias);
        const w16 = dequantizeGpuLayout(layout);
        if (onSgmat(M)) {
          expect(maxRelErr(y, refMatmul(round16(x), w16, M, K, N, bias), dotScale(x, w16, M, K, N))).toBeLessThan(SGMAT_ACC);
          return;
        }
        const scale = dotScale(x, w16, M, K, N);
        expect(maxRelErr(y, refMatmul(x, w16, M, K, N, bias), scale)).toBeLessThan(F32_ACC);
        expect(maxRelErr(y, refMatmul(x, w, M, K, N, bias), dotScale(x, w, M, K, N))).toBeLessThan(F16_WEIGHT);
      });
    }

    for (const [M, K, N, g, actOrder] of [[1, 200, 37, 40, false], [17, 200, 37, 40, false], [1, 256, 33, 32, true], [17, 96, 20, 32, true], [40, 520, 70, 8, false], [5, 100, 9, 128, false]] as const) {
      it.runIf(runs(M < GEMV_MAX_ROWS))(`q4 matmul M=${M} K=${K} N=${N} group ${g}${actOrder ? " act-order" : ""} equals refMatmul on the dequantized weights`, async (t) => {
        if (!ctx) return t.skip();
        const rand = mulberry32(M * 13 + K + g);
        const q = randomQ4(N, K, g, M + N, actOrder);
        const c = fromQuantizedLinear(q, { file: "test", field: "w" });
        if (c?.kind !== "q4") throw new Error("expected a q4 canonical weight");
        const layout = packQ4Gpu(c.args)!;
        expect(layout.exactGroups).toBe(layout.N * layout.G);
        expect(layout.perm !== null).toBe(actOrder);
        const x = randomArray(M * K, 1, rand);
        const w = dequantize(q); // [N, K], original column order (the CPU path's weights)
        expect(gatherColumns(w, N, K, layout.perm ?? Uint32Array.from({ length: K }, (_, i) => i))).toEqual(dequantizeGpuLayout(layout));
        const y = await matmul(layout, x, M);
        if (onSgmat(M)) {
          const wg = round16(dequantizeGpuLayout(layout)), xg = round16(layout.perm ? gatherColumns(x, M, K, layout.perm) : x);
          expect(maxRelErr(y, refMatmul(xg, wg, M, K, N), dotScale(xg, wg, M, K, N))).toBeLessThan(SGMAT_ACC);
          return;
        }
        expect(maxRelErr(y, refMatmul(x, w, M, K, N), dotScale(x, w, M, K, N))).toBeLessThan(F32_ACC);
      });
    }

    it.runIf(runs(false))("matmul accumulates into y at an offset (the residual add)", async (t) => {
      if (!ctx) return t.skip();
      const rand = mulberry32(5);
      const [M, K, N] = [17, 72, 19];
      const w = randomArray(N * K, 0.05, rand), x = randomArray(M * K, 1, rand), y0 = randomArray(M * N + 3, 1, rand);
      const layout = packF16Gpu(w, N, K);
      const y = await matmul(layout, x, M, undefined, y0.slice());
      const ref = refMatmul(onSgmat(M) ? round16(x) : x, dequantizeGpuLayout(layout), M, K, N);
      for (let i = 0; i < M * N; i++) ref[i] = y0[3 + i]! + ref[i]!;
      expect(maxRelErr(y, ref, 1)).toBeLessThan(1e-5);
    });

    async function one(kernel: "rmsnorm" | "rope" | "attention" | "attention_f16" | "kv_store" | "embed" | "silu_mul", buffers: [number, GPUBuffer][], params: (number | { f: number })[], groups: [number, number, number], out: GPUBuffer, bytes: number): Promise<Float32Array> {
      const arena = new UniformArena(k.device, 1);
      const op = simpleOp(k, arena, await k.pipeline(kernel), kernel, buffers);
      setPlan(arena, op, params, groups);
      arena.flush(k.device);
      const enc = k.device.createCommandEncoder();
      k.encode(enc, [op]);
      return k.read(out, bytes, enc);
    }

    it("rmsnorm (rows 17, H 200, the last row only) equals nn rmsNorm", async (t) => {
      if (!ctx) return t.skip();
      const rand = mulberry32(3);
      const [T, H] = [17, 200];
      const x = randomArray(T * H, 2, rand), w = randomArray(H, 1, rand, 1);
      const yb = k.buffer(T * H * 4, "y");
      const y = await one("rmsnorm", [[1, k.buffer(x, "x")], [2, k.buffer(w, "w")], [3, yb]], [T, H, 0, { f: 1e-5 }], [T, 1, 1], yb, T * H * 4);
      expect(maxRelErr(y, rmsNorm(x, w, T, H, 1e-5), 1)).toBeLessThan(1e-5);
      const last = await one("rmsnorm", [[1, k.buffer(x, "x")], [2, k.buffer(w, "w")], [3, yb]], [1, H, T - 1, { f: 1e-5 }], [1, 1, 1], yb, H * 4);
      expect(maxRelErr(last, rmsNorm(x.subarray((T - 1) * H), w, 1, H, 1e-5), 1)).toBeLessThan(1e-5);
    });

    it.runIf(runs(false))("rope (T 17, 3 heads, headDim 24, pos0 7, rows from 2) equals RopeTable.apply", async (t) => {
      if (!ctx) return t.skip();
      const rand = mulberry32(4);
      const [T, nH, d, pos0, row0] = [17, 3, 24, 7, 2];
      const rope = new RopeTable({ headDim: d, ropeTheta: 10000, ropeScaling: null });
      rope.ensure(64);
      const x = randomArray((row0 + T) * nH * d, 1, rand);
      const vb = k.buffer(x, "v");
      const y = await one("rope", [[1, vb], [2, k.buffer(rope.cos, "cos")], [3, k.buffer(rope.sin, "sin")]],
        [T, nH, d / 2, pos0, row0, 0, 0, 0], grid2d(Math.ceil((T * nH * d) / 2 / 64)), vb, x.byteLength);
      const ref = x.slice();
      rope.apply(ref.subarray(row0 * nH * d), T, nH, pos0);
      expect(maxRelErr(y, ref, 1)).toBeLessThan(1e-5);
    });

    const native = selectBackend({ backend: "auto", threads: 1 });
    const attnShapes = [[17, 5, 4, 2, 24], [1, 100, 4, 1, 32], [3, 130, 2, 2, 80], [17, 9, 3, 1, 24], [1, 66, 5, 5, 256], [1, 0, 3, 3, 40]] as const;
    for (const kv of ["f32", "f16"] as const) for (const [T, pos0, nH, nKv, d] of attnShapes) {
      it(`attention on an ${kv} cache T=${T} pos0=${pos0} heads ${nH}/${nKv} headDim ${d} equals refAttention and ${native.name}'s attention`, async (t) => {
        if (!ctx) return t.skip();
        const rand = mulberry32(T + pos0 + d);
        const S = pos0 + T + 3; // cache capacity, rows past pos0+T hold garbage that must be ignored
        const q = randomArray(T * nH * d, 1, rand);
        const rows = (): Float32Array | Uint16Array => { const r = randomArray(S * nKv * d, 1, rand); return kv === "f16" ? Uint16Array.from(r, f32ToF16) : r; };
        const kc = rows(), vc = rows();
        const ob = k.buffer(q.byteLength, "o");
        const y = await one(kv === "f16" ? "attention_f16" : "attention", [[1, k.buffer(q, "q")], [2, k.buffer(kc, "k")], [3, k.buffer(vc, "v")], [4, ob]],
          [T, pos0, nH, nKv, d, { f: 1 / Math.sqrt(d) }, 0, 0], [nH, T, 1], ob, q.byteLength);
        const shape = { T, pos0, nHead: nH, nKvHead: nKv, headDim: d };
        const ref = new Float32Array(q.length), cpu = new Float32Array(q.length);
        refAttention(q, kc, vc, shape, ref);
        native.attention(q, kc, vc, shape, cpu);
        expect(maxRelErr(y, ref, 1)).toBeLessThan(ATTN_F32);
        expect(maxRelErr(y, cpu, 1)).toBeLessThan(ATTN_F32);
      });
    }

    it.runIf(runs(false))("kv_store rounds new k/v rows to the f16 bits of f32ToF16 (ties to even, subnormals, overflow, inf, NaN) at row pos0", async (t) => {
      if (!ctx) return t.skip();
      const rand = mulberry32(8);
      const f = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;
      const special = [
        1 + 2 ** -11, 1 + 3 * 2 ** -11, -(1 + 2 ** -11), 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -26, 1.5 * 2 ** -24, 2 ** -14 * (1 - 2 ** -11),
        6.1e-5, -3e-7, 65504, 65519.99, 65520, 1e6, Infinity, -Infinity, NaN, -0, 0, f(0x00000001), f(0x33000001), f(0x387fe000),
      ];
      const [T, kvDim, pos0] = [5, 18, 3];
      const n = T * kvDim;
      const kn = Float32Array.from({ length: n }, (_, i) => special[i] ?? (rand() - 0.5) * 2 ** Math.floor(rand() * 40 - 28));
      const vn = Float32Array.from({ length: n }, (_, i) => special[n - 1 - i] ?? (rand() - 0.5) * 2 ** Math.floor(rand() * 40 - 28));
      const S = pos0 + T + 2;
      const kb = k.buffer(new Uint16Array(S * kvDim).fill(0xabcd), "k cache"), vb = k.buffer(new Uint16Array(S * kvDim).fill(0xabcd), "v cache");
      const params = [n / 2, (pos0 * kvDim) / 2, 0, 0];
      await one("kv_store", [[1, k.buffer(kn, "kn")], [2, k.buffer(vn, "vn")], [3, kb], [4, vb]], params, grid2d(Math.ceil(n / 2 / 64)), kb, 4);
      for (const [buf, x] of [[kb, kn], [vb, vn]] as const) {
        const got = new Uint16Array((await k.read(buf, S * kvDim * 2)).buffer);
        const want = new Uint16Array(S * kvDim).fill(0xabcd);
        for (let i = 0; i < n; i++) want[pos0 * kvDim + i] = f32ToF16(x[i]!);
        expect(Array.from(got)).toEqual(Array.from(want));
      }
    });

    it.runIf(runs(false))("embedding gather and SiLU·up equal the nn/ loops", async (t) => {
      if (!ctx) return t.skip();
      const rand = mulberry32(6);
      const [V, H, T, I] = [11, 6, 5, 33];
      const table = Uint16Array.from(randomArray(V * H, 1, rand), f32ToF16);
      const tokens = Uint32Array.from([3, 0, 10, 3, 7]);
      const xb = k.buffer(T * H * 4, "x");
      const x = await one("embed", [[1, k.buffer(tokens, "tok")], [2, k.buffer(table, "emb")], [3, xb]], [T * H, H, 0, 0], [1, 1, 1], xb, T * H * 4);
      expect(Array.from(x)).toEqual(Array.from(tokens).flatMap((id) => Array.from(table.subarray(id * H, id * H + H), f16ToF32)));
      const g = randomArray(T * I, 2, rand), u = randomArray(T * I, 1, rand);
      const gb = k.buffer(g, "g");
      const y = await one("silu_mul", [[4, gb], [5, k.buffer(u, "u")]], [T * I, I, 0, 0], grid2d(Math.ceil((T * I) / 64)), gb, g.byteLength);
      const ref = g.map((a, i) => (a / (1 + Math.exp(-a))) * u[i]!);
      expect(maxRelErr(y, ref, 1)).toBeLessThan(1e-5);
    });
  });
}

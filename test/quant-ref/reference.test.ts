/**
 * Our GPTQ (block-start group rule) and AWQ clip search pinned to numbers made
 * by the reference algorithms (fixtures/gen_reference.py re-implements gptq.py and
 * llm-awq in numpy; fixtures/README.md). The TS reference must reproduce them exactly
 * (codes, chosen α, clip thresholds) and to f64 rounding (dequantized weights, losses);
 * the native f32 GPTQ path within the flip budget of test/quant/gptq-native.test.ts; the
 * native AWQ kernels (on the ref backend's GEMMs for the scale search) exactly.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createNativeBackend } from "../../src/backend/native.ts";
import { refBackend } from "../../src/backend/ref.ts";
import type { Backend } from "../../src/backend/backend.ts";
import { awqClipSearch, awqClipSearchLayer } from "../../src/methods/awq-clip.ts";
import { AWQ_N_GRID, awqSearchLayerScales } from "../../src/methods/awq.ts";
import { gptqQuantizeLinear, type GptqOptions } from "../../src/methods/gptq.ts";
import { gptqQuantizeLinearFast } from "../../src/methods/gptq-fast.ts";

interface GptqCase {
  name: string; N: number; K: number; bits: number; groupSize: number; sym: boolean; actOrder: boolean;
  damp: number; blockSize: number; weight: string; hessian: string; codes: string; dequantized: string; loss: number;
}
interface AwqCase {
  name: string; N: number; K: number; T: number; bits: number; groupSize: number; duoScaling: boolean;
  weight: string; x: string; alphaIndex: number; losses: number[]; scales: string; clipMaxVal: string;
}
const fixture = JSON.parse(readFileSync(new URL("./fixtures/reference.json", import.meta.url), "utf8")) as { gptq: GptqCase[]; awq: AwqCase[] };

const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "base64"));
const f32 = (s: string): Float32Array => new Float32Array(bytes(s).slice().buffer);
const f64 = (s: string): Float64Array => new Float64Array(bytes(s).slice().buffer);

function diffCount(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) d++;
  return d;
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); m = Math.max(m, Math.abs(b[i]!)); }
  return m > 0 ? d / m : d;
}

const options = (c: GptqCase): GptqOptions => ({
  weight: f32(c.weight), rows: c.N, cols: c.K, hessian: f64(c.hessian), bits: c.bits, groupSize: c.groupSize, sym: c.sym,
  actOrder: c.actOrder, staticGroups: false, damp: c.damp, blockSize: c.blockSize, groupGrid: "block-start",
});

describe.each(fixture.gptq.map((c) => [c.name, c] as const))("GPTQ vs gptq.py (%s)", (_name, c) => {
  it("the TS reference with --group-grid block-start gives gptq.py's codes, weights and loss", () => {
    const r = gptqQuantizeLinear(options(c));
    expect(diffCount(r.codes, bytes(c.codes))).toBe(0);
    expect(maxRelDiff(r.dequantized, f64(c.dequantized))).toBeLessThan(1e-6); // f32 storage of our output
    expect(Math.abs(r.loss - c.loss) / c.loss).toBeLessThan(1e-9);
  });

  it("the native sweep with block-start grids stays within f32 noise of it", async () => {
    const nb = createNativeBackend({ threads: 1 });
    const r = await gptqQuantizeLinearFast({ ...options(c), backend: nb });
    expect(diffCount(r.codes, bytes(c.codes)) / r.codes.length).toBeLessThan(0.01);
    expect(Math.abs(r.loss - c.loss) / c.loss).toBeLessThan(1e-2);
  });
});

it("the fixture tells the two group rules apart (groups starting inside a lazy block)", () => {
  const c = fixture.gptq[0]!;
  expect(c.groupSize).toBeLessThan(c.blockSize);
  const cur = gptqQuantizeLinear({ ...options(c), groupGrid: "current" });
  expect(diffCount(cur.codes, bytes(c.codes))).toBeGreaterThan(0);
});

describe.each(fixture.awq.map((c) => [c.name, c] as const))("AWQ scale and clip search vs llm-awq (%s)", (_name, c) => {
  const W = f32(c.weight), x = f32(c.x);
  const scaleSearch = (backend: Backend) =>
    awqSearchLayerScales({ backend, weight: W, N: c.N, K: c.K, inputs: [x], T: c.T, bits: c.bits, groupSize: c.groupSize, duoScaling: c.duoScaling });
  const expectReference = (r: Awaited<ReturnType<typeof scaleSearch>>): void => {
    expect(r.alpha).toBe(c.alphaIndex / AWQ_N_GRID);
    expect(r.losses.length).toBe(AWQ_N_GRID);
    r.losses.forEach((l, i) => expect(Math.abs(l! - c.losses[i]!) / c.losses[i]!).toBeLessThan(1e-9));
    expect(diffCount(r.scales, f32(c.scales))).toBe(0);
  };

  it("scale search: llm-awq's α, its 20 losses and its scale vector", async () => {
    expectReference(await scaleSearch(refBackend));
    // Discriminating: α is interior and the losses are not flat.
    expect(c.alphaIndex).toBeGreaterThan(0);
    expect(Math.max(...c.losses) / Math.min(...c.losses)).toBeGreaterThan(1.05);
  });

  it("scale search with the native fake-quantization kernel: the same α, losses and scales", async () => {
    const nb = createNativeBackend({ threads: 1 });
    // The ref backend's GEMM with the native backend's AWQ kernel: only the fake quantization changes path.
    expectReference(await scaleSearch({ ...refBackend, awqFakeQuantize: nb.awqFakeQuantize.bind(nb) }));
  });

  it("clip search with the native kernel: the same threshold for every (row, group)", async () => {
    const nb = createNativeBackend({ threads: 1 });
    const mv = await awqClipSearch({ backend: nb, weight: W, N: c.N, K: c.K, x, T: c.T, bits: c.bits, groupSize: c.groupSize });
    expect(diffCount(mv, f32(c.clipMaxVal))).toBe(0);
  });
  it("clip search: the same threshold for every (row, group)", () => {
    const mv = awqClipSearchLayer({ backend: refBackend, weight: W, N: c.N, K: c.K, x, T: c.T, bits: c.bits, groupSize: c.groupSize });
    const want = f32(c.clipMaxVal);
    expect(diffCount(mv, want)).toBe(0);
    // Discriminating: some groups are clipped, some are not.
    const G = c.K / c.groupSize;
    let clipped = 0;
    for (let n = 0; n < c.N; n++) for (let gi = 0; gi < G; gi++) {
      let amax = 0;
      for (let j = 0; j < c.groupSize; j++) amax = Math.max(amax, Math.abs(W[n * c.K + gi * c.groupSize + j]!));
      if (want[n * G + gi]! < amax) clipped++;
    }
    expect(clipped).toBeGreaterThan(0);
    expect(clipped).toBeLessThan(c.N * G);
  });
});

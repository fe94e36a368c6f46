/**
 * Every source layout, converted to canonical inputs and packed, multiplies like
 * x · dequantize(W)ᵀ of the source format, where dequantize is the format's own
 * unpacker (pack/hf-gptq.ts, pack/awq-gemm.ts + tensor/quantized.ts dequantize,
 * pack/gguf-blocks.ts dequantizeRow): an independent path from the converters.
 * Run on the reference packer (the contract's specification) and on every other
 * backend that implements the contract (native, once its packers exist).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { PackedSum, withPackedActivations, type Backend } from "../../src/backend/backend.ts";
import { refMatmul, refPackedBackend } from "../../src/backend/ref.ts";
import { selectBackend } from "../../src/backend/select.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { awqSource } from "../../src/load/awq-source.ts";
import { canPack, packWeight } from "../../src/load/canonical.ts";
import { checkpointCanonical } from "../../src/load/checkpoint-canonical.ts";
import { ggufToCanonical } from "../../src/load/gguf-canonical.ts";
import { qkUnpermuteRows } from "../../src/load/gguf-model.ts";
import { gptqSource, type GptqConfig } from "../../src/load/gptq-source.ts";
import { permuteCanonicalRows } from "../../src/load/canonical.ts";
import { unpermuteQK } from "../../src/arch/gguf-tensors.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { packAwqGemm } from "../../src/pack/awq-gemm.ts";
import { dequantizeBlocks, GGML_BLOCK_TYPES, quantizeMatrix, type GgmlBlockTypeName } from "../../src/pack/gguf-blocks.ts";
import { packGptq } from "../../src/pack/hf-gptq.ts";
import { fromF32 } from "../../src/tensor/dtype.ts";
import { randomArray } from "../helpers/random-weights.ts";
import { bytes, randomQuantized, writeFolder as writeFolderIn, type FolderTensors } from "../helpers/quant-sources.ts";

/** Reference packer vs the f32 reference matmul: both f64 sums of the same f32 products, except asymmetric grids (s·q + m vs s·(q − z): ~1 ulp per weight). */
const REF_TOL = 1e-6;
/** A native packer with f32 activations (the exact path; f32 accumulation order differs). */
const NATIVE_F32_TOL = 1e-5;
/** Native with int8 activations per block (llama.cpp's precision): ~1/127 of a block's max per activation, averaged over K. */
const NATIVE_INT8_TOL = 2e-2;

const tmp = mkdtempSync(join(tmpdir(), "qllm-layouts-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Target { name: string; backend: Backend; tol: number }
const targets: Target[] = [{ name: "ref", backend: refPackedBackend, tol: REF_TOL }];
const native = selectBackend({ backend: "auto", threads: 1 });
if (native.name === "native" && canPack(native)) {
  targets.push({ name: "native f32-act", backend: withPackedActivations(native, "f32"), tol: NATIVE_F32_TOL });
  targets.push({ name: "native int8-act", backend: withPackedActivations(native, "int8"), tol: NATIVE_INT8_TOL });
}

/** max |y − y_ref| / max |y_ref| over M rows. */
function relErr(y: Float32Array, want: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) { num = Math.max(num, Math.abs(y[i]! - want[i]!)); den = Math.max(den, Math.abs(want[i]!)); }
  return num / den;
}

/** For every target and M in 1, 3, 17: packed matmul of `canonical()` vs x · Wᵀ with the source's f32 W [N, K]. */
function expectMatmulEqual(label: string, W: Float32Array, N: number, K: number, canonical: () => ReturnType<typeof ggufToCanonical>): void {
  const rand = mulberry32(7);
  for (const t of targets) {
    const warnings: string[] = [];
    const w = packWeight(t.backend, canonical(), (m) => warnings.push(m));
    expect(warnings, label).toEqual([]);
    // every source packs (never an f32 copy): int8 groups of 16 (Q6_K) on a backend that packs groups of 32 become two exact planes
    expect(w instanceof Float32Array ? "f32" : `packed [${w.N}, ${w.K}]`, label).toBe(`packed [${N}, ${K}]`);
    if (label === "Q6_K" && t.name !== "ref") expect(w instanceof PackedSum ? w.parts.length : 1, label).toBe(2);
    for (const M of [1, 3, 17]) {
      const x = randomArray(M * K, 1, rand);
      const bias = randomArray(N, 0.5, rand);
      const want = refMatmul(x, W, M, K, N, bias);
      const y = t.backend.matmul(x, w, M, K, N, bias);
      expect(relErr(y, want), `${label} on ${t.name}, M=${M}`).toBeLessThan(t.tol);
    }
  }
}

const writeFolder = (name: string, tensors: FolderTensors): Promise<string> => writeFolderIn(tmp, name, tensors);

describe("HF-GPTQ → packed", () => {
  const cases: [bits: number, g: number, sym: boolean, actOrder: boolean, format: "gptq" | "gptq_v2"][] = [
    [4, 32, true, false, "gptq"], [4, 64, false, false, "gptq_v2"], [4, 32, true, true, "gptq"], [4, 32, false, true, "gptq_v2"],
    [8, 32, true, false, "gptq"], [8, 32, true, true, "gptq"], [8, 32, false, false, "gptq_v2"], [8, 32, false, true, "gptq"], [3, 32, false, false, "gptq_v2"], [3, 32, true, true, "gptq"], [2, 64, false, true, "gptq_v2"],
  ];
  for (const [bits, g, sym, actOrder, format] of cases) {
    it(`${bits}-bit g${g} ${sym ? "sym" : "asym"}${actOrder ? " act-order" : ""} (${format})`, async () => {
      const N = 96, K = 160; // N not a multiple of 16·2, K not a multiple of 64 (partial last group at g64)
      const q = randomQuantized(N, K, bits, g, sym, actOrder, bits * 100 + g);
      const t = packGptq(q, format);
      const base = "model.layers.0.mlp.up_proj";
      const dir = await writeFolder(`gptq-${bits}-${g}-${sym}-${actOrder}-${format}`, {
        [`${base}.qweight`]: { dtype: "I32", shape: [(K * bits) / 32, N], data: bytes(t.qweight) },
        [`${base}.qzeros`]: { dtype: "I32", shape: [Math.ceil(K / g), (N * bits) / 32], data: bytes(t.qzeros) },
        [`${base}.scales`]: { dtype: "F16", shape: [Math.ceil(K / g), N], data: bytes(t.scales) },
        [`${base}.g_idx`]: { dtype: "I32", shape: [K], data: bytes(t.gIdx) },
      });
      const ckpt = await openCheckpoint(dir);
      try {
        const cfg: GptqConfig = { bits, groupSize: g, sym, descAct: actOrder, format };
        const src = gptqSource(ckpt, dir, cfg);
        const W = src.readF32Sync(`${base}.weight`); // the existing unpacker's dequantization
        const c = src.readCanonical!(`${base}.weight`);
        // 8-bit asymmetric: q − z does not fit int8 → two int8 planes, s·(q − 128) + s·(128 − z)·1
        expect(c.kind).toBe(bits === 4 ? "q4" : bits === 8 && !sym ? "planes" : "q8");
        const first = c.kind === "planes" ? c.parts[0]! : c;
        if (first.kind === "q4" || first.kind === "q8") expect(first.args.perm !== null).toBe(actOrder);
        if (c.kind === "q4") expect(c.args.mins === null).toBe(sym);
        expectMatmulEqual(`gptq ${bits}-bit`, W, N, K, () => src.readCanonical!(`${base}.weight`));
      } finally {
        await ckpt.close();
      }
    });
  }
});

describe("AutoAWQ GEMM → packed", () => {
  it("4-bit g32 with zero points", async () => {
    const N = 48, K = 96;
    const q = randomQuantized(N, K, 4, 32, false, false, 5);
    const t = packAwqGemm(q);
    const base = "model.layers.0.self_attn.o_proj";
    const dir = await writeFolder("awq", {
      [`${base}.qweight`]: { dtype: "I32", shape: [K, N / 8], data: bytes(t.qweight) },
      [`${base}.qzeros`]: { dtype: "I32", shape: [K / 32, N / 8], data: bytes(t.qzeros) },
      [`${base}.scales`]: { dtype: "F16", shape: [K / 32, N], data: bytes(t.scales) },
    });
    const ckpt = await openCheckpoint(dir);
    try {
      const src = awqSource(ckpt, dir, { bits: 4, groupSize: 32, version: "gemm" });
      const W = src.readF32Sync(`${base}.weight`);
      expectMatmulEqual("awq", W, N, K, () => src.readCanonical!(`${base}.weight`));
    } finally {
      await ckpt.close();
    }
  });
});

describe("GGUF blocks → packed", () => {
  const types: GgmlBlockTypeName[] = ["Q4_0", "Q4_1", "Q4_K", "Q8_0", "Q6_K"];
  for (const name of types) {
    it(`${name}`, () => {
      const type = GGML_BLOCK_TYPES[name];
      const N = 40, K = 512;
      const x = randomArray(N * K, 0.05, mulberry32(11), 0.01);
      const b = quantizeMatrix(type, x, K);
      const W = dequantizeBlocks(type, b, N * K); // dequantize_row_<t>
      expectMatmulEqual(name, W, N, K, () => ggufToCanonical(name, b, N, K, { file: "test", field: name }));
    });
  }

  it("llama q/k rows are un-permuted on canonical inputs as on f32", () => {
    const heads = 4, N = 64, K = 64;
    const x = randomArray(N * K, 0.05, mulberry32(3));
    const b = quantizeMatrix(GGML_BLOCK_TYPES.Q8_0, x, K);
    const W = unpermuteQK(dequantizeBlocks(GGML_BLOCK_TYPES.Q8_0, b, N * K), heads, K);
    expectMatmulEqual("q8_0 permuted", W, N, K, () => permuteCanonicalRows(ggufToCanonical("Q8_0", b, N, K, { file: "t", field: "q" }), qkUnpermuteRows(N, heads)));
  });
});

describe("16-bit checkpoints → packed (stored bits, no f32 copy)", () => {
  for (const dtype of ["F16", "BF16"] as const) {
    it(dtype, async () => {
      const N = 33, K = 72;
      const x = randomArray(N * K, 0.1, mulberry32(9));
      const name = "model.layers.0.mlp.down_proj.weight";
      const dir = await writeFolder(`plain-${dtype}`, { [name]: { dtype, shape: [N, K], data: fromF32(dtype, x) } });
      const ckpt = await openCheckpoint(dir);
      try {
        const W = ckpt.readF32Sync(name);
        const plain = checkpointCanonical(ckpt, dir);
        const c = plain.readCanonical(name);
        expect(c.kind).toBe("16");
        expectMatmulEqual(dtype, W, N, K, () => plain.readCanonical(name));
      } finally {
        await ckpt.close();
      }
    });
  }
});


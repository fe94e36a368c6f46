/**
 * `quantize-llm gptq --device gpu` (Hessians and sweeps on the GPU, src/methods/gptq-webgpu.ts)
 * against `--device cpu` on the bundled model: the outputs' perplexities within PPL_REL_TOL,
 * block 0's first Hessian group (k, v, q: the same inputs on both devices, the Hessians equal
 * but for f32 summation rounding) with ≥ BLOCK0_CODE_AGREEMENT of its codes identical.
 * Later blocks see the earlier blocks' (slightly different) quantized outputs and GPTQ's
 * error feedback turns a flipped code into a different row, so their codes are compared
 * through the perplexity only (measured on lavapipe, 8 × 64 calibration tokens: 87.6% of all
 * codes identical, block 0 ≥ 99.7%, perplexity 108.2262 vs 108.2229: 3e-5 relative).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GpuContext } from "../../src/backend/webgpu-device.ts";
import { openSafetensors } from "../../src/io/safetensors.ts";
import { BUNDLED_EVAL_TEXT } from "../../src/load/paths.ts";
import { selectBackend } from "../../src/backend/select.ts";
import { GpuGptq } from "../../src/methods/gptq-webgpu.ts";
import { quantizeModel } from "../../src/quantize/pipeline.ts";
import type { QuantSettings } from "../../src/quantize/settings.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { InterruptedError } from "../../src/util/errors.ts";
import { runMain } from "../cli/run-main.ts";
import { tryOpenGpu } from "./gpu.ts";

const PPL_REL_TOL = 1e-3;
const BLOCK0_CODE_AGREEMENT = 0.995;
const CALIB = ["--calib-samples", "4", "--calib-seqlen", "48", "--no-eval"];

/** Fraction of identical 4-bit codes in one qweight tensor of two HF-GPTQ folders. */
async function codeAgreement(a: string, b: string, tensor: string): Promise<number> {
  const [fa, fb] = [await openSafetensors(join(a, "model.safetensors")), await openSafetensors(join(b, "model.safetensors"))];
  try {
    const x = fa.readRawSync(tensor), y = fb.readRawSync(tensor);
    let same = 0;
    for (let i = 0; i < x.length; i++) same += Number((x[i]! & 15) === (y[i]! & 15)) + Number(x[i]! >> 4 === y[i]! >> 4);
    return same / (2 * x.length);
  } finally { await fa.close(); await fb.close(); }
}

const ppl = async (dir: string): Promise<number> => {
  const r = await runMain("eval", dir, "--text", BUNDLED_EVAL_TEXT, "--ctx", "128", "--max-tokens", "2048", "--json");
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout.trim().split("\n").pop()!) as { ppl: number }).ppl;
};

describe("gptq --device", () => {
  let ctx: GpuContext | null = null;
  let tmp: string;
  beforeAll(async () => { ctx = await tryOpenGpu(); tmp = mkdtempSync(join(tmpdir(), "qllm-gptq-gpu-")); });
  afterAll(() => { ctx?.device.destroy(); rmSync(tmp, { recursive: true, force: true }); });

  it("gpu: the CPU's output within the stated bounds", async (t) => {
    if (ctx === null) return t.skip();
    const cpu = await runMain("gptq", ...CALIB, "-o", join(tmp, "cpu"));
    expect(cpu.status, cpu.stderr).toBe(0);
    const gpu = await runMain("gptq", ...CALIB, "--device", "gpu", "-o", join(tmp, "gpu"));
    expect(gpu.status, gpu.stderr).toBe(0);
    expect(gpu.stderr).toMatch(/GPTQ Hessians and sweeps on the GPU: /);
    for (const l of ["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"]) {
      const a = await codeAgreement(join(tmp, "cpu"), join(tmp, "gpu"), `model.layers.0.${l}.qweight`);
      expect(a, `block 0 ${l}`).toBeGreaterThanOrEqual(BLOCK0_CODE_AGREEMENT);
    }
    const [pc, pg] = [await ppl(join(tmp, "cpu")), await ppl(join(tmp, "gpu"))];
    process.stderr.write(`gptq --device gpu vs cpu: perplexity ${pg.toFixed(4)} vs ${pc.toFixed(4)} (${((pg / pc - 1) * 100).toFixed(4)}%)\n`);
    expect(Math.abs(pg - pc) / pc).toBeLessThan(PPL_REL_TOL);
  }, 180_000);

  it("auto never takes a software adapter; gpu is refused for rtn with a typed error", async (t) => {
    const rtn = await runMain("rtn", "--no-eval", "--device", "gpu", "-o", join(tmp, "rtn"));
    expect(rtn.status).toBe(2);
    expect(rtn.stderr).toMatch(/--device gpu is for GPTQ only/);
    if (ctx === null || !ctx.info.software) return t.skip();
    const auto = await runMain("gptq", ...CALIB, "--device", "auto", "-o", join(tmp, "auto"));
    expect(auto.status, auto.stderr).toBe(0);
    expect(auto.stderr).toContain("--device auto runs on the CPU: only a software WebGPU adapter is available");
    expect(auto.stderr).not.toMatch(/on the GPU/);
  }, 120_000);

  it("resume refuses to mix devices: an interrupted --device gpu run resumed on the CPU names the field", async (t) => {
    if (ctx === null) return t.skip();
    const out = join(tmp, "mixed");
    const settings: QuantSettings = {
      method: "gptq", bits: 4, groupSize: 128, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
      trueSequential: true, format: "gptq", calibSamples: 4, calibSeqlen: 48, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT,
    };
    const gpu = await GpuGptq.open(ctx);
    const ac = new AbortController();
    try {
      await expect(quantizeModel({
        modelDir: BUNDLED_MODEL_DIR, outDir: out, settings, backend: selectBackend({ backend: "native" }), gpu, signal: ac.signal,
        onEvent: (e) => { if (e.type === "block-done") ac.abort(); },
      })).rejects.toBeInstanceOf(InterruptedError);
    } finally { gpu.destroy(); }
    const r = await runMain("gptq", ...CALIB, "--group-size", "128", "--resume", "-o", out);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/different settings[\s\S]*field: +device\n[\s\S]*found: +device: "gpu" → "cpu" \(interrupted run → this command\)/);
  }, 120_000);
});

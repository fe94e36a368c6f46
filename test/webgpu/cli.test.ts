/**
 * `eval --device`: gpu scores the bundled model like the CPU (within 1e-3 relative, with the
 * default f32 KV cache and with --kv f16 on both sides), auto
 * never takes a software adapter (it says so and runs on the CPU), cpu is the default.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GpuContext } from "../../src/backend/webgpu-device.ts";
import { runMain } from "../cli/run-main.ts";
import { tryOpenGpu } from "./gpu.ts";

const ARGS = ["--ctx", "64", "--max-tokens", "128", "--json"];
const json = (stdout: string) => JSON.parse(stdout.trim().split("\n").pop()!) as { ppl: number; device: string; kernels: string };

describe("eval --device", () => {
  let ctx: GpuContext | null = null;
  beforeAll(async () => { ctx = await tryOpenGpu(); });
  afterAll(() => ctx?.device.destroy());

  it("gpu equals cpu within 1e-3; auto skips a software adapter", async (t) => {
    if (ctx === null) return t.skip();
    const cpu = await runMain("eval", ...ARGS, "--weights", "f32");
    const gpu = await runMain("eval", ...ARGS, "--device", "gpu");
    expect(cpu.status).toBe(0);
    expect(gpu.status).toBe(0);
    const c = json(cpu.stdout), g = json(gpu.stdout);
    expect(c.device).toBe("cpu");
    expect(g.device).toBe("gpu");
    expect(g.kernels).toMatch(/^webgpu on /);
    expect(Math.abs(g.ppl - c.ppl) / c.ppl).toBeLessThan(1e-3);
    const [c16, g16] = [await runMain("eval", ...ARGS, "--weights", "f32", "--kv", "f16"), await runMain("eval", ...ARGS, "--device", "gpu", "--kv", "f16")];
    expect(g16.status, g16.stderr).toBe(0);
    expect(json(g16.stdout).kernels).toMatch(/^webgpu on /);
    expect(g16.stdout).toMatch(/; KV cache f16\n/);
    expect(json(g16.stdout).ppl).not.toBe(g.ppl); // the f16 cache did run
    expect(Math.abs(json(g16.stdout).ppl - json(c16.stdout).ppl) / json(c16.stdout).ppl).toBeLessThan(1e-3);
    const auto = await runMain("eval", ...ARGS, "--device", "auto");
    expect(auto.status).toBe(0);
    if (ctx.info.software) {
      expect(json(auto.stdout).device).toBe("cpu");
      expect(auto.stderr).toContain("--device auto runs on the CPU: only a software WebGPU adapter is available");
    } else {
      expect(json(auto.stdout).device).toBe("gpu");
    }
  }, 120_000);

  it("refuses an unknown device, naming the choices", async () => {
    const r = await runMain("eval", ...ARGS, "--device", "tpu");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--device/);
    expect(r.stderr).toMatch(/cpu/);
  });
});

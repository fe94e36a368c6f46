/**
 * The subgroup-matrix GEMM (kernels/gemm-sgmat.wgsl) has no adapter to run on here (lavapipe
 * has no cooperative matrix), so its WGSL is at least put through Tint's parser and validator
 * on Dawn's null backend, which offers chromium-experimental-subgroup-matrix (without shapes):
 * for the shapes real devices offer (NVIDIA 16×16×16, Apple 8×8×8, Intel 8×16×16), both
 * weight formats, the shader module compiles without errors. Running it and comparing it with
 * the reference is eval/gpu-check.sh's job on a GPU that has the feature (and
 * test/webgpu/kernels.test.ts's there).
 */
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DAWN_TOGGLES, type GpuContext, type GpuInfo } from "../../src/backend/webgpu-device.ts";
import { GpuKernels } from "../../src/backend/webgpu-kernels.ts";

interface Dawn { create(flags: string[]): GPU }
let dawn: Dawn | null = null;
try { dawn = createRequire(import.meta.url)("webgpu") as Dawn; } catch { /* the optional dependency is missing: skipped */ }

describe.skipIf(dawn === null)("subgroup-matrix WGSL on Dawn's null backend", () => {
  let gpu: GPU, adapter: GPUAdapter | null = null, device: GPUDevice | null = null;
  beforeAll(async () => {
    gpu = dawn!.create(["backend=null", `enable-dawn-features=${DAWN_TOGGLES.join(",")}`]);
    adapter = await gpu.requestAdapter();
    if (adapter?.features.has("chromium-experimental-subgroup-matrix")) {
      device = await adapter.requestDevice({ requiredFeatures: ["shader-f16", "subgroups", "chromium-experimental-subgroup-matrix"] as GPUFeatureName[] });
    }
  });
  afterAll(() => device?.destroy());

  for (const [M, N, K, SG] of [[16, 16, 16, 32], [8, 8, 8, 32], [8, 16, 16, 16]] as const) {
    it(`sgmat-q4 and sgmat-f16 compile for ${M}×${N}×${K}, subgroup ${SG}`, async (t) => {
      if (device === null) return t.skip("Dawn's null backend offers no subgroup matrices in this build");
      const info = { subgroups: true, subgroupMatrixFeature: "chromium-experimental-subgroup-matrix", subgroupMatrixConfigs: [{ M, N, K }], subgroupMaxSize: SG } as GpuInfo;
      const k = new GpuKernels({ device, info, keepAlive: [gpu, adapter!], takeError: () => null } satisfies GpuContext);
      for (const name of ["sgmat-q4", "sgmat-f16"] as const) {
        const code = k.wgsl(name);
        expect(code).toContain("enable chromium_experimental_subgroup_matrix;");
        expect(code).toContain(`subgroup_matrix_left<f16, SK, SM>`);
        const messages = (await device.createShaderModule({ code, label: name }).getCompilationInfo()).messages;
        expect(messages.filter((m) => m.type === "error").map((m) => `${name} ${m.lineNum}:${m.linePos} ${m.message}`)).toEqual([]);
      }
    });
  }
});

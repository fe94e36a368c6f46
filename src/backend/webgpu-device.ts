/// <reference types="@webgpu/types" />
/**
 * Opening a WebGPU device through Dawn (the `webgpu` npm package's prebuilt dawn.node):
 * adapter choice (`gpu` takes any adapter, `auto` only a real GPU, never a software
 * rasterizer), feature detection (shader-f16 required; subgroups and subgroup matrices used
 * when offered) and errors that name the missing piece and the fix.
 *
 * Dawn toggles (DAWN_TOGGLES; passed as dawn.node's `enable-dawn-features`, which Dawn applies
 * to the instance, the adapter and the device alike), checked against the Dawn inside the
 * `webgpu` npm package 0.6.2 (its dawn.node carries these toggle names and messages):
 *   - `vulkan_enable_f16_on_nvidia`: Dawn's Vulkan backend hides `shader-f16` on NVIDIA GPUs
 *     unless this toggle is on (crbug.com/42251215, f16 CTS failures), even when the driver has
 *     VK_KHR_shader_float16_int8 and 16-bit storage. Without it an H100/H200 adapter would be
 *     refused here for "lacks shader-f16". No effect on other vendors.
 *   - `use_vulkan_memory_model`: on Vulkan, `chromium-experimental-subgroup-matrix` is only
 *     offered (and only accepted by requestDevice) with it ("Feature %s requires VulkanMemoryModel
 *     toggle on Vulkan"); the adapter must also have VK_KHR_cooperative_matrix for compute,
 *     vulkanMemoryModel + DeviceScope and computeFullSubgroups.
 *   - `allow_unsafe_apis`: the chromium-experimental features are guarded by it ("Feature %s is
 *     guarded by toggle allow_unsafe_apis").
 * The subgroup-matrix shapes come from adapter.info.subgroupMatrixConfigs ({componentType,
 * resultComponentType, M, N, K}); dawn.node fills it only when the adapter has the feature.
 */
import { createRequire } from "node:module";
import { DependencyError, QuantizeLlmError } from "../util/errors.ts";

/** The feature name Dawn gives subgroup matrices today (a standard name may replace it). */
export const SUBGROUP_MATRIX_FEATURES = ["chromium-experimental-subgroup-matrix", "subgroup-matrix"] as const;
export const DAWN_TOGGLES = ["allow_unsafe_apis", "use_vulkan_memory_model", "vulkan_enable_f16_on_nvidia"] as const;

export class GpuError extends QuantizeLlmError {
  constructor(summary: string, details: ConstructorParameters<typeof QuantizeLlmError>[2] = {}) {
    super("E_GPU", summary, details);
  }
}

export type DeviceChoice = "cpu" | "gpu" | "auto";
export const DEVICE_CHOICES: readonly DeviceChoice[] = ["cpu", "gpu", "auto"];

/** One f16 → f32 subgroup-matrix shape the adapter offers (M×K · K×N). */
export interface SubgroupMatrixConfig { M: number; N: number; K: number }

export interface GpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software rasterizer (lavapipe/llvmpipe, SwiftShader, WARP) or Dawn's fallback adapter. */
  software: boolean;
  features: string[];
  subgroups: boolean;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /** The enabled subgroup-matrix feature, or null. */
  subgroupMatrixFeature: string | null;
  /** f16-in, f32-accumulate configs (empty without the feature). */
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export interface GpuContext {
  device: GPUDevice;
  /**
   * The Dawn instance and adapter, held for the device's lifetime: if the instance is
   * garbage collected, dawn.node's event pump uses it after free (segfault in
   * CallbackTaskManager::Flush, seen as random crashes and hangs).
   */
  keepAlive: readonly [GPU, GPUAdapter];
  info: GpuInfo;
  /** First uncaptured device error (validation / out of memory), if any; checked after each step. */
  takeError(): Error | null;
}

interface DawnModule { create(options: string[]): GPU; globals: Record<string, unknown> }

function loadDawn(): DawnModule {
  const require = createRequire(import.meta.url);
  try {
    return require("webgpu") as DawnModule;
  } catch (e) {
    throw new DependencyError("the WebGPU runtime (Dawn) is not installed", {
      field: "--device", expected: "the `webgpu` npm package (prebuilt dawn.node)", found: (e as Error).message.split("\n")[0] ?? "",
      hint: "run `npm install` (webgpu is an optional dependency; it has builds for linux/mac/windows x64/arm64) or use --device cpu",
    });
  }
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|software|warp|microsoft basic render/i;

export function describeAdapter(adapter: GPUAdapter): GpuInfo {
  const i = adapter.info as GPUAdapterInfo & {
    subgroupMatrixConfigs?: { componentType: string; resultComponentType: string; M: number; N: number; K: number }[];
    isFallbackAdapter?: boolean;
  };
  const features = [...adapter.features].map(String).sort();
  const sgm = SUBGROUP_MATRIX_FEATURES.find((f) => features.includes(f)) ?? null;
  const text = `${i.vendor} ${i.architecture} ${i.device} ${i.description}`;
  return {
    vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
    software: i.isFallbackAdapter === true || i.architecture === "software" || SOFTWARE.test(text),
    features,
    subgroups: features.includes("subgroups"),
    subgroupMinSize: i.subgroupMinSize ?? 0,
    subgroupMaxSize: i.subgroupMaxSize ?? 0,
    subgroupMatrixFeature: sgm,
    subgroupMatrixConfigs: (i.subgroupMatrixConfigs ?? [])
      .filter((c) => c.componentType === "f16" && c.resultComponentType === "f32")
      .map((c) => ({ M: c.M, N: c.N, K: c.K })),
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  };
}

export interface OpenGpuOptions {
  /** "gpu": any adapter (software ones included, as in CI); "auto": a real GPU only. */
  choice: "gpu" | "auto";
  /** Use subgroup operations when offered (default true); false forces the workgroup-memory fallback. */
  subgroups?: boolean;
  /** Enable subgroup matrices when offered (default true; env QLLM_WEBGPU_SUBGROUP_MATRIX=0 turns them off). */
  subgroupMatrix?: boolean;
  /** Dawn backend (default: Dawn's choice; env QLLM_DAWN_BACKEND, e.g. vulkan). */
  backend?: string;
}

/**
 * Open a device. Throws GpuError naming what is missing: no adapter, only a software
 * adapter (for auto), no shader-f16.
 */
export async function openGpu(opts: OpenGpuOptions): Promise<GpuContext> {
  const dawn = loadDawn();
  const backend = opts.backend ?? process.env["QLLM_DAWN_BACKEND"];
  const flags = [`enable-dawn-features=${DAWN_TOGGLES.join(",")}`];
  if (backend !== undefined && backend !== "") flags.push(`backend=${backend}`);
  const gpu = dawn.create(flags);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (adapter === null) {
    throw new GpuError("no WebGPU adapter", {
      field: "--device", expected: "a Vulkan, Metal or D3D12 adapter", found: "none (Dawn found no driver)",
      hint: "install the GPU's Vulkan driver (on Debian: mesa-vulkan-drivers, or the NVIDIA driver with its Vulkan ICD); " +
        "for a software adapter (slow, for tests) install Mesa ≥ 24 lavapipe (bookworm-backports mesa-vulkan-drivers); or use --device cpu",
    });
  }
  const info = describeAdapter(adapter);
  if (opts.choice === "auto" && info.software) {
    throw new GpuError("only a software WebGPU adapter is available", {
      field: "--device auto", expected: "a hardware GPU adapter", found: `${info.description || info.device} (software)`,
      hint: "auto never picks a software rasterizer; pass --device gpu to run on it anyway (slow), or --device cpu",
    });
  }
  if (!info.features.includes("shader-f16")) {
    throw new GpuError("the GPU adapter lacks shader-f16", {
      field: "--device", expected: "the WebGPU feature shader-f16 (f16 weights and scales)", found: `${info.description || info.device}: ${info.features.join(", ") || "no features"}`,
      hint: "update the GPU driver (Vulkan: VK_KHR_shader_float16_int8, shaderFloat16 and storageBuffer16BitAccess; " +
        "on NVIDIA Dawn also needs the toggle vulkan_enable_f16_on_nvidia, which openGpu sets), or use --device cpu",
    });
  }
  const wanted: string[] = ["shader-f16"];
  if (info.subgroups && opts.subgroups !== false) wanted.push("subgroups");
  else info.subgroups = false;
  // Subgroup matrices only together with subgroups (the kernel is one subgroup per workgroup);
  // QLLM_WEBGPU_SUBGROUP_MATRIX=0 turns them off.
  const sgmOff = opts.subgroupMatrix === false || process.env["QLLM_WEBGPU_SUBGROUP_MATRIX"] === "0";
  if (info.subgroupMatrixFeature !== null && info.subgroups && !sgmOff && info.subgroupMatrixConfigs.length > 0) wanted.push(info.subgroupMatrixFeature);
  else { info.subgroupMatrixFeature = null; info.subgroupMatrixConfigs = []; }
  const device = await adapter.requestDevice({
    requiredFeatures: wanted as GPUFeatureName[],
    requiredLimits: {
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxStorageBuffersPerShaderStage: Math.min(adapter.limits.maxStorageBuffersPerShaderStage, 10),
    },
  });
  let firstError: Error | null = null;
  device.onuncapturederror = ((ev: Event) => {
    const e = (ev as GPUUncapturedErrorEvent).error;
    firstError ??= new GpuError("GPU error", { found: e.message, hint: "a bug in a kernel or an out-of-memory condition; rerun with --device cpu" });
  }) as never;
  return {
    device, info, keepAlive: [gpu, adapter],
    takeError: () => { const e = firstError; firstError = null; return e; },
  };
}

/** Buffer usages / map modes (the numeric values of the WebGPU spec; dawn.node's globals hold the same). */
export const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
export const MAP_READ = 0x1;

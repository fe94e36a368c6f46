/**
 * `--device cpu|gpu|auto` as eval, chat and serve share it: which device to open, and the
 * model loaded onto it (the CPU Model on the selected backend, or the WebGPU runner).
 */
import type { Backend } from "../backend/backend.ts";
import { DEVICE_CHOICES, GpuError, openGpu, type DeviceChoice, type GpuContext } from "../backend/webgpu-device.ts";
import { describeKernelPath } from "../load/kernel-path.ts";
import { loadModel, type LoadedModel } from "../load/hf-folder.ts";
import type { LoadOptions, Weights16Mode } from "../load/packed-weights.ts";
import type { KvDType } from "../nn/model.ts";
import { describeGpuPath, loadGpuModel, type GpuLoadedModel } from "../load/webgpu-load.ts";
import { DependencyError } from "../util/errors.ts";
import { choiceFlag } from "./args.ts";

export const DEVICE_USAGE = `  --device D            cpu (default) | gpu (WebGPU: any adapter, software ones included)
                        | auto (a hardware GPU adapter when there is one, else the CPU)
`;

/** --weights16 (LoadOptions.weights16): 16-bit safetensors linears in place or copied. */
export const WEIGHTS16_USAGE = `  --weights16 W         16-bit (F16/BF16) folders on the CPU: map (default; row-major views of the
                        mapped file: loads in ~0.2 s, decode ~0.8–0.9× of copy) | copy (packed into the
                        interleaved layout: ~6 s for 2.2 GB, faster decode); native/LAYOUTS.md
`;

/** --kv (generate/engine.ts DEFAULT_KV): the KV cache's element type. */
export const KV_USAGE = `  --kv T                KV cache element type: f16 (default, as llama.cpp's; CPU and GPU) | f32
`;

/** --kv: undefined when not given (the Session picks DEFAULT_KV, f16, on either device). */
export function kvFlag(v: string | undefined): KvDType | undefined {
  return v === undefined ? undefined : choiceFlag<KvDType>("kv", v, ["f32", "f16"], "f16");
}

export function weights16Flag(v: string | undefined): Weights16Mode {
  return choiceFlag("weights16", v, ["map", "copy"] as const, "map");
}

export function deviceFlag(v: string | undefined): DeviceChoice {
  return choiceFlag<DeviceChoice>("device", v, DEVICE_CHOICES, "cpu");
}

/**
 * --device: null for the CPU; a GPU device for gpu, or for auto when a hardware adapter
 * opens (auto never takes a software one, and says on stderr why it stays on the CPU).
 * gpu throws the GpuError naming the missing piece (no adapter, no shader-f16) and the fix.
 */
export async function openDevice(device: DeviceChoice): Promise<GpuContext | null> {
  if (device === "cpu") return null;
  if (device === "gpu") return openGpu({ choice: "gpu" });
  try {
    return await openGpu({ choice: "auto" });
  } catch (e) {
    if (!(e instanceof GpuError) && !(e instanceof DependencyError)) throw e;
    process.stderr.write(`note: --device auto runs on the CPU: ${e.message.split("\n")[0]}\n`);
    return null;
  }
}

export type DeviceModel =
  | (LoadedModel & { device: "cpu"; kernels: string })
  | (GpuLoadedModel & { device: "gpu"; kernels: string; ctx: GpuContext });

/** Load `path` onto the device --device picked (the GPU's "buffer too large" is a GpuError from here). */
export async function loadOnDevice(
  path: string, device: DeviceChoice, backend: Backend, opts: Pick<LoadOptions, "weights" | "weights16"> & { activations?: "int8" | "f32" } = {},
): Promise<DeviceModel> {
  const ctx = await openDevice(device);
  if (ctx === null) {
    const loaded = await loadModel(path, backend, {
      ...(opts.weights !== undefined ? { weights: opts.weights } : {}), ...(opts.weights16 !== undefined ? { weights16: opts.weights16 } : {}),
    });
    return { ...loaded, device: "cpu", kernels: describeKernelPath(loaded.model, opts.activations !== undefined ? { activations: opts.activations } : {}) };
  }
  try {
    const loaded = await loadGpuModel(path, ctx);
    return { ...loaded, device: "gpu", ctx, kernels: describeGpuPath(ctx, loaded) };
  } catch (e) {
    ctx.device.destroy();
    throw e;
  }
}

/**
 * `chat --device` and `serve --device` on the WebGPU runner: the bundled model's greedy
 * answer on the GPU equals the CPU's (chat --prompt, and serve through the official openai
 * client against the CPU engine's answer for the same messages); auto never takes a software
 * adapter; the errors name the missing piece (no adapter, buffer too large) and the fix.
 */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openGpu, type GpuContext } from "../../src/backend/webgpu-device.ts";
import { GpuKernels } from "../../src/backend/webgpu-kernels.ts";
import { chatPromptIds, endOfTurnIds } from "../../src/generate/conversation.ts";
import { generate, Session } from "../../src/generate/engine.ts";
import { GREEDY as GREEDY_SAMPLER } from "../../src/generate/sampler.ts";
import { PACKAGE_ROOT } from "../../src/load/paths.ts";
import { runMain } from "../cli/run-main.ts";
import { bundled, client, MODEL_ID } from "../serve/helpers.ts";
import { tryOpenGpu } from "./gpu.ts";

const BIN = `${PACKAGE_ROOT}bin/quantize-llm.js`;
const GREEDY = ["--temperature", "0", "--max-tokens", "16"];
const answer = (stdout: string) => stdout.split("\n").slice(0, -2).join("\n"); // text, then the --json line
const figures = (stdout: string) => JSON.parse(stdout.trim().split("\n").pop()!) as { kernel_path: string; generated_tokens: number };

describe("chat and serve --device", () => {
  let ctx: GpuContext | null = null;
  beforeAll(async () => { ctx = await tryOpenGpu(); });
  afterAll(() => ctx?.device.destroy());

  it("chat --prompt: the GPU's greedy answer equals the CPU's; auto skips a software adapter", async (t) => {
    if (ctx === null) return t.skip();
    const args = ["chat", "--system", "You are a storyteller.", "--prompt", "Who was there?", ...GREEDY, "--json"];
    const cpu = await runMain(...args, "--device", "cpu"); // both sides: the default KV cache, f16
    const gpu = await runMain(...args, "--device", "gpu");
    expect(cpu.status, cpu.stderr).toBe(0);
    expect(gpu.status, gpu.stderr).toBe(0);
    expect(figures(gpu.stdout).kernel_path).toMatch(/^webgpu on /);
    expect(figures(cpu.stdout).kernel_path).not.toMatch(/webgpu/);
    expect(figures(gpu.stdout).generated_tokens).toBe(16);
    expect(answer(gpu.stdout).length).toBeGreaterThan(0);
    expect(answer(gpu.stdout)).toBe(answer(cpu.stdout));
    expect(figures(gpu.stdout).kernel_path).toMatch(/; KV cache f16$/);
    expect(figures(cpu.stdout).kernel_path).toMatch(/; KV cache f16$/);
    const [cpu32, gpu32] = [await runMain(...args, "--device", "cpu", "--kv", "f32"), await runMain(...args, "--device", "gpu", "--kv", "f32")];
    expect(gpu32.status, gpu32.stderr).toBe(0);
    expect(figures(gpu32.stdout).kernel_path).toMatch(/; KV cache f32$/);
    expect(answer(gpu32.stdout)).toBe(answer(cpu32.stdout));
    const auto = await runMain(...args, "--device", "auto");
    expect(auto.status, auto.stderr).toBe(0);
    if (ctx.info.software) {
      expect(auto.stderr).toContain("--device auto runs on the CPU: only a software WebGPU adapter is available");
      expect(figures(auto.stdout).kernel_path).not.toMatch(/webgpu/);
    } else {
      expect(figures(auto.stdout).kernel_path).toMatch(/^webgpu on /);
    }
  }, 120_000);

  it("serve --device gpu answers through the openai client as the CPU engine does, and shuts down on SIGINT", async (t) => {
    if (ctx === null) return t.skip();
    const messages = [{ role: "system" as const, content: "You are a storyteller." }, { role: "user" as const, content: "Who was there?" }];
    const { model, tokenizer } = await bundled();
    const ref = await generate(new Session(model), tokenizer, { // the default cache (f16) on both sides
      prompt: chatPromptIds(tokenizer, messages), maxTokens: 16, sampler: GREEDY_SAMPLER,
      stopIds: endOfTurnIds(tokenizer),
    });
    const child = spawn(process.execPath, [BIN, "serve", "--port", "0", "--device", "gpu"], { env: { ...process.env, QLLM_THREADS: "1" } });
    let err = "";
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stderr.on("data", (d: Buffer) => { err += d.toString(); const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(err); if (m) resolve(m[1]!); });
        child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
      });
      expect(err).toMatch(/kernel path: webgpu on /);
      const { openai } = client(url);
      const r = await openai.chat.completions.create({ model: MODEL_ID, messages, temperature: 0, max_tokens: 16 });
      expect(r.usage?.completion_tokens).toBe(ref.ids.length);
      expect(r.choices[0]!.message.content).toBe(ref.text);
      const s = await openai.chat.completions.create({ model: MODEL_ID, messages, temperature: 0, max_tokens: 16, stream: true });
      let text = "";
      for await (const ch of s) text += ch.choices[0]?.delta.content ?? "";
      expect(text).toBe(ref.text);
    } finally {
      const code = await new Promise<number | null>((resolve) => {
        if (child.exitCode !== null) { resolve(child.exitCode); return; }
        child.on("exit", resolve);
        child.kill("SIGINT");
      });
      expect(code, err).toBe(0);
    }
  }, 120_000);

  it("errors name the missing piece and the fix: no adapter, buffer too large", async (t) => {
    if (ctx === null) return t.skip();
    // A backend this platform has no driver for: Dawn finds no adapter.
    const other = process.platform === "win32" ? "metal" : "d3d12";
    await expect(openGpu({ choice: "gpu", backend: other })).rejects.toThrow(/no WebGPU adapter[\s\S]*install the GPU's Vulkan driver/);
    const k = new GpuKernels(ctx);
    const limit = Math.min(ctx.device.limits.maxStorageBufferBindingSize, ctx.device.limits.maxBufferSize);
    expect(() => k.buffer(limit + 4, "lm_head")).toThrow(/buffer too large for this GPU[\s\S]*lm_head[\s\S]*4-bit quantized model/);
  });

  it("refuses --device with the llama.cpp engine and an unknown device", async () => {
    const r = await runMain("chat", "--engine", "llama.cpp", "--device", "gpu", "--prompt", "hi");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("--device does not apply to --engine llama.cpp");
    const s = await runMain("serve", "--device", "tpu", "--port", "0");
    expect(s.status).not.toBe(0);
    expect(s.stderr).toMatch(/--device[\s\S]*cpu/);
  });
});

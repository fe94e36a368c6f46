/**
 * `quantize-llm inspect`: format, shapes, storage and bits per weight of the bundled model
 * and of what our own commands write from it (HF-GPTQ, bitsandbytes int8, GGUF Q4_0),
 * checked against figures computed here from the config and the byte layouts
 * (FORMATS.md), not from inspect's own code.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { inspectModel, type InspectReport } from "../../src/cli/inspect.ts";
import { BUNDLED_MODEL_DIR, PACKAGE_ROOT } from "../../src/load/paths.ts";

const BIN = `${PACKAGE_ROOT}bin/quantize-llm.js`;
const cli = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });
let tmp: string;

// The bundled model's shapes, from its config.json.
const cfg = JSON.parse(readFileSync(join(BUNDLED_MODEL_DIR, "config.json"), "utf8")) as Record<string, number | boolean>;
const H = cfg["hidden_size"] as number, F = cfg["intermediate_size"] as number, L = cfg["num_hidden_layers"] as number;
const V = cfg["vocab_size"] as number, nH = cfg["num_attention_heads"] as number, nKv = cfg["num_key_value_heads"] as number;
const D = H / nH;
const linearParams = L * (2 * H * H + 2 * H * nKv * D + 3 * H * F);
const totalParams = linearParams + L * 2 * H + H + V * H * (cfg["tie_word_embeddings"] ? 1 : 2);

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "qllm-inspect-"));
  for (const args of [
    ["rtn", "--bits", "4", "--group-size", "128", "--no-eval", "-o", join(tmp, "gptq")],
    ["int8", "--no-eval", "--calib-samples", "0", "-o", join(tmp, "int8")],
    ["export", "--format", "gguf", "--type", "q4_0", "-o", join(tmp, "m.gguf")],
  ]) {
    const r = cli(...args);
    expect(r.status, r.stderr).toBe(0);
  }
});
afterAll(() => { if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true }); });

const weight = (r: InspectReport, name: string) => r.weights.find((w) => w.name === name)!;

describe("quantize-llm inspect", () => {
  test("the bundled model: plain BF16 folder, the config's shapes, 16.00 bits per weight", async () => {
    const r = await inspectModel(BUNDLED_MODEL_DIR);
    expect(r.format).toBe("Hugging Face folder (safetensors)");
    expect(r.shapes).toMatchObject({ hidden: H, layers: L, heads: nH, kv_heads: nKv, ffn: F, vocab: V });
    expect(r.params).toBe(totalParams);
    expect(Object.keys(r.storage)).toEqual(["BF16"]);
    expect(r.bitsPerWeight).toBe(16);
  });

  test("HF-GPTQ w4 g128: each linear as int4 g128 sym, [out, in] shapes, bytes of qweight + qzeros + scales + g_idx", async () => {
    const r = await inspectModel(join(tmp, "gptq"));
    expect(r.format).toBe("HF-GPTQ folder");
    expect(r.params).toBe(totalParams);
    expect(r.storage["int4 g128 sym (GPTQ)"]).toMatchObject({ tensors: 7 * L, params: linearParams });
    const q = weight(r, "model.layers.0.self_attn.q_proj");
    expect(q.shape).toEqual([H, H]);
    const groups = Math.ceil(H / 128);
    // qweight int32 [in/8, out] + qzeros int32 [groups, out/8] + scales f16 [groups, out] + g_idx int32 [in]
    expect(q.bytes).toBe((H * H) / 2 + groups * (H / 8) * 4 + groups * H * 2 + H * 4);
    expect(weight(r, "model.layers.0.mlp.down_proj").shape).toEqual([H, F]);
  });

  test("bitsandbytes int8: int8 [out, in] + SCB f32 [out] + weight_format per linear", async () => {
    const r = await inspectModel(join(tmp, "int8"));
    expect(r.format).toBe("bitsandbytes int8 folder (load_in_8bit)");
    expect(r.params).toBe(totalParams);
    expect(r.storage["int8 row-absmax (bitsandbytes)"]).toMatchObject({ tensors: 7 * L, params: linearParams });
    const up = weight(r, "model.layers.1.mlp.up_proj");
    expect(up.shape).toEqual([F, H]);
    expect(up.bytes).toBe(F * H + F * 4 + 1);
  });

  test("GGUF Q4_0: ggml types per tensor, Q4_0 at exactly 4.5 bits per weight, file size", async () => {
    const r = await inspectModel(join(tmp, "m.gguf"));
    expect(r.format).toBe("GGUF v3");
    expect(r.architecture).toBe("llama");
    expect(r.params).toBe(totalParams);
    const q4 = r.storage["Q4_0"]!;
    expect(q4.tensors).toBe(7 * L);
    expect((8 * q4.bytes) / q4.params).toBe(4.5);
    expect(r.fileBytes).toBeGreaterThan(q4.bytes);
  });

  test("at the command line: a readable report, --tensors lists weights, a missing model is a typed error", () => {
    const r = cli("inspect", join(tmp, "gptq"), "--tensors");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/format\s+HF-GPTQ folder/);
    expect(r.stdout).toMatch(/bits\/weight\s+\d+\.\d\d/);
    expect(r.stdout).toMatch(/model\.layers\.0\.self_attn\.q_proj\s+int4 g128 sym \(GPTQ\)\s+\[256, 256\]\s+4\.28 bpw/);
    const bad = cli("inspect", join(tmp, "nope"));
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/model folder not found/);
    expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

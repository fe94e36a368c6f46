import { describe, expect, it } from "vitest";
import { parseModelConfig } from "../../src/arch/config.ts";
import { ConfigError } from "../../src/util/errors.ts";

const base = {
  hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 8,
  vocab_size: 100, max_position_embeddings: 256, rms_norm_eps: 1e-6,
};

describe("parseModelConfig", () => {
  it("normalises a llama config with GQA and defaults", () => {
    const c = parseModelConfig({ ...base, model_type: "llama", num_key_value_heads: 2, rope_theta: 500000 });
    expect(c.arch.family).toBe("llama");
    expect(c.numKvHeads).toBe(2);
    expect(c.headDim).toBe(8);
    expect(c.ropeTheta).toBe(500000);
    expect(c.qkvBias).toBe(false);
    expect(c.tieWordEmbeddings).toBe(false);
    expect(c.ropeScaling).toBeNull();
  });

  it("num_key_value_heads defaults to num_attention_heads; explicit head_dim wins", () => {
    const c = parseModelConfig({ ...base, model_type: "mistral", head_dim: 16 });
    expect(c.numKvHeads).toBe(8);
    expect(c.headDim).toBe(16);
    expect(c.arch.ggufArch).toBe("llama");
  });

  it("qwen2 has q/k/v biases and its sliding window is ignored only when used, with a warning", () => {
    const off = parseModelConfig({ ...base, model_type: "qwen2", sliding_window: 4096, use_sliding_window: false, tie_word_embeddings: true });
    expect(off.qkvBias).toBe(true);
    expect(off.tieWordEmbeddings).toBe(true);
    expect(off.warnings).toEqual([]);
    const mistral = parseModelConfig({ ...base, model_type: "mistral", sliding_window: 4096 });
    expect(mistral.warnings.join()).toMatch(/sliding_window=4096.*ignored/);
  });

  it("parses llama3 rope scaling", () => {
    const c = parseModelConfig({
      ...base, model_type: "llama",
      rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    });
    expect(c.ropeScaling).toEqual({ type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  });

  it("rejects an unsupported model_type, listing what is supported", () => {
    expect(() => parseModelConfig({ ...base, model_type: "gpt_neox" }, "x/config.json")).toThrow(ConfigError);
    expect(() => parseModelConfig({ ...base, model_type: "gpt_neox" }, "x/config.json")).toThrow(/llama, mistral, qwen2[\s\S]*gpt_neox/);
  });

  it("names the file and field of a bad value", () => {
    let err: unknown;
    try { parseModelConfig({ ...base, model_type: "llama", hidden_size: "big" }, "m/config.json"); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ConfigError);
    expect(String(err)).toMatch(/hidden_size[\s\S]*m\/config.json[\s\S]*"big"/);
    expect(() => parseModelConfig({ ...base, model_type: "llama", num_key_value_heads: 3 })).toThrow(/multiple of num_key_value_heads/);
    expect(() => parseModelConfig({ ...base, model_type: "llama", rope_scaling: { rope_type: "yarn", factor: 4 } })).toThrow(/unsupported rope_scaling/);
  });
});

/**
 * HF folder → GGUF export (src/export/): the metadata keys llama.cpp needs, the tensor name
 * map and storage types, tokenizer metadata (pre-tokenizer detection, token types, gaps,
 * merges, special ids), refusals with clear errors, and the `export` CLI command.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { exportCommand } from "../../src/cli/export.ts";
import { exportGguf } from "../../src/export/gguf.ts";
import { llama3RopeFactors, unpermuteQK } from "../../src/arch/gguf-tensors.ts";
import { ggufTokenizerKv, type TokenizerForGguf } from "../../src/export/gguf-tokenizer.ts";
import { GPT2_REGEX, LLAMA3_REGEX, QWEN2_REGEX, TOKEN_TYPE } from "../../src/arch/gguf-vocab.ts";
import { openGguf, type GgufFile } from "../../src/io/gguf.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { parseModelConfig } from "../../src/arch/config.ts";
import { BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { loadTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { f16ToF32, f32ToF16 } from "../../src/tensor/dtype.ts";
import { ConfigError, FormatError, UsageError } from "../../src/util/errors.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";

function withGguf<T>(path: string, fn: (g: GgufFile) => T): T {
  const g = openGguf(path);
  try { return fn(g); } finally { g.close(); }
}

describe("llama export (F32): keys, tokenizer, tensors", () => {
  let tiny: TinyModel;
  let path: string;
  beforeAll(async () => {
    tiny = await makeTinyModel({ modelType: "llama", hidden: 32, intermediate: 48, layers: 2, heads: 4, kvHeads: 2, vocab: 300, seed: 1, tokenizer: "generated" });
    path = join(tiny.dir, "out.gguf");
    await exportGguf(tiny.dir, path, { type: "f32", name: "tiny-llama" });
  });
  afterAll(async () => { await tiny.cleanup(); });

  test("general.* and llama.* keys from config.json", () => {
    withGguf(path, (g) => {
      expect(g.getString("general.architecture")).toBe("llama");
      expect(g.getString("general.name")).toBe("tiny-llama");
      expect(g.kv.get("general.file_type")).toEqual({ type: "u32", value: 0 });
      expect(g.kv.get("general.quantization_version")).toEqual({ type: "u32", value: 2 });
      const u32 = (k: string): unknown => g.kv.get(`llama.${k}`);
      expect(u32("context_length")).toEqual({ type: "u32", value: 512 });
      expect(u32("embedding_length")).toEqual({ type: "u32", value: 32 });
      expect(u32("block_count")).toEqual({ type: "u32", value: 2 });
      expect(u32("feed_forward_length")).toEqual({ type: "u32", value: 48 });
      expect(u32("rope.dimension_count")).toEqual({ type: "u32", value: 8 });
      expect(u32("attention.head_count")).toEqual({ type: "u32", value: 4 });
      expect(u32("attention.head_count_kv")).toEqual({ type: "u32", value: 2 });
      expect(u32("vocab_size")).toEqual({ type: "u32", value: 300 });
      expect(g.kv.get("llama.attention.layer_norm_rms_epsilon")).toEqual({ type: "f32", value: Math.fround(1e-5) });
      expect(g.kv.get("llama.rope.freq_base")).toEqual({ type: "f32", value: 10000 });
      expect(g.kv.has("llama.attention.key_length")).toBe(false);
      expect(g.kv.has("llama.rope.scaling.type")).toBe(false);
    });
  });

  test("tokenizer metadata: gpt2 / gpt-2, tokens in id order with [PAD] gaps, types, merges, specials", () => {
    const tj = JSON.parse(readFileSync(join(tiny.dir, "tokenizer.json"), "utf8")) as { model: { vocab: Record<string, number>; merges: string[] } };
    withGguf(path, (g) => {
      expect(g.getString("tokenizer.ggml.model")).toBe("gpt2");
      expect(g.getString("tokenizer.ggml.pre")).toBe("gpt-2");
      const tokens = g.getStringArray("tokenizer.ggml.tokens");
      const types = g.getNumberArray("tokenizer.ggml.token_type");
      expect(tokens.length).toBe(300);
      expect(types.length).toBe(300);
      expect(tokens.slice(0, 3)).toEqual(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
      expect(types.slice(0, 3)).toEqual([TOKEN_TYPE.CONTROL, TOKEN_TYPE.CONTROL, TOKEN_TYPE.CONTROL]);
      for (const [t, id] of Object.entries(tj.model.vocab)) { expect(tokens[id]).toBe(t); expect(types[id]).toBe(TOKEN_TYPE.NORMAL); }
      const n = tiny.tokenizerSize;
      expect(n).toBeLessThan(300);
      expect(tokens.slice(n)).toEqual(Array.from({ length: 300 - n }, (_, i) => `[PAD${n + i}]`));
      expect(types.slice(n).every((t) => t === TOKEN_TYPE.UNUSED)).toBe(true);
      expect(g.getStringArray("tokenizer.ggml.merges")).toEqual(tj.model.merges);
      expect(g.getNumber("tokenizer.ggml.bos_token_id")).toBe(0);
      expect(g.getNumber("tokenizer.ggml.eos_token_id")).toBe(0);
      expect(g.getBool("tokenizer.ggml.add_bos_token")).toBe(true);
      expect(g.getBool("tokenizer.ggml.add_eos_token")).toBe(false);
      expect(g.getString("tokenizer.chat_template")).toContain("<|im_start|>");
    });
  });

  test("tensor names, GGUF dims (innermost first), F32 everywhere, q/k permuted, output.weight present", async () => {
    const ckpt = await openCheckpoint(tiny.dir);
    try {
      withGguf(path, (g) => {
        const names = [...g.tensors.keys()];
        expect(names.slice(0, 11)).toEqual([
          "token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
          "blk.0.attn_output.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "blk.0.ffn_norm.weight", "blk.1.attn_norm.weight",
        ]);
        expect(names.slice(-2)).toEqual(["output_norm.weight", "output.weight"]);
        expect(names.length).toBe(1 + 2 * 9 + 2);
        expect(g.tensor("token_embd.weight").dims).toEqual([32, 300]);
        expect(g.tensor("blk.0.attn_k.weight").dims).toEqual([32, 16]);
        expect(g.tensor("blk.0.ffn_down.weight").dims).toEqual([48, 32]);
        expect([...g.tensors.values()].every((t) => t.type.name === "F32")).toBe(true);
        expect(g.readF32Sync("blk.1.ffn_up.weight")).toEqual(ckpt.readF32Sync("model.layers.1.mlp.up_proj.weight"));
        expect(g.readF32Sync("blk.1.attn_v.weight")).toEqual(ckpt.readF32Sync("model.layers.1.self_attn.v_proj.weight"));
        expect(unpermuteQK(g.readF32Sync("blk.1.attn_q.weight"), 4, 32)).toEqual(ckpt.readF32Sync("model.layers.1.self_attn.q_proj.weight"));
        expect(unpermuteQK(g.readF32Sync("blk.1.attn_k.weight"), 2, 32)).toEqual(ckpt.readF32Sync("model.layers.1.self_attn.k_proj.weight"));
        expect(g.readF32Sync("output.weight")).toEqual(ckpt.readF32Sync("lm_head.weight"));
      });
    } finally {
      await ckpt.close();
    }
  });
});

describe("qwen2 export (F16, tied): arch keys, biases, F16 2-D / F32 1-D, no output.weight", () => {
  let tiny: TinyModel;
  let path: string;
  beforeAll(async () => {
    tiny = await makeTinyModel({ modelType: "qwen2", hidden: 32, intermediate: 64, layers: 1, heads: 4, kvHeads: 2, seed: 2, tieEmbeddings: true, tokenizer: "generated" });
    path = join(tiny.dir, "out.gguf");
    await exportGguf(tiny.dir, path, { type: "f16" });
  });
  afterAll(async () => { await tiny.cleanup(); });

  test("keys and tensors", async () => {
    const ckpt = await openCheckpoint(tiny.dir);
    try {
      withGguf(path, (g) => {
        expect(g.getString("general.architecture")).toBe("qwen2");
        expect(g.kv.get("general.file_type")).toEqual({ type: "u32", value: 1 });
        expect(g.getNumber("qwen2.block_count")).toBe(1);
        expect(g.getNumber("qwen2.attention.head_count_kv")).toBe(2);
        expect(g.kv.has("llama.block_count")).toBe(false);
        expect(g.tensors.has("output.weight")).toBe(false);
        for (const p of ["q", "k", "v"]) {
          const b = g.tensor(`blk.0.attn_${p}.bias`);
          expect(b.type.name).toBe("F32");
          // Qwen2 uses NEOX RoPE in llama.cpp: no permutation of weights or biases.
          expect(g.readF32Sync(`blk.0.attn_${p}.bias`)).toEqual(ckpt.readF32Sync(`model.layers.0.self_attn.${p}_proj.bias`));
        }
        expect(g.tensor("token_embd.weight").type.name).toBe("F16");
        expect(g.tensor("blk.0.attn_q.weight").type.name).toBe("F16");
        expect(g.tensor("blk.0.attn_norm.weight").type.name).toBe("F32");
        expect(g.tensor("output_norm.weight").type.name).toBe("F32");
        const q = ckpt.readF32Sync("model.layers.0.self_attn.q_proj.weight");
        expect(g.readF32Sync("blk.0.attn_q.weight")).toEqual(Float32Array.from(q, (x) => f16ToF32(f32ToF16(x))));
      });
    } finally {
      await ckpt.close();
    }
  });
});

describe("rope scaling and head_dim keys", () => {
  test("llama3 → rope_freqs.weight with convert_hf_to_gguf.py's factors; linear → rope.scaling.*", async () => {
    const scaling = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const tiny = await makeTinyModel({ modelType: "llama", hidden: 64, heads: 4, layers: 1, vocab: 296, seed: 3, ropeScaling: scaling, headDim: 16, tokenizer: "generated" });
    try {
      const path = join(tiny.dir, "o.gguf");
      await exportGguf(tiny.dir, path, { type: "f32" });
      withGguf(path, (g) => {
        const f = g.readF32Sync("rope_freqs.weight");
        expect(g.tensor("rope_freqs.weight").dims).toEqual([8]);
        // head_dim 16, theta 1e4: wavelength_i = 2π·1e4^(i/8); 2048 (=8192/4) and 8192 (=8192/1) split the regimes.
        const wl = (i: number): number => 2 * Math.PI / Math.fround(1 / 10000 ** (i / 8));
        for (let i = 0; i < 8; i++) {
          const expected = wl(i) < 2048 ? 1 : wl(i) > 8192 ? 8 : 1 / ((1 - (8192 / wl(i) - 1) / 3) / 8 + (8192 / wl(i) - 1) / 3);
          expect(f[i]).toBeCloseTo(expected, 5);
        }
        expect([...f.slice(0, 6)]).toEqual([1, 1, 1, 1, 1, 1]);
        expect(f[6]).toBeGreaterThan(1);
        expect(f[6]).toBeLessThan(8);
        expect(f[7]).toBe(8);
        expect(g.getNumber("llama.attention.key_length")).toBe(16); // config.json has head_dim
        expect(g.kv.has("llama.rope.scaling.type")).toBe(false);
      });
      expect(llama3RopeFactors(tiny.cfg)).toEqual(withGguf(path, (g) => g.readF32Sync("rope_freqs.weight")));
    } finally {
      await tiny.cleanup();
    }
    const lin = await makeTinyModel({ modelType: "llama", hidden: 32, heads: 4, layers: 1, vocab: 296, seed: 4, ropeScaling: { type: "linear", factor: 2 }, tokenizer: "generated" });
    try {
      const path = join(lin.dir, "o.gguf");
      await exportGguf(lin.dir, path, { type: "f32" });
      withGguf(path, (g) => {
        expect(g.getString("llama.rope.scaling.type")).toBe("linear");
        expect(g.getNumber("llama.rope.scaling.factor")).toBe(2);
        expect(g.tensors.has("rope_freqs.weight")).toBe(false);
      });
    } finally {
      await lin.cleanup();
    }
  });
});

// ---------------------------------------------------------------- tokenizer detection and refusals

/** A stub tokenizer around a tokenizer.json object (tokenizers with regexes JS cannot compile still export). */
function stubTokenizer(json: Record<string, unknown>, config: Record<string, unknown> = {}, bosId: number | null = null): TokenizerForGguf {
  const model = json["model"] as { vocab: Record<string, number> };
  const added = (json["added_tokens"] as { id: number; content: string }[] | undefined) ?? [];
  const ids = new Map<string, number>([...Object.entries(model.vocab), ...added.map((t) => [t.content, t.id] as [string, number])]);
  return {
    json, config, bosId, eosIds: [],
    encode: (_text, opts) => (opts?.addSpecial === true && bosId !== null ? [bosId, 5] : [5]),
    tokenToId: (t) => ids.get(t),
  };
}

function bpeJson(preTokenizer: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    added_tokens: [{ id: 0, content: "<|begin_of_text|>", special: true }, { id: 1, content: "<tool>", special: false }, { id: 2, content: "<|eot|>", special: false }],
    normalizer: null,
    pre_tokenizer: preTokenizer,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", byte_fallback: false, ignore_merges: false, vocab: { a: 3, b: 4, ab: 5 }, merges: [["a", "b"]] },
    ...extra,
  };
}

const split = (re: string): unknown => ({
  type: "Sequence",
  pretokenizers: [
    { type: "Split", pattern: { Regex: re }, behavior: "Isolated", invert: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
  ],
});

describe("tokenizer metadata", () => {
  test("pre-tokenizer names from the regex: GPT-2 → gpt-2, Llama 3 → llama-bpe, Qwen2 → qwen2", () => {
    const pre = (json: Record<string, unknown>): string => ggufTokenizerKv(stubTokenizer(json), 8, "tokenizer.json").pre;
    expect(pre(bpeJson({ type: "ByteLevel", add_prefix_space: false, use_regex: true }))).toBe("gpt-2");
    expect(pre(bpeJson(split(GPT2_REGEX)))).toBe("gpt-2");
    expect(pre(bpeJson(split(LLAMA3_REGEX), { model: { type: "BPE", ignore_merges: true, vocab: { a: 3 }, merges: [] } }))).toBe("llama-bpe");
    const q = ggufTokenizerKv(stubTokenizer(bpeJson(split(QWEN2_REGEX), { normalizer: { type: "NFC" } })), 8, "tokenizer.json");
    expect(q.pre).toBe("qwen2");
    expect(q.warnings.join(" ")).toMatch(/NFC/);
  });

  test("token types: special → CONTROL, <|...|> → CONTROL, other added → USER_DEFINED; [a, b] merges joined", () => {
    const m = ggufTokenizerKv(stubTokenizer(bpeJson({ type: "ByteLevel", use_regex: true }), { bos_token: "<|begin_of_text|>", eos_token: "<|eot|>" }, 0), 7, "t.json");
    const get = (k: string): unknown => m.kvs.find(([key]) => key === k)?.[1].value;
    expect(get("tokenizer.ggml.tokens")).toEqual(["<|begin_of_text|>", "<tool>", "<|eot|>", "a", "b", "ab", "[PAD6]"]);
    expect(get("tokenizer.ggml.token_type")).toEqual([3, 4, 3, 1, 1, 1, 5]);
    expect(get("tokenizer.ggml.merges")).toEqual(["a b"]);
    expect(get("tokenizer.ggml.bos_token_id")).toBe(0);
    expect(get("tokenizer.ggml.eos_token_id")).toBe(2);
    expect(get("tokenizer.ggml.add_bos_token")).toBe(true);
  });

  test("refusals: Unigram models, byte fallback without its byte tokens, unknown regexes, add_prefix_space, ids beyond vocab_size", () => {
    const refuse = (json: Record<string, unknown>, vocab = 8): ConfigError => {
      let err: unknown;
      try { ggufTokenizerKv(stubTokenizer(json), vocab, "tokenizer.json"); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    };
    expect(refuse(bpeJson(null, { model: { type: "Unigram", vocab: [] } })).message).toMatch(/only BPE tokenizers/);
    const spmNorm = { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }] };
    expect(refuse(bpeJson(null, { normalizer: spmNorm, model: { type: "BPE", byte_fallback: true, vocab: {}, merges: [] } })).message).toMatch(/byte-fallback token <0x00> is missing/);
    expect(refuse(bpeJson(null, { model: { type: "BPE", byte_fallback: true, vocab: {}, merges: [] } })).message).toMatch(/spaces are not spelled/);
    const unknown = refuse(bpeJson(split(String.raw`\p{N}{1,5}|\s+`)));
    expect(unknown.message).toMatch(/no built-in pre-tokenizer/);
    expect(unknown.details.found).toContain(String.raw`\p{N}{1,5}`);
    expect(refuse(bpeJson({ type: "ByteLevel", add_prefix_space: true, use_regex: true })).message).toMatch(/add_prefix_space/);
    expect(refuse(bpeJson({ type: "Whitespace" })).message).toMatch(/unsupported pre-tokenizer/);
    expect(refuse(bpeJson({ type: "ByteLevel", use_regex: true }, { decoder: { type: "WordPiece" } })).message).toMatch(/no ByteLevel decoder/);
    expect(refuse(bpeJson({ type: "ByteLevel", use_regex: true }, { normalizer: { type: "Lowercase" } })).message).toMatch(/normalizer/);
    expect(refuse(bpeJson({ type: "ByteLevel", use_regex: true }), 5).message).toMatch(/token id out of range/);
  });

  test("the bundled tokenizer (when present) exports as gpt2 / gpt-2 with BOS added", () => {
    if (!existsSync(join(BUNDLED_MODEL_DIR, "tokenizer.json"))) return;
    const tok = loadTokenizer(BUNDLED_MODEL_DIR);
    const m = ggufTokenizerKv(tok, 4096, "tokenizer.json");
    expect(m.pre).toBe("gpt-2");
    expect(m.warnings).toEqual([]);
    const get = (k: string): unknown => m.kvs.find(([key]) => key === k)?.[1].value;
    expect((get("tokenizer.ggml.tokens") as string[]).some((t) => t.startsWith("[PAD"))).toBe(false);
    expect(get("tokenizer.ggml.add_bos_token")).toBe(true);
    expect(get("tokenizer.ggml.bos_token_id")).toBe(0);
  });
});

describe("export refusals", () => {
  test("checkpoint shape mismatch → FormatError naming the tensor; bad type → UsageError; no temp file left", async () => {
    const tiny = await makeTinyModel({ modelType: "llama", hidden: 32, heads: 4, layers: 1, vocab: 296, seed: 6, tokenizer: "generated" });
    try {
      const cfgPath = join(tiny.dir, "config.json");
      const raw = JSON.parse(readFileSync(cfgPath, "utf8")) as Record<string, unknown>;
      writeFileSync(cfgPath, JSON.stringify({ ...raw, intermediate_size: 50 }));
      const out = join(tiny.dir, "x.gguf");
      await expect(exportGguf(tiny.dir, out, { type: "f32" })).rejects.toThrow(/model.layers.0.mlp.gate_proj.weight" has the wrong shape/);
      await expect(exportGguf(tiny.dir, out, { type: "q4" as "f32" })).rejects.toThrow(UsageError);
      writeFileSync(cfgPath, JSON.stringify({ ...raw, vocab_size: 200 }));
      await expect(exportGguf(tiny.dir, out, { type: "f32" })).rejects.toThrow(ConfigError); // tokenizer ids ≥ vocab_size
      writeFileSync(cfgPath, JSON.stringify({ ...raw, tie_word_embeddings: true }));
      await expect(exportGguf(tiny.dir, out, { type: "f32" })).rejects.toThrow(FormatError); // lm_head differs from the embedding
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(tiny.dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
      const huge = await makeTinyModel({ modelType: "llama", hidden: 32, heads: 4, layers: 1, seed: 6, tokenizer: "generated", std: { embed: 1e5 } });
      try {
        await expect(exportGguf(huge.dir, join(huge.dir, "h.gguf"), { type: "f16" })).rejects.toThrow(/does not fit in F16/);
        expect(readdirSync(huge.dir).filter((f) => f.endsWith(".gguf") || f.includes(".tmp-"))).toEqual([]);
      } finally {
        await huge.cleanup();
      }
      expect(parseModelConfig(raw).vocabSize).toBe(296);
    } finally {
      await tiny.cleanup();
    }
  });
});

describe("quantize-llm export (CLI)", () => {
  let tiny: TinyModel;
  beforeAll(async () => {
    tiny = await makeTinyModel({ modelType: "mistral", hidden: 32, heads: 4, kvHeads: 1, layers: 1, seed: 7, tokenizer: "generated" });
  });
  afterAll(async () => { await tiny.cleanup(); });

  test("writes the file and prints path, size and tensor count", async () => {
    const out = join(tiny.dir, "cli.gguf");
    const writes: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((s) => { writes.push(String(s)); return true; });
    const errSpy = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      expect(await exportCommand.run([tiny.dir, "--format", "gguf", "--type", "f32", "-o", out])).toBe(0);
    } finally {
      spy.mockRestore();
      errSpy.mockRestore();
    }
    const text = writes.join("");
    expect(text).toContain("cli.gguf");
    expect(text).toMatch(/tensors:\s+12 /);
    expect(text).toMatch(/size:\s+[\d.]+ MiB/);
    withGguf(out, (g) => expect(g.tensors.size).toBe(12));
    await expect(exportCommand.run([tiny.dir, "--format", "gguf", "-o", out])).rejects.toThrow(/already exists/);
  });

  test("bad flags → UsageError", async () => {
    const out = join(tiny.dir, "never.gguf");
    await expect(exportCommand.run([tiny.dir, "-o", out])).rejects.toThrow(/missing --format/);
    await expect(exportCommand.run([tiny.dir, "--format", "safetensors", "-o", out])).rejects.toThrow(UsageError);
    await expect(exportCommand.run([tiny.dir, "--format", "gguf", "--type", "q5_0", "-o", out])).rejects.toThrow(UsageError);
    await expect(exportCommand.run([tiny.dir, "--format", "gguf", "--bogus"])).rejects.toThrow(UsageError);
    await expect(exportCommand.run([tiny.dir, tiny.dir, "--format", "gguf"])).rejects.toThrow(UsageError);
    await expect(exportCommand.run([tiny.dir, "--format", "gguf", "-o", join(tiny.dir, "no", "such", "dir.gguf")])).rejects.toThrow(/output folder does not exist/);
    expect(existsSync(out)).toBe(false);
  });
});

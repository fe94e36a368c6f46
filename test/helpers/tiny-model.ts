/**
 * Tiny random Hugging Face model folders for tests: config.json, model.safetensors and a
 * byte-level BPE tokenizer that llama.cpp can load. Weights are seeded (mulberry32), so the
 * same options always produce the same files.
 *
 *   const m = await makeTinyModel({ modelType: "llama", hidden: 64, heads: 4, kvHeads: 2, seed: 1 });
 *   ... m.dir ...
 *   await m.cleanup();
 */
import { copyFileSync, existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseModelConfig, type ModelConfig } from "../../src/arch/config.ts";
import { linearTensorName } from "../../src/arch/registry.ts";
import { writeSafetensors, type TensorSource } from "../../src/io/safetensors.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { hasBias, linearShapes } from "../../src/arch/shapes.ts";
import { fromF32 } from "../../src/tensor/dtype.ts";

export interface TinyModelOptions {
  modelType: "llama" | "mistral" | "qwen2";
  hidden?: number;
  intermediate?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  /** Explicit head_dim (written to config.json); default hidden / heads. */
  headDim?: number;
  /** Model vocabulary (embedding rows). Default: the tokenizer's size. May exceed it (ids without a token). */
  vocab?: number;
  seed?: number;
  tieEmbeddings?: boolean;
  maxPositions?: number;
  ropeTheta?: number;
  rmsNormEps?: number;
  /** HF rope_scaling object, written as-is. */
  ropeScaling?: Record<string, unknown>;
  /** Storage dtype of the safetensors file (default F32, so every engine sees identical weights). */
  dtype?: "F32" | "F16" | "BF16";
  /**
   * "bundled": copy models/qllm-tiny's tokenizer; "generated": a small byte-level BPE; "spm": a
   * SentencePiece-style byte-fallback BPE in Llama 2's layout (generateSpmTokenizer); "auto": bundled when present.
   */
  tokenizer?: "auto" | "bundled" | "generated" | "spm";
  /** Output folder (created); default a fresh temp folder. */
  dir?: string;
  /** Extra config.json fields (override the generated ones). */
  extraConfig?: Record<string, unknown>;
  /** Standard deviations of the random weights. */
  std?: Partial<WeightStd>;
}

export interface WeightStd {
  /** Embedding entries. */
  embed: number;
  /** Block linears: std = linear / sqrt(in_features). */
  linear: number;
  /** lm_head: std = lmHead / sqrt(hidden). */
  lmHead: number;
  /** Norm weights: 1 ± norm. */
  norm: number;
  /** Biases (q/k/v for qwen2). */
  bias: number;
}

/**
 * Defaults chosen for well-spread logits (std ≈ 2–3), so greedy decoding has clear
 * winners and does not flip on 1e-5 arithmetic differences between engines.
 */
const DEFAULT_STD: WeightStd = { embed: 1, linear: 1, lmHead: 2.5, norm: 0.1, bias: 0.2 };

export interface TinyModel {
  dir: string;
  cfg: ModelConfig;
  /** The config.json object written. */
  config: Record<string, unknown>;
  tokenizer: "bundled" | "generated" | "spm";
  /** Number of entries of the tokenizer's vocabulary (≤ cfg.vocabSize). */
  tokenizerSize: number;
  cleanup(): Promise<void>;
}

const ARCHITECTURES = { llama: "LlamaForCausalLM", mistral: "MistralForCausalLM", qwen2: "Qwen2ForCausalLM" } as const;

function randn(rand: () => number): number {
  const u = Math.max(rand(), 1e-12), v = rand(); // Box–Muller
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function randomArray(n: number, std: number, rand: () => number, mean = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = mean + std * randn(rand);
  return a;
}

export async function makeTinyModel(opts: TinyModelOptions): Promise<TinyModel> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), `qllm-tiny-${opts.modelType}-`));
  try {
    return await writeTinyModel(dir, opts);
  } catch (err) {
    if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true }); // do not leak temp folders on bad options
    throw err;
  }
}

async function writeTinyModel(dir: string, opts: TinyModelOptions): Promise<TinyModel> {
  mkdirSync(dir, { recursive: true });
  const useBundled = opts.tokenizer === "bundled" || ((opts.tokenizer ?? "auto") === "auto" && existsSync(join(BUNDLED_MODEL_DIR, "tokenizer.json")));
  let tokenizerSize: number;
  if (useBundled) {
    for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
      if (existsSync(join(BUNDLED_MODEL_DIR, f))) copyFileSync(join(BUNDLED_MODEL_DIR, f), join(dir, f));
    }
    tokenizerSize = tokenizerJsonSize(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")) as Record<string, unknown>);
  } else {
    const t = opts.tokenizer === "spm" ? generateSpmTokenizer() : generateByteLevelTokenizer();
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(t.tokenizerJson, null, 1));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(t.tokenizerConfig, null, 1));
    tokenizerSize = t.size;
  }

  const hidden = opts.hidden ?? 64;
  const heads = opts.heads ?? 4;
  const vocab = opts.vocab ?? tokenizerSize;
  if (vocab < tokenizerSize) throw new Error(`makeTinyModel: vocab ${vocab} is smaller than the tokenizer (${tokenizerSize} tokens)`);
  const dtypeName = { F32: "float32", F16: "float16", BF16: "bfloat16" }[opts.dtype ?? "F32"];
  const config: Record<string, unknown> = {
    architectures: [ARCHITECTURES[opts.modelType]],
    model_type: opts.modelType,
    hidden_size: hidden,
    intermediate_size: opts.intermediate ?? hidden * 2,
    num_hidden_layers: opts.layers ?? 2,
    num_attention_heads: heads,
    num_key_value_heads: opts.kvHeads ?? heads,
    max_position_embeddings: opts.maxPositions ?? 512,
    rope_theta: opts.ropeTheta ?? 10000,
    rms_norm_eps: opts.rmsNormEps ?? 1e-5,
    vocab_size: vocab,
    tie_word_embeddings: opts.tieEmbeddings ?? false,
    hidden_act: "silu",
    bos_token_id: opts.tokenizer === "spm" ? 1 : 0,
    eos_token_id: opts.tokenizer === "spm" ? 2 : 0,
    torch_dtype: dtypeName,
    ...(opts.headDim !== undefined ? { head_dim: opts.headDim } : {}),
    ...(opts.ropeScaling !== undefined ? { rope_scaling: opts.ropeScaling } : {}),
    ...(opts.modelType === "mistral" ? { sliding_window: 4096 } : {}),
    ...(opts.modelType === "qwen2" ? { use_sliding_window: false, sliding_window: 4096 } : {}),
    ...opts.extraConfig,
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  const cfg = parseModelConfig(config, join(dir, "config.json"));

  await writeSafetensors(join(dir, "model.safetensors"), randomTensors(cfg, opts.seed ?? 1, { ...DEFAULT_STD, ...opts.std }, opts.dtype ?? "F32"), { format: "pt" });
  return {
    dir, cfg, config, tokenizer: useBundled ? "bundled" : opts.tokenizer === "spm" ? "spm" : "generated", tokenizerSize,
    cleanup: async () => { if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true }); },
  };
}

/** HF-named random tensors in checkpoint order (embeddings, blocks, norm, lm_head). */
function randomTensors(cfg: ModelConfig, seed: number, std: WeightStd, dtype: "F32" | "F16" | "BF16"): TensorSource[] {
  const rand = mulberry32(seed);
  const a = cfg.arch;
  const H = cfg.hiddenSize, V = cfg.vocabSize;
  const out: TensorSource[] = [];
  const add = (name: string, shape: number[], x: Float32Array): void => { out.push({ name, dtype, shape, data: fromF32(dtype, x) }); };
  // A tied embedding is also the output matrix: scale it like lm_head so logits stay spread but finite.
  add(a.embed.hf, [V, H], randomArray(V * H, cfg.tieWordEmbeddings ? std.lmHead / Math.sqrt(H) : std.embed, rand));
  const shapes = linearShapes(cfg);
  for (let b = 0; b < cfg.numLayers; b++) {
    const p = a.blockPrefix(b);
    add(`${p}.${a.attnNorm.hf}.weight`, [H], randomArray(H, std.norm, rand, 1));
    for (const spec of a.linears) {
      const [N, K] = shapes[spec.name];
      add(linearTensorName(a, b, spec), [N, K], randomArray(N * K, std.linear / Math.sqrt(K), rand));
      if (hasBias(cfg, spec.name)) add(linearTensorName(a, b, spec, "bias"), [N], randomArray(N, std.bias, rand));
    }
    add(`${p}.${a.mlpNorm.hf}.weight`, [H], randomArray(H, std.norm, rand, 1));
  }
  add(a.finalNorm.hf, [H], randomArray(H, std.norm, rand, 1));
  if (!cfg.tieWordEmbeddings) add(a.lmHead.hf, [V, H], randomArray(V * H, std.lmHead / Math.sqrt(H), rand));
  return out;
}

/** 1 + the largest token id of a tokenizer.json (model vocab and added tokens). */
export function tokenizerJsonSize(tj: Record<string, unknown>): number {
  const model = tj["model"] as { vocab?: Record<string, number> } | undefined;
  const ids = Object.values(model?.vocab ?? {});
  for (const t of (tj["added_tokens"] as { id: number }[] | undefined) ?? []) ids.push(t.id);
  return Math.max(-1, ...ids) + 1;
}

// ---------------------------------------------------------------- generated tokenizer

/** GPT-2's bytes_to_unicode: byte value → printable code point. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const map = new Array<string>(256);
  for (const b of bs) map[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) map[b] = String.fromCodePoint(256 + n++);
  return map;
}

/** Words whose byte-level spellings become merged tokens (Ġ = a leading space). */
const MERGE_WORDS = ["Ġthe", "Ġand", "Ġof", "Ġto", "in", "er", "on", "re", "at", "en", "Ġa", "Ġin", "ing", "Ġis", "Ġit", "ed", "Ġhe", "Ġwas", "Ġfor", "ĊĊ"];
const SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/**
 * A small byte-level BPE tokenizer in the layout of the bundled one: specials 0..2
 * (`<|endoftext|>` = BOS = EOS), the 256 byte tokens at 3..258, then merged tokens;
 * GPT-2 pre-tokenizer, ByteLevel decoder, a post-processor that adds BOS.
 */
export function generateByteLevelTokenizer(): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown>; size: number } {
  const b2u = bytesToUnicode();
  const vocab = new Map<string, number>();
  for (let b = 0; b < 256; b++) vocab.set(b2u[b]!, SPECIALS.length + b);
  const merges: string[] = [];
  for (const word of MERGE_WORDS) {
    const chars = [...word];
    let acc = chars[0]!;
    for (const ch of chars.slice(1)) {
      const merged = acc + ch;
      if (!vocab.has(merged)) {
        merges.push(`${acc} ${ch}`);
        vocab.set(merged, SPECIALS.length + vocab.size);
      }
      acc = merged;
    }
  }
  const bos = SPECIALS[0]!;
  const tokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [0], tokens: [bos] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab: Object.fromEntries(vocab), merges,
    },
  };
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: Object.fromEntries(SPECIALS.map((content, id) => [String(id), { content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }])),
    bos_token: bos, eos_token: bos, pad_token: bos, unk_token: null,
    additional_special_tokens: SPECIALS.slice(1),
    clean_up_tokenization_spaces: false,
    model_max_length: 512,
    tokenizer_class: "PreTrainedTokenizerFast",
    chat_template: CHAT_TEMPLATE,
  };
  return { tokenizerJson, tokenizerConfig, size: SPECIALS.length + vocab.size };
}

const SPM_SPACE = "\u2581";
const LLAMA2_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% else %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}{% endif %}{% endfor %}";

/**
 * A SentencePiece-style tokenizer in Llama 2's tokenizer.json layout: `<unk>` `<s>` `</s>` at
 * 0..2, the 256 byte-fallback tokens `<0x00>`..`<0xFF>` at 3..258, then merged pieces in merge
 * order and the single characters; BPE with byte_fallback, the Prepend ▁ + Replace " " → ▁
 * normalizer, a BOS post-processor. The merges are learned by plain BPE (most frequent pair,
 * within ▁-words) from the bundled calibration text; characters seen fewer than 3 times are
 * left out, so such text exercises the byte fallback.
 */
export function generateSpmTokenizer(merges = 300): { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown>; size: number } {
  const text = readFileSync(BUNDLED_CALIB_TEXT, "utf8").slice(0, 40_000);
  const norm = SPM_SPACE + text.replaceAll(" ", SPM_SPACE);
  const charCount = new Map<string, number>();
  for (const c of norm) charCount.set(c, (charCount.get(c) ?? 0) + 1);
  const chars = [...charCount].filter(([, n]) => n >= 3).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([c]) => c);
  const known = new Set(chars);
  // words: runs starting at ▁ (SentencePiece does not merge across a space)
  const wordCount = new Map<string, number>();
  for (const w of norm.split(new RegExp(`(?=${SPM_SPACE})`, "u"))) wordCount.set(w, (wordCount.get(w) ?? 0) + 1);
  let words = [...wordCount].map(([w, n]) => ({ syms: [...w], n }));
  const mergeList: string[] = [];
  const mergedTokens: string[] = [];
  for (let m = 0; m < merges; m++) {
    const pairs = new Map<string, number>();
    for (const { syms, n } of words) {
      for (let i = 0; i + 1 < syms.length; i++) {
        if (!known.has(syms[i]!) && [...syms[i]!].length === 1) continue;
        if (!known.has(syms[i + 1]!) && [...syms[i + 1]!].length === 1) continue;
        const k = `${syms[i]} ${syms[i + 1]}`;
        pairs.set(k, (pairs.get(k) ?? 0) + n);
      }
    }
    let best: string | null = null, bestN = 1;
    for (const [k, n] of pairs) if (n > bestN || (n === bestN && best !== null && k < best)) { best = k; bestN = n; }
    if (best === null) break;
    const [l, r] = best.split(" ") as [string, string];
    mergeList.push(best);
    if (!mergedTokens.includes(l + r)) mergedTokens.push(l + r);
    words = words.map(({ syms, n }) => {
      const out: string[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === l && syms[i + 1] === r) { out.push(l + r); i++; } else out.push(syms[i]!);
      }
      return { syms: out, n };
    });
  }
  const specials = ["<unk>", "<s>", "</s>"];
  const vocab = new Map<string, number>();
  for (const t of specials) vocab.set(t, vocab.size);
  for (let b = 0; b < 256; b++) vocab.set(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, vocab.size);
  for (const t of mergedTokens) if (!vocab.has(t)) vocab.set(t, vocab.size);
  for (const c of chars) if (!vocab.has(c)) vocab.set(c, vocab.size);
  const tokenizerJson = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: specials.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: SPM_SPACE }, { type: "Replace", pattern: { String: " " }, content: SPM_SPACE }] },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [{ type: "Replace", pattern: { String: SPM_SPACE }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
    },
    model: {
      type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab: Object.fromEntries(vocab), merges: mergeList,
    },
  };
  const tokenizerConfig = {
    add_bos_token: true, add_eos_token: false, bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", pad_token: null,
    legacy: true, clean_up_tokenization_spaces: false, model_max_length: 512, tokenizer_class: "LlamaTokenizer",
    chat_template: LLAMA2_CHAT_TEMPLATE,
  };
  return { tokenizerJson, tokenizerConfig, size: vocab.size };
}

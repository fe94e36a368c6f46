/**
 * Load a GGUF file (ours or llama.cpp's, llama/qwen2 arch, gpt2 (BPE) or llama (SPM) vocabulary) into a
 * runnable Model by inverting the export plan (arch/gguf-tensors.ts): the config is rebuilt
 * from `<arch>.*` keys, tensors are converted from their blocks to canonical packing inputs
 * (gguf-canonical.ts) and packed, or decoded to f32 (io/gguf.ts; the reference path), and
 * llama q/k rows un-permuted; the tokenizer is rebuilt as a HF tokenizer.json
 * object from `tokenizer.ggml.*` so @huggingface/tokenizers loads it, with the chat template.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { parseModelConfig, type ModelConfig } from "../arch/config.ts";
import { ARCHS } from "../arch/registry.ts";
import type { Backend } from "../backend/backend.ts";
import { ggufTensorPlan, unpermuteQK, type GgufTensorPlanEntry } from "../arch/gguf-tensors.ts";
import { isSpmByteToken, KNOWN_PRE_TOKENIZERS, SPM_SPACE, TOKEN_TYPE } from "../arch/gguf-vocab.ts";
import { openGguf, type GgufFile } from "../io/gguf.ts";
import { Model } from "../nn/model.ts";
import type { TensorSource } from "../nn/weights.ts";
import { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { ConfigError, FormatError } from "../util/errors.ts";
import { permuteCanonicalRows } from "./canonical.ts";
import { ggufRaw } from "./raw-read.ts";
import { ggufEmbeddingTable, ggufToCanonical } from "./gguf-canonical.ts";
import { defaultWarn, loadWeights, resolveWeightMode, type LoadOptions } from "./packed-weights.ts";

export interface LoadedGgufModel {
  /** The .gguf file. */
  dir: string;
  format: "gguf";
  cfg: ModelConfig;
  tokenizer: TextTokenizer;
  model: Model;
  weights: "packed" | "f32";
}

const opt = (f: GgufFile, key: string): number | undefined => (f.get(key) === undefined ? undefined : f.getNumber(key));

/** A HF-style config.json object from the GGUF's `<arch>.*` keys (inverse of export/gguf.ts `ggufModelKv`). */
export function ggufConfigJson(f: GgufFile): Record<string, unknown> {
  const A = f.architecture;
  const arch = Object.values(ARCHS).find((a) => a.ggufArch === A);
  if (arch === undefined) {
    throw new ConfigError("unsupported GGUF architecture", {
      file: f.path, field: "general.architecture", expected: Object.values(ARCHS).map((a) => `"${a.ggufArch}"`).join(" or "), found: JSON.stringify(A),
    });
  }
  const hidden = f.getNumber(`${A}.embedding_length`), heads = f.getNumber(`${A}.attention.head_count`);
  const embedDims = f.tensor("token_embd.weight").dims; // [H, V]
  const raw: Record<string, unknown> = {
    model_type: arch.modelTypes[0],
    hidden_size: hidden,
    intermediate_size: f.getNumber(`${A}.feed_forward_length`),
    num_hidden_layers: f.getNumber(`${A}.block_count`),
    num_attention_heads: heads,
    num_key_value_heads: opt(f, `${A}.attention.head_count_kv`) ?? heads,
    head_dim: opt(f, `${A}.attention.key_length`) ?? hidden / heads,
    max_position_embeddings: f.getNumber(`${A}.context_length`),
    rope_theta: opt(f, `${A}.rope.freq_base`) ?? 10000,
    rms_norm_eps: f.getNumber(`${A}.attention.layer_norm_rms_epsilon`),
    vocab_size: opt(f, `${A}.vocab_size`) ?? embedDims[1],
    tie_word_embeddings: !f.tensors.has("output.weight"),
    attention_bias: f.tensors.has("blk.0.attn_q.bias"),
    hidden_act: "silu",
  };
  const bos = opt(f, "tokenizer.ggml.bos_token_id"), eos = opt(f, "tokenizer.ggml.eos_token_id");
  if (bos !== undefined) raw["bos_token_id"] = bos;
  if (eos !== undefined) raw["eos_token_id"] = eos;
  if (f.get(`${A}.rope.scaling.type`)?.value === "linear") raw["rope_scaling"] = { rope_type: "linear", factor: f.getNumber(`${A}.rope.scaling.factor`) };
  if (f.tensors.has("rope_freqs.weight")) {
    throw new ConfigError("llama3 rope scaling (rope_freqs.weight) cannot be loaded from GGUF yet", {
      file: f.path, field: "rope_freqs.weight", hint: "evaluate the original HF folder instead",
    });
  }
  return raw;
}

/** HF tokenizer.json + tokenizer_config.json objects from `tokenizer.ggml.*` (gpt2 or llama model). */
export function ggufTokenizerJson(f: GgufFile): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const model = f.getString("tokenizer.ggml.model");
  if (model === "llama") return spmTokenizerJson(f);
  if (model !== "gpt2") {
    throw new ConfigError("unsupported GGUF vocabulary", {
      file: f.path, field: "tokenizer.ggml.model", expected: '"gpt2" (byte-level BPE) or "llama" (SentencePiece)', found: JSON.stringify(model),
      hint: "WordPiece, Unigram (t5) and RWKV vocabularies are not implemented",
    });
  }
  const pre = f.get("tokenizer.ggml.pre")?.type === "string" ? f.getString("tokenizer.ggml.pre") : "default";
  const known = KNOWN_PRE_TOKENIZERS.find((k) => k.pre === pre) ?? (pre === "default" ? KNOWN_PRE_TOKENIZERS[0] : undefined);
  if (known === undefined) {
    throw new ConfigError("unknown GGUF pre-tokenizer", {
      file: f.path, field: "tokenizer.ggml.pre", expected: KNOWN_PRE_TOKENIZERS.map((k) => `"${k.pre}"`).join(", "), found: JSON.stringify(pre),
    });
  }
  const tokens = f.getStringArray("tokenizer.ggml.tokens");
  const types = f.get("tokenizer.ggml.token_type") !== undefined ? f.getNumberArray("tokenizer.ggml.token_type") : [];
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  tokens.forEach((t, id) => {
    const type = types[id] ?? TOKEN_TYPE.NORMAL;
    if (type === TOKEN_TYPE.UNUSED) return;
    if (type === TOKEN_TYPE.CONTROL || type === TOKEN_TYPE.USER_DEFINED) {
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type === TOKEN_TYPE.CONTROL });
    }
    vocab[t] = id;
  });
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: known.pre === "gpt-2" };
  const preTokenizer = known.pre === "gpt-2" ? byteLevel
    : { type: "Sequence", pretokenizers: [{ type: "Split", pattern: { Regex: known.regex }, behavior: "Isolated", invert: false }, byteLevel] };
  const { postProcessor, config } = specialsJson(f, tokens);
  const json: Record<string, unknown> = {
    version: "1.0", truncation: null, padding: null, added_tokens: added, normalizer: null, pre_tokenizer: preTokenizer,
    post_processor: postProcessor,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false,
      byte_fallback: false, ignore_merges: known.ignoreMerges, vocab, merges: [...f.getStringArray("tokenizer.ggml.merges")],
    },
  };
  return { json, config };
}

/**
 * A `llama` (SPM) vocabulary as the byte-fallback BPE tokenizer.json HF converts SentencePiece
 * models to (transformers `LlamaConverter`): the merges are every split of a token into two
 * vocabulary entries, ordered by the token's score, highest first (`SentencePieceExtractor`),
 * which is the pair llama.cpp's SPM tokenizer joins first; spaces spelled ▁ by the Llama 2
 * normalizer (with the space prefix when `add_space_prefix`), byte tokens `<0xHH>` as fallback.
 */
function spmTokenizerJson(f: GgufFile): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const tokens = f.getStringArray("tokenizer.ggml.tokens");
  const types = f.get("tokenizer.ggml.token_type") !== undefined ? f.getNumberArray("tokenizer.ggml.token_type") : [];
  const scores = f.get("tokenizer.ggml.scores") !== undefined ? f.getNumberArray("tokenizer.ggml.scores") : [];
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  tokens.forEach((t, id) => {
    const type = types[id] ?? TOKEN_TYPE.NORMAL;
    if (type === TOKEN_TYPE.UNUSED) return;
    if (type === TOKEN_TYPE.CONTROL || type === TOKEN_TYPE.USER_DEFINED || type === TOKEN_TYPE.UNKNOWN) {
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type !== TOKEN_TYPE.USER_DEFINED });
    }
    if (!(t in vocab)) vocab[t] = id;
  });
  const bytes = new Set(tokens.filter(isSpmByteToken).map((t) => parseInt(t.slice(3, 5), 16)));
  const missing = Array.from({ length: 256 }, (_, b) => b).filter((b) => !bytes.has(b));
  if (missing.length > 0) {
    throw new ConfigError("the SentencePiece vocabulary lacks byte-fallback tokens", {
      file: f.path, field: "tokenizer.ggml.tokens", expected: "<0x00>..<0xFF>", found: `${missing.length} missing (first <0x${missing[0]!.toString(16).toUpperCase().padStart(2, "0")}>)`,
    });
  }
  // merges: every split of a mergeable token into two vocabulary entries, by the token's score
  const mergeable = (id: number): boolean => { const ty = types[id] ?? TOKEN_TYPE.NORMAL; return ty === TOKEN_TYPE.NORMAL || ty === TOKEN_TYPE.USER_DEFINED; };
  const merges: { l: string; r: string; score: number; id: number; lid: number; rid: number }[] = [];
  tokens.forEach((t, id) => {
    if (!mergeable(id)) return;
    const cps = [...t];
    for (let i = 1; i < cps.length; i++) {
      const l = cps.slice(0, i).join(""), r = cps.slice(i).join("");
      const lid = vocab[l], rid = vocab[r];
      if (lid !== undefined && rid !== undefined && mergeable(lid) && mergeable(rid)) merges.push({ l, r, score: scores[id] ?? 0, id, lid, rid });
    }
  });
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.lid - b.lid || a.rid - b.rid);
  const addSpacePrefix = f.get("tokenizer.ggml.add_space_prefix")?.value !== false;
  const unk = opt(f, "tokenizer.ggml.unknown_token_id");
  const { postProcessor, config } = specialsJson(f, tokens);
  const json: Record<string, unknown> = {
    version: "1.0", truncation: null, padding: null, added_tokens: added,
    normalizer: { type: "Sequence", normalizers: [...(addSpacePrefix ? [{ type: "Prepend", prepend: SPM_SPACE }] : []), { type: "Replace", pattern: { String: " " }, content: SPM_SPACE }] },
    pre_tokenizer: null,
    post_processor: postProcessor,
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: SPM_SPACE }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" },
        ...(addSpacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: "BPE", dropout: null, unk_token: unk !== undefined ? tokens[unk] ?? null : null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: merges.map((m) => `${m.l} ${m.r}`),
    },
  };
  if (unk !== undefined && tokens[unk] !== undefined) config["unk_token"] = tokens[unk];
  return { json, config };
}

/** The BOS post-processor and tokenizer_config.json fields (bos/eos token, add_bos_token, chat template) of either vocabulary. */
function specialsJson(f: GgufFile, tokens: readonly string[]): { postProcessor: Record<string, unknown> | null; config: Record<string, unknown> } {
  const bos = opt(f, "tokenizer.ggml.bos_token_id"), eos = opt(f, "tokenizer.ggml.eos_token_id");
  const addBos = f.get("tokenizer.ggml.add_bos_token")?.value === true && bos !== undefined;
  const bosTok = bos !== undefined ? tokens[bos] : undefined;
  const postProcessor = addBos && bosTok !== undefined
    ? {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: bosTok, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
        pair: [{ SpecialToken: { id: bosTok, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: bosTok, type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
        special_tokens: { [bosTok]: { id: bosTok, ids: [bos], tokens: [bosTok] } },
      }
    : null;
  const config: Record<string, unknown> = { add_bos_token: addBos };
  if (bosTok !== undefined) config["bos_token"] = bosTok;
  if (eos !== undefined && tokens[eos] !== undefined) config["eos_token"] = tokens[eos];
  const ct = f.get("tokenizer.chat_template");
  if (ct?.type === "string") config["chat_template"] = ct.value;
  return { postProcessor, config };
}

/** GGML types Backend.repack reads straight from the blocks (the rest go through gguf-canonical.ts). */
const REPACK_TYPES = ["Q4_0", "Q4_1", "Q4_K", "Q8_0"] as const;
const isRepackType = (t: string): t is (typeof REPACK_TYPES)[number] => (REPACK_TYPES as readonly string[]).includes(t);

/** GGUF tensors served under HF names, decoded to f32, q/k rows back in HF order. */
export function ggufSource(f: GgufFile, cfg: ModelConfig): TensorSource {
  const byHf = new Map<string, GgufTensorPlanEntry>();
  for (const p of ggufTensorPlan(cfg, "f32")) if (p.hf !== null) byHf.set(p.hf, p);
  const entry = (name: string): GgufTensorPlanEntry | undefined => {
    const p = byHf.get(name);
    return p !== undefined && f.tensors.has(p.gguf) ? p : undefined;
  };
  const need = (name: string): GgufTensorPlanEntry => {
    const p = entry(name);
    if (p === undefined) throw new FormatError(`tensor for "${name}" not found in GGUF file`, { file: f.path, field: name });
    return p;
  };
  return {
    origin: f.path,
    has: (name) => entry(name) !== undefined,
    shape: (name) => f.shape(need(name).gguf),
    readF32Sync: (name) => {
      const p = need(name);
      const x = f.readF32Sync(p.gguf);
      return p.permuteHeads === undefined ? x : unpermuteQK(x, p.permuteHeads, p.shape.length === 2 ? p.shape[1]! : 1);
    },
    readCanonical: (name, buffers) => {
      const p = need(name);
      const [N, K] = f.shape(p.gguf) as [number, number];
      const bytes = buffers !== undefined ? ggufRaw(f, p.gguf, buffers) : f.readBytesSync(p.gguf);
      const c = ggufToCanonical(f.tensor(p.gguf).type.name, bytes, N, K, { file: f.path, field: p.gguf }, buffers);
      return p.permuteHeads === undefined ? c : permuteCanonicalRows(c, qkUnpermuteRows(N, p.permuteHeads));
    },
    readSource: (name, buffers) => {
      const p = need(name);
      const type = f.tensor(p.gguf).type.name;
      if (!isRepackType(type)) return null;
      const [N, K] = f.shape(p.gguf) as [number, number];
      const rows = p.permuteHeads === undefined ? null : qkUnpermuteRows(N, p.permuteHeads);
      return { kind: "gguf", type, bytes: ggufRaw(f, p.gguf, buffers), rows, N, K };
    },
    readEmbedding: (name) => {
      const p = need(name);
      const t = f.tensor(p.gguf);
      if (t.type.name === "F32") return f.readF32Sync(p.gguf);
      const [V, H] = f.shape(p.gguf) as [number, number];
      return ggufEmbeddingTable(t.type.name, f.readBytesSync(p.gguf), V, H, { file: f.path, field: p.gguf });
    },
  };
}

/** from[hfRow] = GGUF row holding it: the inverse of the llama Q/K permutation (arch/gguf-tensors.ts permuteQK) as a row map. */
export function qkUnpermuteRows(rows: number, heads: number): Int32Array {
  const half = rows / heads / 2;
  const from = new Int32Array(rows);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < 2; j++) for (let i = 0; i < half; i++) from[h * 2 * half + j * half + i] = h * 2 * half + i * 2 + j;
  }
  return from;
}

export function loadGgufTokenizer(f: GgufFile, eosFromModel: number[]): TextTokenizer {
  const { json, config } = ggufTokenizerJson(f);
  let tok: Tokenizer;
  try { tok = new Tokenizer(json, config); } catch (e) {
    throw new ConfigError("the GGUF vocabulary could not be loaded as a tokenizer", { file: f.path, field: "tokenizer.ggml.tokens", found: (e as Error).message });
  }
  return new TextTokenizer(tok, config, json, eosFromModel);
}

/** `quantize-llm eval|chat model.gguf`: a LoadedModel-compatible object. */
export async function loadGgufModel(path: string, backend: Backend, opts: LoadOptions = {}): Promise<LoadedGgufModel> {
  const mode = resolveWeightMode(opts.weights, backend);
  const f = openGguf(path);
  try {
    const cfg = parseModelConfig(ggufConfigJson(f), path);
    const weights = loadWeights(cfg, ggufSource(f, cfg), backend, mode, opts.warn ?? defaultWarn);
    const tokenizer = loadGgufTokenizer(f, cfg.eosTokenIds);
    return { dir: path, format: "gguf", cfg, tokenizer, model: new Model(cfg, weights, backend), weights: mode };
  } finally {
    f.close();
  }
}

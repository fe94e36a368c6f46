/**
 * GGUF tokenizer metadata (`tokenizer.ggml.*`) from a HF tokenizer.json, the way
 * convert_hf_to_gguf.py writes it (`_set_vocab_gpt2`, `get_vocab_base`, gguf-py `SpecialVocab`).
 *
 * Byte-level BPE → llama.cpp's `gpt2` vocabulary; byte-fallback BPE (SentencePiece-style:
 * Llama 2, Mistral, TinyLlama) → its `llama` (SPM) vocabulary with scores, token types and
 * the 256 byte tokens (`spmTokenizerKv`). llama.cpp does not read the pre-tokenizer regex
 * from the file: it picks a built-in one from `tokenizer.ggml.pre` (llama-vocab.cpp,
 * `llm_tokenizer_bpe`), so we map the tokenizer's regex to the name whose built-in regex
 * is the same, and refuse tokenizers whose regex llama.cpp does not implement.
 */
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { ConfigError } from "../util/errors.ts";
import { kv, type GgufValue } from "../io/gguf.ts";
import { GPT2_REGEX, KNOWN_PRE_TOKENIZERS, SPM_SPACE, spmByteToken, TOKEN_TYPE } from "../arch/gguf-vocab.ts";

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

export interface GgufTokenizerMeta {
  kvs: [string, GgufValue][];
  /** The pre-tokenizer name chosen. */
  pre: string;
  warnings: string[];
}

/**
 * Tokenizer KV pairs for a model whose embedding has `vocabSize` rows. Token ids without a
 * token (the embedding is larger than the vocabulary) become "[PAD<id>]" of type UNUSED.
 */
/** What the exporter needs of a tokenizer (a TextTokenizer, or a stub in tests). */
export type TokenizerForGguf = Pick<TextTokenizer, "json" | "config" | "bosId" | "eosIds" | "encode" | "tokenToId">;

type Refuse = (summary: string, field: string, found: string, hint?: string) => ConfigError;

export function ggufTokenizerKv(tok: TokenizerForGguf, vocabSize: number, file: string): GgufTokenizerMeta {
  const tj = tok.json;
  const refuse: Refuse = (summary, field, found, hint) =>
    new ConfigError(`cannot export this tokenizer to GGUF: ${summary}`, { file, field, found, ...(hint !== undefined ? { hint } : {}) });
  const model = tj["model"];
  if (!isObject(model)) throw refuse("tokenizer.json has no model", "model", typeof model);
  if (model["type"] !== "BPE") {
    throw refuse("only BPE tokenizers (byte-level, or SentencePiece-style with byte fallback) are supported", "model.type", JSON.stringify(model["type"]),
      "Unigram and WordPiece tokenizers are not implemented; use llama.cpp's convert_hf_to_gguf.py for those models");
  }
  // Byte-fallback BPE is how HF spells a SentencePiece BPE model (Llama 2, Mistral, TinyLlama): llama.cpp's "llama" vocabulary.
  if (model["byte_fallback"] === true) return spmTokenizerKv(tok, model, vocabSize, refuse);
  const { regex, where } = byteLevelRegex(tj, refuse);
  const known = KNOWN_PRE_TOKENIZERS.find((k) => k.regex === regex);
  if (known === undefined) {
    throw refuse("llama.cpp has no built-in pre-tokenizer with this tokenizer's regex", where, JSON.stringify(regex),
      `llama.cpp selects its pre-tokenizer by name; known regexes: ${KNOWN_PRE_TOKENIZERS.map((k) => `"${k.pre}"`).join(", ")}`);
  }
  const warnings: string[] = [];
  const normalizer = tj["normalizer"];
  const normType = isObject(normalizer) ? normalizer["type"] : null;
  if (!known.normalizers.includes(typeof normType === "string" ? normType : null)) {
    throw refuse(`normalizer ${JSON.stringify(normType)} has no equivalent in llama.cpp's "${known.pre}" pre-tokenizer`, "normalizer", JSON.stringify(normType));
  }
  if (normType === "NFC") warnings.push(`the tokenizer's NFC normalizer is not applied by llama.cpp ("${known.pre}"): non-NFC input may tokenize differently`);
  const ignoreMerges = model["ignore_merges"] === true;
  if (ignoreMerges !== known.ignoreMerges) {
    warnings.push(`tokenizer.json has ignore_merges=${ignoreMerges} but llama.cpp's "${known.pre}" uses ${known.ignoreMerges}: words that are whole vocabulary entries may tokenize differently`);
  }
  const { list, types } = vocabTable(tj, model, vocabSize, refuse);
  const kvs: [string, GgufValue][] = [
    ["tokenizer.ggml.model", kv.str("gpt2")],
    ["tokenizer.ggml.pre", kv.str(known.pre)],
    ["tokenizer.ggml.tokens", kv.strings(list)],
    ["tokenizer.ggml.token_type", kv.i32s(types)],
    ["tokenizer.ggml.merges", kv.strings(mergeList(model, refuse))],
    ...specialKvs(tok),
  ];
  return { kvs, pre: known.pre, warnings };
}

/**
 * llama.cpp's `llama` (SPM) vocabulary from a byte-fallback BPE tokenizer.json (what
 * convert_hf_to_gguf.py writes from tokenizer.model). llama.cpp's SPM tokenizer
 * (llama-vocab.cpp `llm_tokenizer_spm`) starts from single characters and repeatedly joins
 * the adjacent pair whose concatenation is the vocabulary entry of highest score, then
 * spells what is not in the vocabulary as `<0xHH>` byte tokens. HF's BPE applies the merge of
 * lowest rank; so the score of a token is minus the rank of the first merge that makes it,
 * which makes both pick the same pair at every step. Tokens no merge makes (single characters)
 * rank after every merged one.
 */
function spmTokenizerKv(tok: TokenizerForGguf, model: Json, vocabSize: number, refuse: Refuse): GgufTokenizerMeta {
  const tj = tok.json;
  const warnings: string[] = [];
  const { addSpacePrefix, splitAtSpaces } = spmLayout(tj, refuse);
  if (splitAtSpaces) {
    warnings.push(`the Metaspace pre-tokenizer splits at every ${SPM_SPACE} (split: true) and llama.cpp does not: runs of spaces may tokenize differently`);
  }
  const { list, types } = vocabTable(tj, model, vocabSize, refuse);
  const vocab = model["vocab"] as Json;
  for (let b = 0; b < 256; b++) {
    const t = spmByteToken(b);
    if (typeof vocab[t] !== "number") {
      throw refuse(`byte-fallback token ${t} is missing from the vocabulary`, "model.vocab", `no ${JSON.stringify(t)}`,
        "llama.cpp spells characters outside the vocabulary as the 256 tokens <0x00>..<0xFF>; all of them must exist");
    }
    types[vocab[t] as number] = TOKEN_TYPE.BYTE;
  }
  const unkName = model["unk_token"];
  const unk = typeof unkName === "string" ? vocab[unkName] : undefined;
  if (typeof unk === "number") types[unk] = TOKEN_TYPE.UNKNOWN;
  const merges = mergeList(model, refuse);
  const rank = new Map<string, number>();
  merges.forEach((m, r) => {
    const merged = m.replace(" ", "");
    if (!rank.has(merged)) rank.set(merged, r);
  });
  const scores = list.map((t, id) => {
    if (types[id] !== TOKEN_TYPE.NORMAL && types[id] !== TOKEN_TYPE.USER_DEFINED) return 0;
    const r = rank.get(t);
    return r !== undefined ? -r : -(merges.length + id);
  });
  const kvs: [string, GgufValue][] = [
    ["tokenizer.ggml.model", kv.str("llama")],
    ["tokenizer.ggml.tokens", kv.strings(list)],
    ["tokenizer.ggml.scores", kv.f32s(scores)],
    ["tokenizer.ggml.token_type", kv.i32s(types)],
    ["tokenizer.ggml.add_space_prefix", kv.bool(addSpacePrefix)],
    ...specialKvs(tok),
  ];
  return { kvs, pre: "default", warnings };
}

/**
 * How the tokenizer spells spaces: the legacy normalizer (Prepend ▁ + Replace " " → ▁, Llama 2,
 * TinyLlama) or a Metaspace pre-tokenizer (Mistral). Both prefix the text with a space, as
 * llama.cpp's `add_space_prefix` does.
 */
function spmLayout(tj: Json, refuse: Refuse): { addSpacePrefix: boolean; splitAtSpaces: boolean } {
  const norm = tj["normalizer"], pre = tj["pre_tokenizer"];
  const steps = norm === null || norm === undefined ? [] : isObject(norm) && norm["type"] === "Sequence" && Array.isArray(norm["normalizers"]) ? norm["normalizers"] : [norm];
  let prepend = false, replace = false;
  for (const [i, n] of steps.entries()) {
    const field = steps.length === 1 && !(isObject(norm) && norm["type"] === "Sequence") ? "normalizer" : `normalizer.normalizers[${i}]`;
    if (isObject(n) && n["type"] === "Prepend" && n["prepend"] === SPM_SPACE) prepend = true;
    else if (isObject(n) && n["type"] === "Replace" && isObject(n["pattern"]) && n["pattern"]["String"] === " " && n["content"] === SPM_SPACE) replace = true;
    else throw refuse("a normalizer llama.cpp's SentencePiece tokenizer has no equivalent of", field, JSON.stringify(n), `supported: Prepend "${SPM_SPACE}" and Replace " " → "${SPM_SPACE}" (Llama 2 layout)`);
  }
  if (pre === null || pre === undefined) {
    if (!replace) throw refuse(`spaces are not spelled as ${SPM_SPACE} (no Replace normalizer, no Metaspace pre-tokenizer)`, "normalizer", JSON.stringify(norm));
    return { addSpacePrefix: prepend, splitAtSpaces: false };
  }
  if (isObject(pre) && pre["type"] === "Metaspace" && pre["replacement"] === SPM_SPACE && !prepend && !replace) {
    const scheme = pre["prepend_scheme"] ?? (pre["add_prefix_space"] === false ? "never" : "always");
    if (scheme !== "first" && scheme !== "always" && scheme !== "never") throw refuse("unknown Metaspace prepend_scheme", "pre_tokenizer.prepend_scheme", JSON.stringify(scheme));
    return { addSpacePrefix: scheme !== "never", splitAtSpaces: pre["split"] !== false };
  }
  throw refuse("unsupported pre-tokenizer for a SentencePiece-style tokenizer", "pre_tokenizer", JSON.stringify(pre)?.slice(0, 200) ?? "null",
    `supported: none (with the Prepend/Replace normalizer), or Metaspace with replacement "${SPM_SPACE}"`);
}

/** Tokens and types in id order (convert_hf_to_gguf.py `get_vocab_base`); ids without a token become "[PAD<id>]" UNUSED. */
function vocabTable(tj: Json, model: Json, vocabSize: number, refuse: Refuse): { list: string[]; types: number[] } {
  const tokens = new Array<string | undefined>(vocabSize);
  const types = new Array<number>(vocabSize).fill(TOKEN_TYPE.NORMAL);
  const place = (id: unknown, content: string, type: number, field: string): void => {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocabSize) {
      throw refuse(`token id out of range for the model's vocabulary (${vocabSize} embedding rows)`, field, `${JSON.stringify(content)} → ${String(id)}`,
        "config.json vocab_size must cover every tokenizer id");
    }
    const prev = tokens[id as number];
    if (prev !== undefined && prev !== content) throw refuse("two tokens share one id", field, `${JSON.stringify(prev)} and ${JSON.stringify(content)} → ${String(id)}`);
    tokens[id as number] = content;
    types[id as number] = type;
  };
  const vocab = model["vocab"];
  if (!isObject(vocab)) throw refuse("model.vocab is not an object", "model.vocab", typeof vocab);
  for (const [content, id] of Object.entries(vocab)) place(id, content, TOKEN_TYPE.NORMAL, "model.vocab");
  for (const [i, t] of (Array.isArray(tj["added_tokens"]) ? tj["added_tokens"] : []).entries()) {
    if (!isObject(t) || typeof t["content"] !== "string") throw refuse("malformed added token", `added_tokens[${i}]`, JSON.stringify(t));
    // convert_hf_to_gguf.py: special (or "<|...|>"-looking) added tokens are CONTROL, others USER_DEFINED.
    const looksSpecial = t["content"].startsWith("<|") && t["content"].endsWith("|>");
    place(t["id"], t["content"], t["special"] === true || looksSpecial ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED, `added_tokens[${i}]`);
  }
  const list: string[] = Array.from({ length: vocabSize }, (_, i) => {
    const t = tokens[i];
    if (t !== undefined) return t;
    types[i] = TOKEN_TYPE.UNUSED;
    return `[PAD${i}]`;
  });
  return { list, types };
}

/** Merges as "a b" strings (newer tokenizers store [a, b] pairs). */
function mergeList(model: Json, refuse: Refuse): string[] {
  const rawMerges = model["merges"];
  if (!Array.isArray(rawMerges)) throw refuse("model.merges is not an array", "model.merges", typeof rawMerges);
  return rawMerges.map((m, i) => {
    if (typeof m === "string") return m;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") {
      if (m[0].includes(" ") || m[1].includes(" ")) throw refuse("a merge contains a space (cannot be written as \"a b\")", `model.merges[${i}]`, JSON.stringify(m));
      return `${m[0]} ${m[1]}`;
    }
    throw refuse("malformed merge", `model.merges[${i}]`, JSON.stringify(m));
  });
}

/** Special ids, add_bos/add_eos and chat templates (gguf-py `SpecialVocab`). */
function specialKvs(tok: TokenizerForGguf): [string, GgufValue][] {
  const idOf = (key: string): number | undefined => {
    const v = tok.config[key];
    const s = typeof v === "string" ? v : isObject(v) && typeof v["content"] === "string" ? v["content"] : undefined;
    return s === undefined ? undefined : tok.tokenToId(s);
  };
  const probe = "a";
  const plain = tok.encode(probe, { addSpecial: false });
  const withSpecial = tok.encode(probe, { addSpecial: true });
  const addBos = tok.bosId !== null;
  const addEos = withSpecial.length > plain.length && withSpecial.at(-1) !== plain.at(-1);
  const bos = tok.bosId ?? idOf("bos_token");
  const eos = idOf("eos_token") ?? tok.eosIds[0] ?? (addEos ? withSpecial.at(-1) : undefined);
  const pad = idOf("pad_token");
  const unk = idOf("unk_token");
  const kvs: [string, GgufValue][] = [];
  if (bos !== undefined) kvs.push(["tokenizer.ggml.bos_token_id", kv.u32(bos)]);
  if (eos !== undefined) kvs.push(["tokenizer.ggml.eos_token_id", kv.u32(eos)]);
  if (unk !== undefined) kvs.push(["tokenizer.ggml.unknown_token_id", kv.u32(unk)]);
  if (pad !== undefined) kvs.push(["tokenizer.ggml.padding_token_id", kv.u32(pad)]);
  kvs.push(["tokenizer.ggml.add_bos_token", kv.bool(addBos)], ["tokenizer.ggml.add_eos_token", kv.bool(addEos)]);
  kvs.push(...chatTemplateKvs(tok.config["chat_template"]));
  return kvs;
}

/** The pre-tokenizer regex of a byte-level BPE tokenizer.json, and where it was found. */
function byteLevelRegex(tj: Json, refuse: Refuse): { regex: string; where: string } {
  const pt = tj["pre_tokenizer"];
  const decoder = tj["decoder"];
  const isByteLevel = (x: unknown): x is Json => isObject(x) && x["type"] === "ByteLevel";
  const decoderOk = isByteLevel(decoder) || (isObject(decoder) && decoder["type"] === "Sequence" && Array.isArray(decoder["decoders"]) && decoder["decoders"].some(isByteLevel));
  if (!decoderOk) throw refuse("not a byte-level BPE tokenizer (no ByteLevel decoder)", "decoder", JSON.stringify(isObject(decoder) ? decoder["type"] : decoder));
  const noPrefixSpace = (b: Json, field: string): void => {
    if (b["add_prefix_space"] === true) {
      throw refuse("ByteLevel add_prefix_space=true has no equivalent in llama.cpp's BPE tokenizer", `${field}.add_prefix_space`, "true");
    }
  };
  if (isByteLevel(pt)) {
    noPrefixSpace(pt, "pre_tokenizer");
    if (pt["use_regex"] === false) throw refuse("ByteLevel pre-tokenizer without a regex", "pre_tokenizer.use_regex", "false");
    return { regex: GPT2_REGEX, where: "pre_tokenizer (ByteLevel, use_regex)" };
  }
  if (isObject(pt) && pt["type"] === "Sequence" && Array.isArray(pt["pretokenizers"])) {
    const parts = pt["pretokenizers"] as unknown[];
    const [split, bl] = parts;
    if (parts.length === 2 && isObject(split) && split["type"] === "Split" && isByteLevel(bl) && bl["use_regex"] === false) {
      noPrefixSpace(bl, "pre_tokenizer.pretokenizers[1]");
      const pattern = split["pattern"];
      const re = isObject(pattern) ? pattern["Regex"] : undefined;
      if (typeof re !== "string" || split["behavior"] !== "Isolated" || split["invert"] === true) {
        throw refuse("unsupported Split pre-tokenizer", "pre_tokenizer.pretokenizers[0]", JSON.stringify(split),
          "llama.cpp implements Split with a regex, behavior Isolated, invert false");
      }
      return { regex: re, where: "pre_tokenizer.pretokenizers[0].pattern.Regex" };
    }
  }
  throw refuse("unsupported pre-tokenizer layout", "pre_tokenizer", JSON.stringify(pt)?.slice(0, 200) ?? "null",
    "supported: ByteLevel (GPT-2 regex), or Sequence[Split(regex), ByteLevel(use_regex=false)]");
}

/** `tokenizer.chat_template` (+ named templates, as gguf-py `SpecialVocab` writes them). */
function chatTemplateKvs(ct: unknown): [string, GgufValue][] {
  if (typeof ct === "string") return [["tokenizer.chat_template", kv.str(ct)]];
  if (!Array.isArray(ct)) return [];
  const out: [string, GgufValue][] = [];
  const names: string[] = [];
  for (const t of ct) {
    if (!isObject(t) || typeof t["name"] !== "string" || typeof t["template"] !== "string") continue;
    if (t["name"] === "default") out.push(["tokenizer.chat_template", kv.str(t["template"])]);
    else { out.push([`tokenizer.chat_template.${t["name"]}`, kv.str(t["template"])]); names.push(t["name"]); }
  }
  if (names.length > 0) out.push(["tokenizer.chat_templates", kv.strings(names)]);
  return out;
}

/**
 * GGUF vocabulary tables shared by the exporter (export/gguf-tokenizer.ts) and the GGUF
 * loader (load/gguf-model.ts): token types, the pre-tokenizers llama.cpp implements, and the
 * spelling of SentencePiece (`llama`) vocabularies.
 * Architecture data like arch/gguf-tensors.ts, so the loader never imports the exporter.
 */

/** `tokenizer.ggml.token_type` values (gguf-py `TokenType`, llama.h `llama_token_type`). */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** GPT-2's pattern, built into the HF ByteLevel pre-tokenizer when `use_regex` is true. */
export const GPT2_REGEX = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;
/** Llama 3's Split pattern (tokenizer.json of meta-llama/Meta-Llama-3-8B). */
export const LLAMA3_REGEX = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
/** Qwen2's Split pattern (tokenizer.json of Qwen/Qwen2-7B): Llama 3's with single digits. */
export const QWEN2_REGEX = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

interface KnownPre {
  /** `tokenizer.ggml.pre` value (llama-vocab.cpp `llama_vocab::impl::load`). */
  pre: string;
  regex: string;
  /** llama.cpp's `ignore_merges` for this pre-tokenizer. */
  ignoreMerges: boolean;
  /** Normalizers the HF tokenizer may have that llama.cpp's pre-tokenizer stands in for. */
  normalizers: readonly (string | null)[];
}

/**
 * Pre-tokenizer regexes llama.cpp implements, by the name it knows them under.
 * "gpt-2" (not "gpt2": llama.cpp rejects that as an unknown pre-tokenizer) selects
 * LLAMA_VOCAB_PRE_TYPE_GPT2, whose regex is GPT-2's (handled by
 * `unicode_regex_split_custom_gpt2`, which also implements the trailing `\s+`).
 */
export const KNOWN_PRE_TOKENIZERS: readonly KnownPre[] = [
  { pre: "gpt-2", regex: GPT2_REGEX, ignoreMerges: false, normalizers: [null] },
  { pre: "llama-bpe", regex: LLAMA3_REGEX, ignoreMerges: true, normalizers: [null] },
  { pre: "qwen2", regex: QWEN2_REGEX, ignoreMerges: false, normalizers: [null, "NFC"] },
];


/** SentencePiece's space symbol (U+2581), what `llama` (SPM) vocabularies spell a space as. */
export const SPM_SPACE = "\u2581";
/** `<0x0A>`: the byte-fallback token of byte `b` in an SPM vocabulary (llama.cpp `byte_to_token`). */
export function spmByteToken(b: number): string { return `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`; }
/** True for a byte-fallback token spelling `<0xHH>` (gguf-py `LlamaHfVocab.get_token_type`). */
export function isSpmByteToken(t: string): boolean { return /^<0x[0-9A-Fa-f]{2}>$/.test(t); }

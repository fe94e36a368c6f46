/**
 * Issue 10: GGUF export of SentencePiece-style (byte-fallback BPE, Llama 2 layout) tokenizers
 * as llama.cpp's `llama` (SPM) vocabulary: scores, token types, byte-fallback tokens. On a
 * generated SPM tokenizer, llama.cpp's own tokenizer (node-llama-cpp) must tokenize a test
 * text (words, runs of spaces, newlines, characters outside the vocabulary) exactly as the HF
 * tokenizer does, and loadGgufModel must read the vocabulary back to the same tokenizer.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { TOKEN_TYPE } from "../../src/arch/gguf-vocab.ts";
import { selectBackend } from "../../src/backend/select.ts";
import { openGguf } from "../../src/io/gguf.ts";
import { loadGgufModel } from "../../src/load/gguf-model.ts";
import { loadTokenizer, type TextTokenizer } from "../../src/tokenizer/tokenizer.ts";
import { runMain } from "../cli/run-main.ts";
import { makeTinyModel, type TinyModel } from "../helpers/tiny-model.ts";
import { openLlamaRef, type LlamaRef } from "./llama-ref.ts";

const TEXT = [
  "The company said that the president of the board was there, and then it rained.",
  "  Two spaces,   three spaces; a tab\there.\nA new line\n\nand a blank one.",
  "Outside the vocabulary: naïve café, Ærøskøbing, 東京, 🙂 and ½ — bytes.",
].join(" ");

let tmp: string;
let model: TinyModel;
let hf: TextTokenizer;
let gguf: string;
let ref: LlamaRef;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "qllm-spm-"));
  model = await makeTinyModel({ modelType: "llama", hidden: 32, intermediate: 64, layers: 1, heads: 4, seed: 5, tokenizer: "spm", dir: join(tmp, "spm-model") });
  hf = loadTokenizer(model.dir, model.cfg.eosTokenIds);
  gguf = join(tmp, "spm.gguf");
  const r = await runMain("export", model.dir, "--format", "gguf", "--type", "f32", "-o", gguf);
  expect(r.status, r.stderr).toBe(0);
  ref = await openLlamaRef(gguf, { contextSize: 256, threads: 1, vocab: model.cfg.vocabSize });
}, 120_000);
afterAll(async () => {
  await ref?.dispose();
  if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
});

describe("SentencePiece (llama) GGUF vocabulary", () => {
  test("the test text really exercises merges and the byte fallback", () => {
    const ids = hf.encode(TEXT, { addSpecial: false });
    expect(ids.some((id) => id >= 3 && id <= 258)).toBe(true); // byte tokens
    expect(ids.some((id) => (hf.idToToken(id) ?? "").length >= 3)).toBe(true); // merged pieces
  });

  test("written as tokenizer.ggml.model = llama with scores, token types and the 256 byte tokens", () => {
    const f = openGguf(gguf);
    try {
      expect(f.getString("tokenizer.ggml.model")).toBe("llama");
      const tokens = f.getStringArray("tokenizer.ggml.tokens"), types = f.getNumberArray("tokenizer.ggml.token_type"), scores = f.getNumberArray("tokenizer.ggml.scores");
      expect(tokens.length).toBe(model.cfg.vocabSize);
      expect(scores.length).toBe(tokens.length);
      expect(types.slice(0, 3)).toEqual([TOKEN_TYPE.UNKNOWN, TOKEN_TYPE.CONTROL, TOKEN_TYPE.CONTROL]);
      expect(tokens[3 + 0x0a]).toBe("<0x0A>");
      expect(types.slice(3, 259).every((t) => t === TOKEN_TYPE.BYTE)).toBe(true);
      // the first merge's piece has the highest score of the normal tokens
      const tj = hf.json["model"] as { merges: string[] };
      const first = tj.merges[0]!.replace(" ", "");
      const normal = tokens.map((_, i) => i).filter((i) => types[i] === TOKEN_TYPE.NORMAL);
      expect(Math.max(...normal.map((i) => scores[i]!))).toBe(scores[tokens.indexOf(first)]);
      expect(f.get("tokenizer.ggml.add_space_prefix")?.value).toBe(true);
      expect(f.getNumber("tokenizer.ggml.bos_token_id")).toBe(1);
      expect(f.getNumber("tokenizer.ggml.eos_token_id")).toBe(2);
    } finally { f.close(); }
  });

  test("llama.cpp's tokenizer gives the HF tokenizer's ids, with and without BOS, and detokenizes back", () => {
    const mine = hf.encode(TEXT, { addSpecial: false });
    expect(ref.model.tokenize(TEXT, false)).toEqual(mine);
    expect(ref.model.tokenize(TEXT, true)).toEqual(mine); // the text holds no special-token strings
    for (const line of TEXT.split(/(?<=[.;,])/)) expect(ref.model.tokenize(line, false)).toEqual(hf.encode(line, { addSpecial: false }));
    expect(hf.decode(mine)).toBe(TEXT);
  });

  test("loadGgufModel reads the vocabulary back: same ids, same text", async () => {
    const g = await loadGgufModel(gguf, selectBackend({ backend: "ref" }));
    expect(g.tokenizer.encode(TEXT, { addSpecial: false })).toEqual(hf.encode(TEXT, { addSpecial: false }));
    expect(g.tokenizer.encode(TEXT, { addSpecial: true })).toEqual(hf.encode(TEXT, { addSpecial: true }));
    expect(g.tokenizer.bosId).toBe(1);
    expect(g.tokenizer.decode(hf.encode(TEXT, { addSpecial: false }))).toBe(TEXT);
    expect(g.tokenizer.chatTemplate).toBe(hf.chatTemplate);
  });

  test("rtn --format gguf of the SPM model is not refused for its tokenizer (checked before compute)", async () => {
    const out = join(tmp, "q.gguf");
    const r = await runMain("rtn", model.dir, "--format", "gguf", "--group-size", "32", "-o", out, "--no-eval");
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(readdirSync(tmp).filter((n) => n.includes(".partial"))).toEqual([]);
  });
});

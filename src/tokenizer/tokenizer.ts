/**
 * Tokenizer and chat template, loaded offline from a model folder's
 * tokenizer.json + tokenizer_config.json via @huggingface/tokenizers and
 * @huggingface/jinja.
 */
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { ConfigError } from "../util/errors.ts";

export interface ChatMessage { role: "system" | "user" | "assistant"; content: string }

export class TextTokenizer {
  /** Id prepended by `encode(text, { addSpecial: true })`, or null when the tokenizer adds none. */
  readonly bosId: number | null;
  readonly eosIds: number[];
  readonly chatTemplate: string | null;
  private readonly template: Template | null;

  constructor(
    private readonly tok: Tokenizer,
    readonly config: Record<string, unknown>,
    /** Raw tokenizer.json (the GGUF exporter copies vocab and merges from it). */
    readonly json: Record<string, unknown>,
    eosFromModel: number[],
  ) {
    // Detect BOS empirically: what does the post-processor add in front of a plain word?
    const plain = tok.encode("a", { add_special_tokens: false }).ids;
    const withSpecial = tok.encode("a", { add_special_tokens: true }).ids;
    this.bosId = withSpecial.length > plain.length && withSpecial[0] !== plain[0] ? withSpecial[0]! : null;
    const eosTok = tokenString(config["eos_token"]);
    const eosId = eosTok !== null ? tok.token_to_id(eosTok) : undefined;
    this.eosIds = [...new Set([...eosFromModel, ...(eosId !== undefined ? [eosId] : [])])];
    const ct = config["chat_template"];
    this.chatTemplate = typeof ct === "string" ? ct : null;
    this.template = this.chatTemplate !== null ? new Template(this.chatTemplate) : null;
  }

  get vocabSize(): number { return this.tok.get_vocab(true).size; }

  /** Token ids; `addSpecial` applies the tokenizer's post-processor (e.g. BOS). */
  encode(text: string, opts: { addSpecial?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecial ?? true }).ids;
  }

  decode(ids: number[], opts: { skipSpecial?: boolean } = {}): string {
    return this.tok.decode(ids, { skip_special_tokens: opts.skipSpecial ?? false });
  }

  tokenToId(token: string): number | undefined { return this.tok.token_to_id(token); }
  idToToken(id: number): string | undefined { return this.tok.id_to_token(id); }

  /** Render the chat template (transformers' apply_chat_template semantics). */
  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt = true): string {
    if (!this.template) {
      throw new ConfigError("the model has no chat template", {
        field: "tokenizer_config.json: chat_template", expected: "a Jinja chat template", found: "none",
        hint: "use a plain prompt instead of chat, or add a chat_template to tokenizer_config.json",
      });
    }
    return this.template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: tokenString(this.config["bos_token"]) ?? "",
      eos_token: tokenString(this.config["eos_token"]) ?? "",
    });
  }
}

/** tokenizer_config.json spells special tokens as strings or {content: ...}. */
function tokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return null;
}

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try { text = readFileSync(file, "utf8"); } catch (e) {
    throw new ConfigError("cannot read tokenizer file", { file, found: (e as Error).message });
  }
  try {
    const v: unknown = JSON.parse(text);
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
    return v as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError("tokenizer file is not a valid JSON object", { file, found: (e as Error).message });
  }
}

export function loadTokenizer(dir: string, eosFromModel: number[] = []): TextTokenizer {
  const tj = join(dir, "tokenizer.json");
  if (!existsSync(tj)) {
    throw new ConfigError("model folder has no tokenizer.json", {
      file: tj, expected: "a Hugging Face fast-tokenizer file", found: "no such file",
      hint: "copy tokenizer.json (and tokenizer_config.json) from the original model folder",
    });
  }
  const tc = join(dir, "tokenizer_config.json");
  const json = readJson(tj);
  const config = existsSync(tc) ? readJson(tc) : {};
  let tok: Tokenizer;
  try { tok = new Tokenizer(json, config); } catch (e) {
    throw new ConfigError("tokenizer.json could not be loaded", { file: tj, found: (e as Error).message, hint: "is it a tokenizers ≥ 0.13 file?" });
  }
  return new TextTokenizer(tok, config, json, eosFromModel);
}

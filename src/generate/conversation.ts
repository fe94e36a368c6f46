/**
 * A multi-turn conversation on one Session: the chat template renders the messages,
 * and the tokens of the turns already answered stay in the KV cache, so each turn
 * prefills only its new tokens. When the context fills up, the oldest turns are
 * dropped (the system prompt is kept) before answering, and the caller is told.
 */
import type { ChatMessage, TextTokenizer } from "../tokenizer/tokenizer.ts";
import { UsageError } from "../util/errors.ts";
import { generate, type GenerateRequest, type GenerateResult, type Session } from "./engine.ts";

/** End-of-turn tokens of the chat templates we know, beyond the model's EOS ids. */
const END_OF_TURN_TOKENS = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"];

/** The ids that end an answer: the model's EOS ids and the template's end-of-turn tokens. */
export function endOfTurnIds(tok: TextTokenizer): number[] {
  const ids = END_OF_TURN_TOKENS.map((t) => tok.tokenToId(t)).filter((x): x is number => x !== undefined);
  return [...new Set([...tok.eosIds, ...ids])];
}

/** Prompt ids of a chat request, as transformers' apply_chat_template(tokenize=True) builds them. */
export function chatPromptIds(tok: TextTokenizer, messages: ChatMessage[]): number[] {
  // A rendered template already holds its special tokens (BOS included when the template has it).
  return tok.encode(tok.applyChatTemplate(messages, true), { addSpecial: false });
}

export type TurnOptions = Omit<GenerateRequest, "prompt" | "stopIds"> & {
  stopIds?: readonly number[];
  /** Told, before the answer starts, how many old turns were dropped to make room. */
  onDropped?: (turns: number) => void;
};

export interface TurnResult extends GenerateResult {
  /** Oldest user/assistant turns removed to make room (0 = none). */
  droppedTurns: number;
}

/**
 * The context-overflow policy: while `fits()` is false, remove the oldest turn (a user
 * message and the assistant answer after it) from `messages`, keeping a leading system
 * message, calling `changed()` after each removal. Returns the number of turns removed.
 */
export function dropOldestTurns(messages: ChatMessage[], fits: () => boolean, changed: () => void): number {
  const first = messages[0]?.role === "system" ? 1 : 0;
  let dropped = 0;
  while (!fits() && messages.length > first) {
    messages.splice(first, messages[first + 1]?.role === "assistant" ? 2 : 1);
    dropped++;
    changed();
  }
  return dropped;
}

/** After dropping what can be dropped: the new message alone must still leave room for one token. */
export function checkFits(promptTokens: number, capacity: number, hasSystem: boolean): void {
  if (promptTokens >= capacity) {
    throw new UsageError("the message does not fit in the model's context", {
      field: "message", expected: `fewer than ${capacity} tokens with the chat template${hasSystem ? " and the system prompt" : ""}`,
      found: `${promptTokens} tokens`, hint: "send a shorter message (or a shorter --system)",
    });
  }
}

export class Conversation {
  readonly messages: ChatMessage[] = [];
  /** The conversation's tokens as the model saw and produced them (end-of-turn ids included). */
  private ids: number[] = [];
  /** The text `ids` stand for. */
  private text = "";
  private readonly endIds: number[];

  constructor(readonly session: Session, readonly tok: TextTokenizer, readonly system?: string) {
    this.endIds = endOfTurnIds(tok);
    this.reset();
  }

  /** Back to the system prompt only; the KV cache is emptied. */
  reset(): void {
    this.messages.length = 0;
    if (this.system !== undefined) this.messages.push({ role: "system", content: this.system });
    this.ids = [];
    this.text = "";
    this.session.reset();
  }

  /** Prompt ids for `messages` + the generation prompt, continuing this conversation's own tokens when they match. */
  private promptIds(messages: ChatMessage[]): { ids: number[]; text: string } {
    const text = this.tok.applyChatTemplate(messages, true);
    if (this.text.length > 0 && text.startsWith(this.text)) {
      return { ids: [...this.ids, ...this.tok.encode(text.slice(this.text.length), { addSpecial: false })], text };
    }
    return { ids: this.tok.encode(text, { addSpecial: false }), text };
  }

  /** Answer `user`; the answer (even a cancelled, partial one) joins the history. */
  async ask(user: string, o: TurnOptions): Promise<TurnResult> {
    const capacity = this.session.capacity;
    // Room to keep for the answer: all of max tokens, up to half the context.
    const reserve = Math.min(o.maxTokens, Math.floor(capacity / 2));
    const next = (): { ids: number[]; text: string } => this.promptIds([...this.messages, { role: "user", content: user }]);
    let prompt = next();
    const droppedTurns = dropOldestTurns(this.messages, () => prompt.ids.length + reserve <= capacity, () => {
      this.ids = [];
      this.text = "";
      prompt = next();
    });
    checkFits(prompt.ids.length, capacity, this.messages[0]?.role === "system");
    if (droppedTurns > 0) o.onDropped?.(droppedTurns);
    const r = await generate(this.session, this.tok, { ...o, prompt: prompt.ids, stopIds: o.stopIds ?? this.endIds });
    this.messages.push({ role: "user", content: user }, { role: "assistant", content: r.text });
    const produced = r.endId !== null ? [...r.ids, r.endId] : r.ids;
    this.ids = [...prompt.ids, ...produced];
    this.text = prompt.text + (produced.length > 0 ? this.tok.decode(produced, { skipSpecial: false }) : "");
    return { ...r, droppedTurns };
  }
}

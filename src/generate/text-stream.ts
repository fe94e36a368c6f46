/**
 * Streaming text out of token ids: an incremental decoder that never emits half a
 * UTF-8 character, and a stop-string matcher that holds back text that might be the
 * start of a stop string.
 */

export interface Detokenizer {
  decode(ids: number[], opts: { skipSpecial?: boolean }): string;
}

/**
 * Incremental decoding as text-generation-inference does it (prefix/read offsets):
 * decode a short window of recent ids, and emit only once the window no longer ends
 * in a replacement character (an incomplete byte sequence of a byte-level BPE).
 */
export class IncrementalDecoder {
  private readonly ids: number[] = [];
  private prefix = 0;
  private read = 0;
  constructor(private readonly tok: Detokenizer, private readonly skipSpecial = true) {}

  private decode(from: number, to: number): string {
    return to > from ? this.tok.decode(this.ids.slice(from, to), { skipSpecial: this.skipSpecial }) : "";
  }

  /** The text this id completes (may be ""). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.decode(this.prefix, this.read);
    const now = this.decode(this.prefix, this.ids.length);
    if (now.length > before.length && !now.endsWith("\uFFFD")) {
      this.prefix = this.read;
      this.read = this.ids.length;
      return now.slice(before.length);
    }
    return "";
  }

  /** What is still held back (an incomplete character at the very end), as decoded. */
  flush(): string {
    const before = this.decode(this.prefix, this.read);
    const now = this.decode(this.prefix, this.ids.length);
    this.prefix = this.read = this.ids.length;
    return now.slice(before.length);
  }
}

/**
 * Feed text deltas; get back what may be shown. Once a stop string appears, the text
 * before it is released and `stopped` is set (the stop string itself is not shown,
 * as in the OpenAI API).
 */
export class StopMatcher {
  private held = "";
  stopped = false;
  constructor(private readonly stops: readonly string[]) {}

  push(delta: string): string {
    if (this.stopped) return "";
    const text = this.held + delta;
    let first = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    if (first >= 0) {
      this.stopped = true;
      this.held = "";
      return text.slice(0, first);
    }
    // Hold back the longest suffix that is a proper prefix of some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
        if (text.endsWith(s.slice(0, n))) { keep = n; break; }
      }
    }
    this.held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }

  /** End of generation: the held-back text was not a stop string after all. */
  flush(): string {
    const t = this.stopped ? "" : this.held;
    this.held = "";
    return t;
  }
}

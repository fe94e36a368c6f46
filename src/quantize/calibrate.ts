/**
 * Calibration data: N windows of L tokens drawn with a fixed seed from a text
 * (GPTQ's get_wikitext2/get_c4 recipe: tokenize once, random window starts), and
 * the hidden states entering block 0.
 */
import type { TextTokenizer } from "../tokenizer/tokenizer.ts";
import { mulberry32 } from "../util/random.ts";
import { UsageError } from "../util/errors.ts";

export interface CalibrationOptions {
  samples: number;
  seqlen: number;
  seed: number;
}

/** [samples][seqlen] token ids; windows may overlap when the text is short, like the reference. */
export function calibrationWindows(tokenizer: TextTokenizer, text: string, o: CalibrationOptions, file = "calibration text"): number[][] {
  const ids = tokenizer.encode(text, { addSpecial: false });
  if (ids.length < o.seqlen + 1) {
    throw new UsageError("calibration text is too short", {
      file, expected: `more than ${o.seqlen} tokens (--calib-seqlen)`, found: `${ids.length} tokens`,
      hint: "use a longer --calib-text or a smaller --calib-seqlen",
    });
  }
  const rand = mulberry32(o.seed);
  const out: number[][] = [];
  for (let s = 0; s < o.samples; s++) {
    const start = Math.floor(rand() * (ids.length - o.seqlen));
    out.push(ids.slice(start, start + o.seqlen));
  }
  return out;
}

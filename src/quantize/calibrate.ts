/**
 * Calibration data: N windows of L tokens drawn with a fixed seed from a text, and the
 * hidden states entering block 0. Two sampling rules (`CALIB_SAMPLINGS`):
 *
 *   windows  GPTQ's get_wikitext2/get_c4 recipe: tokenize the whole text once (no BOS),
 *            `samples` random window starts (they may overlap when the text is short).
 *   records  mit-han-lab llm-awq `utils/calib_data.py` `get_calib_dataset`: the text's
 *            records (one per non-empty line, as pile-val's JSONL has one document per
 *            line) in a seeded shuffled order; each record tokenized on its own WITH the
 *            tokenizer's specials (llm-awq's `tokenizer.encode(line)`: BOS first), records
 *            of more than `seqlen` tokens skipped (llm-awq: > 512), the first `samples`
 *            kept, concatenated and cut into ⌊total / seqlen⌋ windows (the rest dropped).
 *            So `samples` counts records and fewer windows come out; every window holds
 *            several BOS tokens, as in llm-awq. The shuffle is ours (mulberry32 Fisher–Yates),
 *            not HF datasets' `shuffle(seed=42)`: the same rule, not the same records.
 */
import { readFileSync } from "node:fs";
import type { ModelConfig } from "../arch/config.ts";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { Buffers } from "../load/canonical.ts";
import { checkpointRowsF32Into } from "../load/raw-read.ts";
import { expectShape, type TensorSource } from "../nn/weights.ts";
import { loadTokenizer, type TextTokenizer } from "../tokenizer/tokenizer.ts";
import { mulberry32 } from "../util/random.ts";
import { UsageError } from "../util/errors.ts";

export const CALIB_SAMPLINGS = ["windows", "records"] as const;
export type CalibSampling = (typeof CALIB_SAMPLINGS)[number];

export interface CalibrationOptions {
  samples: number;
  seqlen: number;
  seed: number;
  /** default "windows" */
  sampling?: CalibSampling;
}

/** Where the calibration inputs come from: the model (its tokenizer and embedding) and the text file. */
export interface CalibrationSource {
  cfg: ModelConfig;
  modelDir: string;
  ckpt: Checkpoint;
  /** The checkpoint's tensors (for the embedding's shape check). */
  src: TensorSource;
  /** The calibration text file. */
  textFile: string;
}

/**
 * The hidden states entering block 0, X [windows][seqlen·H]: the model's tokenizer cuts
 * `o`'s windows from the text, and each window's [seqlen, H] rows of the embedding are read
 * one by one (through `buffers` slot "row"), never the whole [V, H] matrix.
 */
export function calibrationInputs(c: CalibrationSource, o: CalibrationOptions, buffers: Buffers): Float32Array[] {
  const { cfg } = c;
  const H = cfg.hiddenSize;
  const tok = loadTokenizer(c.modelDir, cfg.eosTokenIds);
  const windows = calibrationWindows(tok, readFileSync(c.textFile, "utf8"), o, c.textFile);
  expectShape(c.src, cfg.arch.embed.hf, [cfg.vocabSize, H]);
  return windows.map((w) => checkpointRowsF32Into(c.ckpt, cfg.arch.embed.hf, H, w, new Float32Array(o.seqlen * H), buffers)); // [seqlen, H] each
}

/** [windows][seqlen] token ids under `o.sampling` (see the file comment). */
export function calibrationWindows(tokenizer: TextTokenizer, text: string, o: CalibrationOptions, file = "calibration text"): number[][] {
  return (o.sampling ?? "windows") === "records" ? calibrationRecords(tokenizer, text, o, file) : randomWindows(tokenizer, text, o, file);
}

function randomWindows(tokenizer: TextTokenizer, text: string, o: CalibrationOptions, file: string): number[][] {
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

function calibrationRecords(tokenizer: TextTokenizer, text: string, o: CalibrationOptions, file: string): number[][] {
  const records = text.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  const rand = mulberry32(o.seed);
  for (let i = records.length - 1; i > 0; i--) { // Fisher–Yates
    const j = Math.floor(rand() * (i + 1));
    const t = records[i]!; records[i] = records[j]!; records[j] = t;
  }
  const stream: number[] = [];
  let kept = 0;
  for (const r of records) {
    if (kept === o.samples) break;
    const ids = tokenizer.encode(r, { addSpecial: true });
    if (ids.length > o.seqlen || ids.length === 0) continue;
    for (const id of ids) stream.push(id);
    kept++;
  }
  const n = Math.floor(stream.length / o.seqlen);
  if (n === 0) {
    throw new UsageError("calibration records too few or too long", {
      file, expected: `records (non-empty lines) of at most ${o.seqlen} tokens adding up to ≥ ${o.seqlen} tokens`, found: `${kept} usable records, ${stream.length} tokens`,
      hint: "use --calib-sampling windows, more --calib-samples, or a text with one shorter record per line",
    });
  }
  return Array.from({ length: n }, (_, i) => stream.slice(i * o.seqlen, (i + 1) * o.seqlen));
}

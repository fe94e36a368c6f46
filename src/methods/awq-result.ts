/**
 * The AWQ search result of a whole model as a file (FORMATS.md §5), so `--save-search`
 * / `--load-search` can re-apply scales and clips without searching again
 * (llm-awq saves its `awq_results` the same way). JSON:
 *
 *   { "magic": "quantize-llm/awq-search", "version": 1, "model": "...",
 *     "settings": { "bits": 4, "groupSize": 128, "duoScaling": true, "clip": true, "meta": {...} },
 *     "blocks": [ { "block": 0, "tokens": 65536, "clipTokens": 512,
 *                   "scales": [ { "prev": "attnNorm", "layers": ["q","k","v"], "alpha": 0.45,
 *                                 "losses": [0.012, ...], "scales": "<base64 f32-LE [K]>" }, ... ],
 *                   "clips":  [ { "layer": "v", "N": 4096, "G": 32, "groupSize": 128,
 *                                 "maxVal": "<base64 f32-LE [N, G]>" }, ... ] }, ... ] }
 *
 * Vectors are base64 of little-endian f32 bytes: exact, and ~4× smaller than decimal JSON.
 */
import { existsSync, readFileSync } from "node:fs";
import type { ModelConfig } from "../arch/config.ts";
import { LINEAR_NAMES, type AwqPrev, type LinearName } from "../arch/registry.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { linearShapes } from "../arch/shapes.ts";
import { FormatError, UsageError } from "../util/errors.ts";
import { AWQ_CLIP_SAMPLINGS, AWQ_N_GRID, awqGroupsFor, type AwqClipSampling } from "./awq.ts";
import type { AwqBlockSearch, AwqGroupScales, AwqLayerClip } from "./awq-types.ts";

export const AWQ_SEARCH_MAGIC = "quantize-llm/awq-search";
export const AWQ_SEARCH_VERSION = 1;

/** The settings a search depends on; a search is only re-applied under the same ones. */
export interface AwqSearchSettings {
  bits: number;
  /** −1 = one group per row */
  groupSize: number;
  duoScaling: boolean;
  clip: boolean;
  /** How the clip tokens were chosen; absent in older files = "random". */
  clipSampling?: AwqClipSampling;
  /**
   * The run's grid and calibration (issue 10: a search made under other ones was accepted).
   * Written by the pipeline; when the caller passes them, a file that lacks or differs in
   * any of them is refused with the field named.
   */
  sym?: boolean;
  calibration?: AwqSearchCalibration;
  /** Free-form provenance (calibration file, samples, seqlen, seed...), not checked. */
  meta?: Record<string, unknown>;
}

export interface AwqSearchCalibration {
  /** sha256 of the calibration text (a moved file still matches, an edited one does not). */
  textSha256: string;
  samples: number;
  seqlen: number;
  seed: number;
  /** How the windows were drawn (quantize/calibrate.ts CALIB_SAMPLINGS); absent in older files = "windows". */
  sampling?: string;
}

export interface AwqSearchFile {
  magic: typeof AWQ_SEARCH_MAGIC;
  version: typeof AWQ_SEARCH_VERSION;
  /** The model the search was made on (a folder path or name). */
  model: string;
  settings: AwqSearchSettings;
  /** One entry per block, ascending. */
  blocks: AwqBlockSearch[];
}

// ---------------------------------------------------------------- encode

function f32ToBase64(a: Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
}

export function serializeAwqSearch(model: string, settings: AwqSearchSettings, blocks: readonly AwqBlockSearch[]): string {
  const doc = {
    magic: AWQ_SEARCH_MAGIC,
    version: AWQ_SEARCH_VERSION,
    model,
    settings,
    blocks: blocks.map((b) => ({
      block: b.block, tokens: b.tokens, clipTokens: b.clipTokens,
      scales: b.scales.map((s) => ({ prev: s.prev, layers: s.layers, alpha: s.alpha, losses: s.losses, scales: f32ToBase64(s.scales) })),
      clips: b.clips.map((c) => ({ layer: c.layer, N: c.N, G: c.G, groupSize: c.groupSize, maxVal: f32ToBase64(c.maxVal) })),
    })),
  };
  return JSON.stringify(doc, null, 1) + "\n";
}

/** Write atomically (a crash leaves the old file or the new one). */
export async function writeAwqSearch(path: string, model: string, settings: AwqSearchSettings, blocks: readonly AwqBlockSearch[]): Promise<void> {
  await writeFileAtomic(path, serializeAwqSearch(model, settings, blocks));
}

// ---------------------------------------------------------------- decode

type Json = Record<string, unknown>;

class Reader {
  constructor(readonly file: string) {}
  fail(field: string, expected: string, found: unknown): never {
    throw new FormatError("invalid AWQ search file", {
      file: this.file, field, expected, found: found === undefined ? "nothing (field missing)" : JSON.stringify(found)?.slice(0, 80) ?? String(found),
      hint: "the file is damaged or was not written by quantize-llm --save-search; search again",
    });
  }
  obj(v: unknown, field: string): Json {
    if (!v || typeof v !== "object" || Array.isArray(v)) this.fail(field, "an object", v);
    return v as Json;
  }
  arr(v: unknown, field: string): unknown[] {
    if (!Array.isArray(v)) this.fail(field, "an array", v);
    return v;
  }
  int(v: unknown, field: string, min: number): number {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) this.fail(field, `an integer ≥ ${min}`, v);
    return v;
  }
  bool(v: unknown, field: string): boolean {
    if (typeof v !== "boolean") this.fail(field, "true or false", v);
    return v;
  }
  linear(v: unknown, field: string): LinearName {
    if (typeof v !== "string" || !(LINEAR_NAMES as readonly string[]).includes(v)) this.fail(field, `one of ${LINEAR_NAMES.join(", ")}`, v);
    return v as LinearName;
  }
  /** base64 f32 vector of exactly n values (n = null: any whole number of values), all finite. */
  f32(v: unknown, field: string, n: number | null): Float32Array {
    if (typeof v !== "string") this.fail(field, "a base64 string of f32 values", v);
    const b = Buffer.from(v, "base64");
    if (b.length % 4 !== 0 || (n !== null && b.length !== 4 * n)) this.fail(field, `${n ?? "a whole number of"} f32 values (base64)`, `${b.length} bytes`);
    const a = new Float32Array(b.length / 4);
    new Uint8Array(a.buffer).set(b);
    const bad = a.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) this.fail(`${field}[${bad}]`, "finite values", String(a[bad]));
    return a;
  }
}

function parseGroup(r: Reader, v: unknown, f: string): AwqGroupScales {
  const o = r.obj(v, f);
  const prev = o["prev"];
  if (prev !== "attnNorm" && prev !== "mlpNorm") r.linear(prev, `${f}.prev`);
  const layers = r.arr(o["layers"], `${f}.layers`).map((x, i) => r.linear(x, `${f}.layers[${i}]`));
  if (layers.length === 0) r.fail(`${f}.layers`, "at least one layer", o["layers"]);
  const alpha = o["alpha"];
  if (typeof alpha !== "number" || !(alpha >= 0 && alpha < 1)) r.fail(`${f}.alpha`, "a number in [0, 1)", alpha);
  const losses = r.arr(o["losses"], `${f}.losses`);
  if (losses.length !== AWQ_N_GRID || losses.some((x) => x !== null && typeof x !== "number")) r.fail(`${f}.losses`, `${AWQ_N_GRID} numbers or nulls`, o["losses"]);
  return { prev: prev as AwqPrev, layers, alpha, losses: losses as (number | null)[], scales: r.f32(o["scales"], `${f}.scales`, null) };
}

function parseClip(r: Reader, v: unknown, f: string): AwqLayerClip {
  const o = r.obj(v, f);
  const layer = r.linear(o["layer"], `${f}.layer`);
  const N = r.int(o["N"], `${f}.N`, 1), G = r.int(o["G"], `${f}.G`, 1), groupSize = r.int(o["groupSize"], `${f}.groupSize`, 1);
  return { layer, N, G, groupSize, maxVal: r.f32(o["maxVal"], `${f}.maxVal`, N * G) };
}

/** Parse and validate the structure; `file` is used in error messages. */
export function parseAwqSearch(text: string, file: string): AwqSearchFile {
  const r = new Reader(file);
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) {
    throw new FormatError("AWQ search file is not valid JSON", { file, found: (e as Error).message, hint: "the file is truncated or damaged; search again" });
  }
  const o = r.obj(raw, "(root)");
  if (o["magic"] !== AWQ_SEARCH_MAGIC) {
    throw new FormatError("not a quantize-llm AWQ search file", { file, field: "magic", expected: JSON.stringify(AWQ_SEARCH_MAGIC), found: JSON.stringify(o["magic"]) ?? "nothing" });
  }
  if (o["version"] !== AWQ_SEARCH_VERSION) {
    throw new FormatError("unsupported AWQ search file version", {
      file, field: "version", expected: String(AWQ_SEARCH_VERSION), found: JSON.stringify(o["version"]) ?? "nothing",
      hint: "re-apply it with the quantize-llm version that wrote it, or search again",
    });
  }
  if (typeof o["model"] !== "string") r.fail("model", "a string", o["model"]);
  const s = r.obj(o["settings"], "settings");
  const groupSize = s["groupSize"];
  if (groupSize !== -1) r.int(groupSize, "settings.groupSize", 1);
  const settings: AwqSearchSettings = {
    bits: r.int(s["bits"], "settings.bits", 1), groupSize: groupSize as number,
    duoScaling: r.bool(s["duoScaling"], "settings.duoScaling"), clip: r.bool(s["clip"], "settings.clip"),
    ...(s["sym"] !== undefined ? { sym: r.bool(s["sym"], "settings.sym") } : {}),
    ...(s["clipSampling"] !== undefined ? { clipSampling: oneOf(r, AWQ_CLIP_SAMPLINGS, s["clipSampling"], "settings.clipSampling") } : {}),
    ...(s["calibration"] !== undefined ? { calibration: parseCalibration(r, s["calibration"]) } : {}),
    ...(s["meta"] !== undefined ? { meta: r.obj(s["meta"], "settings.meta") } : {}),
  };
  const blocks = r.arr(o["blocks"], "blocks").map((bv, bi): AwqBlockSearch => {
    const f = `blocks[${bi}]`;
    const b = r.obj(bv, f);
    return {
      block: r.int(b["block"], `${f}.block`, 0),
      tokens: r.int(b["tokens"], `${f}.tokens`, 0),
      clipTokens: r.int(b["clipTokens"], `${f}.clipTokens`, 0),
      scales: r.arr(b["scales"], `${f}.scales`).map((g, gi) => parseGroup(r, g, `${f}.scales[${gi}]`)),
      clips: r.arr(b["clips"], `${f}.clips`).map((c, ci) => parseClip(r, c, `${f}.clips[${ci}]`)),
    };
  });
  return { magic: AWQ_SEARCH_MAGIC, version: AWQ_SEARCH_VERSION, model: o["model"] as string, settings, blocks };
}

function parseCalibration(r: Parameters<typeof parseGroup>[0], v: unknown): AwqSearchCalibration {
  const c = r.obj(v, "settings.calibration");
  if (typeof c["textSha256"] !== "string") r.fail("settings.calibration.textSha256", "a hex string", c["textSha256"]);
  return {
    textSha256: c["textSha256"] as string, samples: r.int(c["samples"], "settings.calibration.samples", 0),
    seqlen: r.int(c["seqlen"], "settings.calibration.seqlen", 0), seed: r.int(c["seed"], "settings.calibration.seed", 0),
    ...(c["sampling"] !== undefined ? { sampling: typeof c["sampling"] === "string" ? c["sampling"] : r.fail("settings.calibration.sampling", "a string", c["sampling"]) } : {}),
  };
}

function oneOf<T extends string>(r: Parameters<typeof parseGroup>[0], allowed: readonly T[], v: unknown, field: string): T {
  if (!(allowed as readonly unknown[]).includes(v)) r.fail(field, allowed.join(" | "), v);
  return v as T;
}

export function readAwqSearch(path: string): AwqSearchFile {
  if (!existsSync(path)) {
    throw new UsageError("AWQ search file not found", { file: path, field: "--load-search", hint: "write one first with --save-search FILE" });
  }
  return parseAwqSearch(readFileSync(path, "utf8"), path);
}

/**
 * Check that a loaded search fits this model and these settings before anything is
 * applied: bits / group size / duo / clip, one entry per block, and every vector's size.
 */
export function checkAwqSearchFits(cfg: ModelConfig, f: AwqSearchFile, settings: AwqSearchSettings, path: string): void {
  const fail = (field: string, expected: string, found: string): never => {
    throw new UsageError("the AWQ search file was made for another model or other settings", {
      file: path, field, expected, found, hint: "search again (drop --load-search), or use the settings the file was made with",
    });
  };
  for (const k of ["bits", "groupSize", "duoScaling", "clip"] as const) {
    if (f.settings[k] !== settings[k]) fail(`settings.${k}`, String(settings[k]), String(f.settings[k]));
  }
  const unset = "not recorded (a file from an older quantize-llm)";
  if (settings.sym !== undefined && f.settings.sym !== settings.sym) {
    fail("settings.sym", settings.sym ? "sym (--sym)" : "asym", f.settings.sym === undefined ? unset : f.settings.sym ? "sym" : "asym");
  }
  // Absent in files written before these settings existed: what those runs did.
  if (settings.clipSampling !== undefined && (f.settings.clipSampling ?? "random") !== settings.clipSampling) {
    fail("settings.clipSampling", settings.clipSampling, f.settings.clipSampling ?? "random");
  }
  if (settings.calibration !== undefined) {
    for (const k of ["textSha256", "samples", "seqlen", "seed"] as const) {
      const want = settings.calibration[k], got = f.settings.calibration?.[k];
      if (got !== want) fail(`settings.calibration.${k}`, String(want), got === undefined ? unset : String(got));
    }
    const want = settings.calibration.sampling, got = f.settings.calibration?.sampling ?? "windows";
    if (want !== undefined && got !== want) fail("settings.calibration.sampling", want, got);
  }
  const idx = f.blocks.map((b) => b.block);
  if (idx.length !== cfg.numLayers || idx.some((b, i) => b !== i)) fail("blocks", `blocks 0..${cfg.numLayers - 1} in order`, `[${idx.join(", ")}]`);
  const shapes = linearShapes(cfg);
  const groups = awqGroupsFor(cfg);
  for (const b of f.blocks) {
    const desc = (g: { prev: string; layers: readonly string[] }): string => `${g.prev}→${g.layers.join(",")}`;
    if (b.scales.map(desc).join(" ") !== groups.map(desc).join(" ")) fail(`blocks[${b.block}].scales`, groups.map(desc).join(" "), b.scales.map(desc).join(" "));
    for (const g of b.scales) {
      const K = shapes[g.layers[0]!][1];
      if (g.scales.length !== K) fail(`blocks[${b.block}].scales(${desc(g)})`, `${K} scales`, String(g.scales.length));
    }
    for (const c of b.clips) {
      const [N, K] = shapes[c.layer];
      if (c.N !== N || c.G * c.groupSize !== K) fail(`blocks[${b.block}].clips(${c.layer})`, `[${N}, ${K}/g]`, `[${c.N}, ${c.G}] g=${c.groupSize}`);
    }
  }
}

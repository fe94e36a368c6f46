/**
 * What an AWQ search decides, as plain data: the searcher (awq.ts) produces it, the
 * folding (awq-apply.ts) and the search file (awq-result.ts) consume it. Kept apart so
 * that neither consumer imports the searcher.
 */
import type { AwqPrev, LinearName } from "../arch/registry.ts";

/** The scales found for one scaling group. */
export interface AwqGroupScales {
  /** Where s is folded out: norm weight or previous linear's output rows. */
  prev: AwqPrev;
  /** Layers whose input columns are multiplied by s. */
  layers: LinearName[];
  /** Best α in {0, 0.05, …, 0.95}. */
  alpha: number;
  /** [K] the scale vector s (f32 values). */
  scales: Float32Array;
  /** [AWQ_N_GRID] MSE of the inspected module's output for α = i/20; null where not finite. */
  losses: (number | null)[];
}

/** The clip thresholds found for one layer. */
export interface AwqLayerClip {
  layer: LinearName;
  /** out_features */
  N: number;
  /** groups per row */
  G: number;
  /** columns per group (K = G·groupSize) */
  groupSize: number;
  /** [N, G] W[n, k] is clamped to ±maxVal[n, k / groupSize] */
  maxVal: Float32Array;
}

/** Everything AWQ decided for one block: plain data, re-appliable without searching. */
export interface AwqBlockSearch {
  block: number;
  /** In `cfg.arch.awqGroups` order (groups that do not apply, e.g. v→o under GQA, are absent). */
  scales: AwqGroupScales[];
  /** Empty when the clip search is off. */
  clips: AwqLayerClip[];
  /** Calibration tokens behind x_mean and the losses (samples × seqlen). */
  tokens: number;
  /** Tokens sampled for the clip search (0 when off). */
  clipTokens: number;
}

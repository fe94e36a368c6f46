/** Shapes of a block's linear layers, from the config alone (no weights needed). */
import type { ModelConfig } from "./config.ts";
import type { LinearName } from "./registry.ts";

/** Output/input sizes [N, K] of each linear of a block. */
export function linearShapes(cfg: ModelConfig): Record<LinearName, [number, number]> {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim } = cfg;
  return {
    q: [numHeads * headDim, H], k: [numKvHeads * headDim, H], v: [numKvHeads * headDim, H],
    o: [H, numHeads * headDim], gate: [I, H], up: [I, H], down: [H, I],
  };
}

export function hasBias(cfg: ModelConfig, name: LinearName): boolean {
  if (name === "q" || name === "k" || name === "v") return cfg.qkvBias;
  if (name === "o") return cfg.oBias;
  return cfg.mlpBias;
}

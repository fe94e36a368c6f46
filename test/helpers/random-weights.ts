/** In-memory random models for unit tests of the forward pass (no files). */
import { parseModelConfig, type ModelConfig } from "../../src/arch/config.ts";
import type { LinearName } from "../../src/arch/registry.ts";
import { type BlockWeights, type Linear, type ModelWeights } from "../../src/nn/weights.ts";
import { hasBias, linearShapes } from "../../src/arch/shapes.ts";
import { mulberry32 } from "../../src/util/random.ts";

export function tinyConfig(over: Record<string, unknown> = {}): ModelConfig {
  return parseModelConfig({
    model_type: "llama", hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 50, max_position_embeddings: 64,
    rope_theta: 10000, rms_norm_eps: 1e-5, ...over,
  });
}

export function randn(rand: () => number): number {
  // Box–Muller
  const u = Math.max(rand(), 1e-12), v = rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export function randomArray(n: number, std: number, rand: () => number, mean = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = mean + std * randn(rand);
  return a;
}

export function randomWeights(cfg: ModelConfig, seed = 1): ModelWeights {
  const rand = mulberry32(seed);
  const H = cfg.hiddenSize, V = cfg.vocabSize;
  const shapes = linearShapes(cfg);
  const blocks: BlockWeights[] = [];
  for (let b = 0; b < cfg.numLayers; b++) {
    const linears = {} as Record<LinearName, Linear>;
    for (const [name, [N, K]] of Object.entries(shapes) as [LinearName, [number, number]][]) {
      const l: Linear = { weight: randomArray(N * K, 1 / Math.sqrt(K), rand), N, K };
      if (hasBias(cfg, name)) l.bias = randomArray(N, 0.1, rand);
      linears[name] = l;
    }
    blocks.push({ attnNorm: randomArray(H, 0.1, rand, 1), mlpNorm: randomArray(H, 0.1, rand, 1), linears });
  }
  return {
    embed: randomArray(V * H, 1, rand), blocks, finalNorm: randomArray(H, 0.1, rand, 1),
    lmHead: randomArray(V * H, 1 / Math.sqrt(H), rand),
  };
}

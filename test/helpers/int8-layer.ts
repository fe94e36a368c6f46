/** A random LLM.int8() linear for kernel tests: W [N, K] ~ N(0, 1/K) quantized per row, optional bias [N]. */
import { quantizeInt8Rows, type Int8Linear } from "../../src/methods/int8.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { randn } from "./random-weights.ts";

export function int8Layer(N: number, K: number, seed: number, bias: boolean): Int8Linear {
  const r = mulberry32(seed);
  const w = Float32Array.from({ length: N * K }, () => randn(r) / Math.sqrt(K)); // [N, K]
  const q: Int8Linear = { N, K, ...quantizeInt8Rows(w, N, K) };
  if (bias) q.bias = Float32Array.from({ length: N }, () => randn(r) * 0.1); // [N]
  return q;
}

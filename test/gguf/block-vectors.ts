/**
 * Deterministic test vectors for the ggml block codecs (test/gguf/blocks.test.ts). The
 * expected bytes in fixtures/ggml-ref-blocks.json were produced by llama.cpp's own
 * `quantize_row_<t>_ref` (ggml/src/ggml-quants.c at the commit bundled with node-llama-cpp
 * 3.22.1, compiled with gcc -O2 -ffp-contract=off) on exactly these vectors; see
 * fixtures/README.md for how to regenerate them.
 */
import { mulberry32 } from "../../src/util/random.ts";

export interface BlockVector { name: string; x: Float32Array }

/** 1024 values (4 k-quant super-blocks, 32 small blocks) per vector. */
export const VECTOR_LEN = 1024;

export function blockVectors(): BlockVector[] {
  const n = VECTOR_LEN;
  const gen = (seed: number, f: (r: () => number, i: number) => number): Float32Array => {
    const r = mulberry32(seed);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = f(r, i);
    return x;
  };
  const gauss = (r: () => number): number => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return [
    { name: "gaussian", x: gen(1, (r) => 0.02 * gauss(r)) },
    { name: "uniform", x: gen(2, (r) => 2 * r() - 1) },
    { name: "outliers", x: gen(3, (r, i) => (i % 37 === 0 ? 8 : 1) * 0.05 * gauss(r)) },
    { name: "positive", x: gen(4, (r) => 0.1 + r()) },
    { name: "negative-max", x: gen(5, (r, i) => (i % 32 === 7 ? -3 : 0.5 * gauss(r))) },
    { name: "integers-ties", x: gen(6, (r) => Math.floor(r() * 33) - 16) },
    { name: "halves", x: gen(7, (r) => (Math.floor(r() * 31) - 15) / 2) },
    { name: "zeros-and-constants", x: gen(8, (r, i) => (i < 256 ? 0 : i < 512 ? 0.125 : i < 768 ? -1e-20 * r() : (i % 2) * 1e-3)) },
    { name: "tiny", x: gen(9, (r) => 1e-6 * gauss(r)) },
    { name: "large", x: gen(10, (r) => 300 * gauss(r)) },
  ];
}

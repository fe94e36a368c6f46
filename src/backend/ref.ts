/**
 * Plain-TypeScript reference backend: the specification the native kernels are
 * tested against. Simple loops, f32 storage, f64 accumulation where it is free.
 */
import { f16ToF32 } from "../tensor/dtype.ts";
import { isPackedWeight, KEY_BLOCK, matmulPackedSum, PackedSum, type AttentionShape, type Backend, type KvRows, type LinearWeight, type PackedWeight } from "./backend.ts";
import { refMatmulPacked, refPack16, refPackQ4, refPackQ8 } from "./ref-packed.ts";

export function refMatmul(
  x: Float32Array, w: Float32Array, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array,
): Float32Array {
  const y = out ?? new Float32Array(M * N); // [M, N]
  for (let m = 0; m < M; m++) {
    const xo = m * K;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[xo + k]! * w[wo + k]!;
      y[m * N + n] = acc + (bias ? bias[n]! : 0);
    }
  }
  return y;
}

/** The first `positions` keys of a blocked f16 cache (AttentionShape.keyBlocks) as row-major f32 [positions, row]. */
function keyBlocksF32(a: Uint16Array, positions: number, row: number): Float32Array {
  const f = new Float32Array(positions * row);
  for (let p = 0; p < positions; p++) {
    const b = Math.floor(p / KEY_BLOCK) * row * KEY_BLOCK + (p % KEY_BLOCK);
    for (let e = 0; e < row; e++) f[p * row + e] = f16ToF32(a[b + e * KEY_BLOCK]!);
  }
  return f;
}

/** The first n values of a cache as f32 (f16 bits decoded exactly). */
function kvF32(a: KvRows, n: number): Float32Array {
  if (a instanceof Float32Array) return a;
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = f16ToF32(a[i]!);
  return f;
}

export function refAttention(
  q: Float32Array, kRows: KvRows, vRows: KvRows, s: AttentionShape, out: Float32Array,
): void {
  const { T, pos0, nHead, nKvHead, headDim: d } = s;
  if (s.keyBlocks === true && !(kRows instanceof Uint16Array)) throw new Error("refAttention: keyBlocks needs an f16 cache");
  const k = s.keyBlocks === true ? keyBlocksF32(kRows as Uint16Array, pos0 + T, nKvHead * d) : kvF32(kRows, (pos0 + T) * nKvHead * d);
  const v = kvF32(vRows, (pos0 + T) * nKvHead * d);
  const group = nHead / nKvHead;
  const qStride = nHead * d;
  const kvStride = nKvHead * d;
  const scale = 1 / Math.sqrt(d);
  const scores = new Float64Array(pos0 + T); // [S]
  for (let t = 0; t < T; t++) {
    const nKeys = pos0 + t + 1;
    for (let h = 0; h < nHead; h++) {
      const kvh = Math.floor(h / group);
      const qo = t * qStride + h * d;
      let max = -Infinity;
      for (let j = 0; j < nKeys; j++) {
        const ko = j * kvStride + kvh * d;
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[qo + i]! * k[ko + i]!;
        const sc = dot * scale;
        scores[j] = sc;
        if (sc > max) max = sc;
      }
      let sum = 0;
      for (let j = 0; j < nKeys; j++) { const e = Math.exp(scores[j]! - max); scores[j] = e; sum += e; }
      for (let i = 0; i < d; i++) {
        let acc = 0;
        for (let j = 0; j < nKeys; j++) acc += scores[j]! * v[j * kvStride + kvh * d + i]!;
        out[qo + i] = acc / sum;
      }
    }
  }
}

/** sum[K, K] = beta·sum + alpha · x[T, K]ᵀ · x, f64 accumulation; both triangles (beta 0 ignores sum). */
export function refSyrkAccumulate(
  x: Float32Array, T: number, K: number, sum: Float32Array | Float64Array, alpha: number, beta = 1,
): void {
  const col = new Float64Array(T); // x[:, i]
  for (let i = 0; i < K; i++) {
    for (let t = 0; t < T; t++) col[t] = x[t * K + i]!;
    for (let j = i; j < K; j++) {
      let acc = 0;
      for (let t = 0; t < T; t++) acc += col[t]! * x[t * K + j]!;
      const v = (beta === 0 ? 0 : beta * sum[i * K + j]!) + alpha * acc;
      sum[i * K + j] = v;
      sum[j * K + i] = v;
    }
  }
}

/** A reference-packed weight, or a PackedSum of them. */
function refMatmulAnyPacked(x: Float32Array, w: PackedWeight, M: number, bias?: Float32Array, out?: Float32Array): Float32Array {
  return w instanceof PackedSum ? matmulPackedSum(w, M, bias, out, (p, b, o) => refMatmulPacked(x, p, M, b, o)) : refMatmulPacked(x, w, M, bias, out);
}

// The GPTQ kernels (gptqHinv, gptqQuantize) have no entry here on purpose: their
// reference is src/methods/gptq.ts as a whole, which gptq-fast.ts falls back to.
export const refBackend: Backend = {
  name: "ref",
  threads: 1,
  matmul: (x: Float32Array, w: LinearWeight, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array) =>
    isPackedWeight(w) ? refMatmulAnyPacked(x, w, M, bias, out) : refMatmul(x, w, M, K, N, bias, out),
  attention: refAttention,
  syrkAccumulate: refSyrkAccumulate,
};

/**
 * The reference backend with the packing contract (ref-packed.ts): loaders pack
 * through it, so tests check every source format's conversion against the
 * dequantized-f32 path. `refBackend` itself has no pack methods, so models load on
 * it as plain f32 (the dequantized specification path of `--backend ref`).
 */
export const refPackedBackend: Backend = {
  ...refBackend,
  packQ4: refPackQ4,
  packQ8: refPackQ8,
  pack16: refPack16,
  matmulPacked: (x, w, M, bias, out) => refMatmulAnyPacked(x, w, M, bias, out),
};

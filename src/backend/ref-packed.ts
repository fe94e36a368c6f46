/**
 * The packed-weight contract in plain TypeScript (backend.ts PackQ4Args / PackQ8Args /
 * Pack16Args): the specification the native packers and kernels are tested against.
 * A "packed" weight here is simply the dequantized f32 matrix in the permuted column
 * order plus the permutation, so a matmul is x[:, perm] · Wᵀ in f64 accumulation.
 * Memory is 4 bytes per weight: this is a reference, not a runtime layout.
 */
import { bf16ToF32, f16ToF32 } from "../tensor/dtype.ts";
import { invariant } from "../util/errors.ts";
import type { Pack16Args, PackedWeight, PackQ4Args, PackQ8Args } from "./backend.ts";

const F = Math.fround;

export class RefPackedWeight implements PackedWeight {
  constructor(
    readonly N: number,
    readonly K: number,
    readonly layout: "ref-q4" | "ref-q4-mins" | "ref-q8" | "ref-f16" | "ref-bf16",
    /** [N, K] dequantized, columns in the permuted order */
    readonly w: Float32Array,
    /** [K] permuted position → original column, or null */
    readonly perm: Int32Array | null,
  ) {}

  get bytes(): number { return this.w.byteLength + (this.perm?.byteLength ?? 0); }
}

function groupsOf(K: number, groupSize: number): number {
  invariant(Number.isInteger(groupSize) && groupSize >= 1, `groupSize ${groupSize}`);
  return Math.ceil(K / groupSize);
}

function checkLengths(what: string, N: number, K: number, G: number, codes: ArrayLike<number>, scales: Float32Array, mins: Float32Array | null, perm: Int32Array | null): void {
  invariant(codes.length === N * K, `${what}: codes has ${codes.length} elements, expected N·K = ${N * K}`);
  invariant(scales.length === N * G, `${what}: scales has ${scales.length} elements, expected N·G = ${N * G}`);
  invariant(mins === null || mins.length === N * G, `${what}: mins has ${mins?.length} elements, expected N·G = ${N * G}`);
  invariant(perm === null || perm.length === K, `${what}: perm has ${perm?.length} elements, expected K = ${K}`);
}

/** w = s·(q − 8) (mins null) or s·q + m, per group of groupSize columns. */
export function refPackQ4(a: PackQ4Args): RefPackedWeight {
  const { N, K, groupSize, codes, scales, mins, perm } = a;
  const G = groupsOf(K, groupSize);
  checkLengths("packQ4", N, K, G, codes, scales, mins, perm);
  const w = new Float32Array(N * K); // [N, K]
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const g = n * G + Math.floor(k / groupSize);
      const q = codes[n * K + k]!;
      invariant(q <= 15, `packQ4: code ${q} at [${n}, ${k}] is not 4-bit`);
      w[n * K + k] = mins === null ? F(scales[g]! * (q - 8)) : F(F(scales[g]! * q) + mins[g]!);
    }
  }
  return new RefPackedWeight(N, K, mins === null ? "ref-q4" : "ref-q4-mins", w, perm?.slice() ?? null);
}

/** w = s·q, per group of groupSize columns. */
export function refPackQ8(a: PackQ8Args): RefPackedWeight {
  const { N, K, groupSize, codes, scales, perm } = a;
  const G = groupsOf(K, groupSize);
  checkLengths("packQ8", N, K, G, codes, scales, null, perm);
  const w = new Float32Array(N * K); // [N, K]
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) w[n * K + k] = F(scales[n * G + Math.floor(k / groupSize)]! * codes[n * K + k]!);
  }
  return new RefPackedWeight(N, K, "ref-q8", w, perm?.slice() ?? null);
}

export function refPack16(a: Pack16Args): RefPackedWeight {
  const { N, K, data, dtype } = a;
  invariant(data.length === N * K, `pack16: data has ${data.length} elements, expected N·K = ${N * K}`);
  const decode = dtype === "f16" ? f16ToF32 : bf16ToF32;
  const w = new Float32Array(N * K); // [N, K]
  for (let i = 0; i < w.length; i++) w[i] = decode(data[i]!);
  return new RefPackedWeight(N, K, dtype === "f16" ? "ref-f16" : "ref-bf16", w, null);
}

/** y[M, N] = x[M, K][:, perm] · Wᵀ (+ bias), f64 accumulation. */
export function refMatmulPacked(x: Float32Array, w: PackedWeight, M: number, bias?: Float32Array, out?: Float32Array): Float32Array {
  invariant(w instanceof RefPackedWeight, `the reference backend cannot run a "${w.layout}" weight packed by another backend`);
  const { N, K, perm } = w;
  invariant(x.length >= M * K, `matmulPacked: x has ${x.length} elements, expected M·K = ${M * K}`);
  const y = out ?? new Float32Array(M * N); // [M, N]
  const xr = new Float64Array(K); // [K] one activation row, gathered
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) xr[k] = x[m * K + (perm === null ? k : perm[k]!)]!;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let acc = 0;
      for (let k = 0; k < K; k++) acc += xr[k]! * w.w[wo + k]!;
      y[m * N + n] = acc + (bias ? bias[n]! : 0);
    }
  }
  return y;
}

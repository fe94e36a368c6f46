/**
 * Little-endian bit streams of b-bit values in 32-bit words: value i occupies
 * bits b·i .. b·i+b−1 of the stream. For b = 2, 4, 8 this is GPTQ's plain packing;
 * for b = 3 it is exactly AutoGPTQ's three-word packing of 32 values
 * (`qlinear_cuda_old.py` pack, bits == 3: value 10 straddles words 0/1 and
 * value 21 straddles words 1/2), so one routine serves every width.
 */

/** Pack `n` values read at src[offset + i·stride] into words written at dst[dOffset + w·dStride]. */
export function packStream(
  src: ArrayLike<number>, offset: number, stride: number, n: number, bits: number,
  dst: Int32Array, dOffset: number, dStride: number,
): void {
  const nWords = (n * bits) / 32;
  for (let w = 0; w < nWords; w++) dst[dOffset + w * dStride] = 0;
  for (let i = 0; i < n; i++) {
    const v = src[offset + i * stride]!;
    const bit = i * bits;
    const w = bit >>> 5, s = bit & 31;
    const at = dOffset + w * dStride;
    dst[at] = dst[at]! | (v << s);
    if (s + bits > 32) {
      const at2 = dOffset + (w + 1) * dStride;
      dst[at2] = dst[at2]! | (v >>> (32 - s));
    }
  }
}

/** Inverse of packStream. */
export function unpackStream(
  src: Int32Array, sOffset: number, sStride: number, n: number, bits: number,
  dst: { [i: number]: number }, offset: number, stride: number,
): void {
  const mask = (1 << bits) - 1;
  for (let i = 0; i < n; i++) {
    const bit = i * bits;
    const w = bit >>> 5, s = bit & 31;
    let v = src[sOffset + w * sStride]! >>> s;
    if (s + bits > 32) v |= src[sOffset + (w + 1) * sStride]! << (32 - s);
    dst[offset + i * stride] = v & mask;
  }
}

/**
 * Where a packer puts its output arrays: `bytes` bytes of reused memory for `slot` (the
 * quantizer's Scratch; the packer zeroes them, so the result is the bits of a fresh array),
 * valid until the same slot is asked for again. Absent: fresh arrays.
 */
export type PackAlloc = (slot: string, bytes: number) => Uint8Array;

/** An Int32Array of n values from `alloc` slot `slot` (zeroed), or a fresh one. */
export function i32Out(alloc: PackAlloc | undefined, slot: string, n: number): Int32Array {
  if (alloc === undefined) return new Int32Array(n);
  const b = alloc(slot, 4 * n);
  return new Int32Array(b.buffer, b.byteOffset, n).fill(0);
}

/** A Uint16Array of n values from `alloc` slot `slot` (zeroed), or a fresh one. */
export function u16Out(alloc: PackAlloc | undefined, slot: string, n: number): Uint16Array {
  if (alloc === undefined) return new Uint16Array(n);
  const b = alloc(slot, 2 * n);
  return new Uint16Array(b.buffer, b.byteOffset, n).fill(0);
}

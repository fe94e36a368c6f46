/**
 * The greedy pick over x[offset, offset + n): the lowest index of the largest value, a NaN never
 * chosen, 0 when none exceeds −∞. The one definition: the sampler's greedy draw, Model.forward's
 * opts.argmax, and the native argmax op's specification (kernel_impl.h argmaxRow).
 */
export function argmax(x: Float32Array, offset = 0, n = x.length - offset): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < n; i++) { const v = x[offset + i]!; if (v > bv) { bv = v; best = i; } }
  return best;
}

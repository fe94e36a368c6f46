import { describe, expect, it } from "vitest";
import { ropeInvFreq, RopeTable } from "../../src/nn/rope.ts";

describe("RoPE", () => {
  it("inv_freq follows 1/theta^(2i/d)", () => {
    const inv = ropeInvFreq({ headDim: 8, ropeTheta: 10000, ropeScaling: null });
    expect(Array.from(inv)).toEqual([1, 0.1, 0.01, 0.001].map((x, i) => expect.closeTo(x, 12 - i)));
  });

  it("llama3 scaling: high frequencies kept, low frequencies divided by factor, smooth in between", () => {
    const cfg = { headDim: 128, ropeTheta: 500000, ropeScaling: { type: "llama3" as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } };
    const plain = ropeInvFreq({ ...cfg, ropeScaling: null });
    const scaled = ropeInvFreq(cfg);
    expect(scaled[0]).toBe(plain[0]); // wavelength 2π < 8192/4
    const last = plain.length - 1;
    expect(scaled[last]).toBeCloseTo(plain[last]! / 8, 15); // wavelength ≫ 8192
    // a middle frequency: wavelength between 2048 and 8192 → interpolated
    const mid = Array.from(plain).findIndex((f) => { const w = (2 * Math.PI) / f; return w > 2048 && w < 8192; });
    expect(mid).toBeGreaterThan(0);
    const w = (2 * Math.PI) / plain[mid]!;
    const smooth = (8192 / w - 1) / (4 - 1);
    expect(scaled[mid]).toBeCloseTo((1 - smooth) * plain[mid]! / 8 + smooth * plain[mid]!, 15);
  });

  it("rotates (x1, x2) halves by position·freq (hand-computed, head_dim 4)", () => {
    const rope = new RopeTable({ headDim: 4, ropeTheta: 100, ropeScaling: null });
    // inv_freq = [1, 0.1]; position 3 → angles [3, 0.3]
    const x = new Float32Array([1, 2, 3, 4]); // one head: x1 = [1, 2], x2 = [3, 4]
    rope.apply(x, 1, 1, 3);
    const a = [3, 0.3];
    const expected = [
      1 * Math.cos(a[0]!) - 3 * Math.sin(a[0]!),
      2 * Math.cos(a[1]!) - 4 * Math.sin(a[1]!),
      3 * Math.cos(a[0]!) + 1 * Math.sin(a[0]!),
      4 * Math.cos(a[1]!) + 2 * Math.sin(a[1]!),
    ];
    expected.forEach((e, i) => expect(x[i]).toBeCloseTo(e, 5));
  });
});

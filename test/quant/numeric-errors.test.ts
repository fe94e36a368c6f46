/**
 * Issue 8 item 6: a Hessian that no damping makes positive definite is a typed NumericError
 * (reference, native sync and native async paths alike); quantize/pipeline.ts adds the layer's
 * tensor name as its field (not exercised here: no calibration reaches it past assertFinite).
 */
import { describe, expect, it } from "vitest";
import { createNativeBackend } from "../../src/backend/native.ts";
import { gptqQuantizeLinear, type GptqOptions } from "../../src/methods/gptq.ts";
import { gptqQuantizeLinearAsync, gptqQuantizeLinearFast } from "../../src/methods/gptq-fast.ts";
import { NumericError } from "../../src/util/errors.ts";

describe("a Hessian not positive definite at damp = 1", () => {
  // K = 8: H = −I·10 has a negative diagonal; adding 1·mean(diag H) (= −10) keeps it negative, so every damping fails.
  const N = 4, K = 8;
  const H = new Float32Array(K * K);
  for (let i = 0; i < K; i++) H[i * K + i] = -10;
  const o: GptqOptions = {
    weight: Float32Array.from({ length: N * K }, (_, i) => Math.sin(i)), rows: N, cols: K, hessian: H,
    bits: 4, groupSize: -1, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
  };
  const expectNumeric = (f: () => unknown): void => {
    let err: unknown;
    try { f(); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(NumericError);
    expect((err as NumericError).code).toBe("E_NUMERIC");
    expect((err as NumericError).message).toMatch(/not positive definite even with damp = 1/);
  };
  it("reference", () => expectNumeric(() => gptqQuantizeLinear(o)));
  it("native", () => expectNumeric(() => gptqQuantizeLinearFast({ ...o, backend: createNativeBackend({ threads: 1 }) })));
  it("native, off the JS thread", async () => {
    await expect(gptqQuantizeLinearAsync({ ...o, backend: createNativeBackend({ threads: 1 }) })).rejects.toBeInstanceOf(NumericError);
  });
});

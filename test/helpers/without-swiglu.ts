/**
 * A backend with its native elementwise kernels hidden (swiglu, rmsNorm, rope, add, toF16):
 * nn/block.ts then computes silu(gate)·up by the f64 formula and the norms, RoPE, residuals and
 * f16 rounding in TS, as the quantizers' calibration forwards do (BlockContext.exactElementwise).
 * References that must reproduce a pipeline's statistics bit for bit run on this.
 */
import type { Backend } from "../../src/backend/backend.ts";

export function withoutSwiglu<B extends Backend>(backend: B): B {
  return new Proxy(backend, {
    get(target, p) {
      if (p === "swiglu" || p === "rmsNorm" || p === "rope" || p === "add" || p === "toF16") return undefined;
      const v: unknown = Reflect.get(target, p, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

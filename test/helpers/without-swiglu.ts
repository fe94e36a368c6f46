/**
 * A backend with its native swiglu kernel hidden: nn/block.ts then computes silu(gate)·up by
 * the f64 formula, as the quantizers' calibration forwards do (BlockContext.exactElementwise).
 * References that must reproduce a pipeline's statistics bit for bit run on this.
 */
import type { Backend } from "../../src/backend/backend.ts";

export function withoutSwiglu<B extends Backend>(backend: B): B {
  return new Proxy(backend, {
    get(target, p) {
      if (p === "swiglu") return undefined;
      const v: unknown = Reflect.get(target, p, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

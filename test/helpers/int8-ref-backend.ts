/**
 * The native backend with every LLM.int8() handle in `spec` run by the plain-TS reference
 * int8MatmulRef on the codes read from the file (the specification), everything else as
 * the native backend runs it: the twin a loaded bitsandbytes model's forward must equal.
 */
import type { Backend } from "../../src/backend/backend.ts";
import type { NativeBackend } from "../../src/backend/native.ts";
import { Int8PackedWeight } from "../../src/backend/native-int8.ts";
import { int8MatmulRef, type Int8Linear } from "../../src/methods/int8.ts";

export function int8RefBackend(nb: NativeBackend, spec: ReadonlyMap<Int8PackedWeight, Int8Linear>): Backend {
  return new Proxy(nb, {
    get(target, prop) {
      if (prop === "matmul") {
        return (x: Float32Array, w: Float32Array | Int8PackedWeight, M: number, K: number, N: number, bias?: Float32Array, out?: Float32Array): Float32Array => {
          const q = w instanceof Int8PackedWeight ? spec.get(w) : undefined;
          if (q === undefined) return target.matmul(x, w, M, K, N, bias, out);
          const y = int8MatmulRef(x, M, { ...q, ...(bias ? { bias } : {}) }, (w as Int8PackedWeight).run.threshold); // [M, N]
          if (out) { out.set(y); return out; }
          return y;
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...args: unknown[]) => unknown).bind(target) : v;
    },
  });
}

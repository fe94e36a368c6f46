// Node-API glue of the LLM.int8() kernels (llm_int8.h), called from addon.cc.
// Arguments are validated in src/backend/native-int8.ts; here they are unpacked and asserted.
//
//   int8Pack(cb Int8Array [N,K], scb Float32Array [N], N, K): handle
//   int8Unpack(handle, out Int8Array [N,K]): void
//   int8Bytes(handle): number              bytes of native memory the handle owns
//   int8Dispose(handle): void              frees it now (later use asserts)
//   int8Levels(): string[]                 "vnni" | "avx2" | "scalar", fastest first
//   int8Matmul(x, handle, M, threshold, staticCols Int32Array | null, bias | null, out, level | null): number
//       y [M,N] = LLM.int8()(x [M,K]); returns the number of outlier columns used;
//       level null = the one matching the addon's kernel level (avx512 → vnni when present)
//   int8Concat(handles[]): handle | null   the parts' rows as one weight (int8Concat in llm_int8.h)
//   int8MatmulParts(x, handle, M, threshold, staticCols | null, rows number[n+1], biases (Float32Array | null)[n], outs[n], level | null): number
//       rows rows[p]..rows[p+1]−1 of the weight into outs[p] [M, rows[p+1] − rows[p]]: one
//       activation quantization and one pool wake-up for every part
#pragma once
#include <napi.h>

namespace qllm {
struct Runtime;
Napi::Value napiInt8Pack(Runtime& rt, const Napi::CallbackInfo& info);
Napi::Value napiInt8Unpack(Runtime& rt, const Napi::CallbackInfo& info);
Napi::Value napiInt8Bytes(Runtime& rt, const Napi::CallbackInfo& info);
Napi::Value napiInt8Dispose(Runtime& rt, const Napi::CallbackInfo& info);
Napi::Value napiInt8Levels(Runtime& rt, const Napi::CallbackInfo& info);
Napi::Value napiInt8Matmul(Runtime& rt, const Napi::CallbackInfo& info);
Napi::Value napiInt8Concat(Runtime& rt, const Napi::CallbackInfo& info);
Napi::Value napiInt8MatmulParts(Runtime& rt, const Napi::CallbackInfo& info);
}  // namespace qllm

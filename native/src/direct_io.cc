// See direct_io.h.
#include "direct_io.h"

#include <stdlib.h>
#include <string.h>

namespace qllm {

Napi::Value alignedBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t bytes = info[0].As<Napi::Number>().Int64Value(), align = info[1].As<Napi::Number>().Int64Value();
  // The JS side (direct-write.ts) checks its arguments; these are the C++ side's own limits.
  if (bytes < 1 || bytes > (int64_t{1} << 40) || align < 8 || (align & (align - 1)) != 0) {
    Napi::RangeError::New(env, "alignedBuffer: bytes must be 1..2^40 and align a power of two >= 8").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  void* p = nullptr;
  if (posix_memalign(&p, static_cast<size_t>(align), static_cast<size_t>(bytes)) != 0) {
    Napi::Error::New(env, "alignedBuffer: out of memory").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  memset(p, 0, static_cast<size_t>(bytes));
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return Napi::ArrayBuffer::New(env, p, static_cast<size_t>(bytes), [](Napi::Env e, void* data, int64_t* n) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -*n);
    free(data);
    delete n;
  }, new int64_t(bytes));
}

}  // namespace qllm

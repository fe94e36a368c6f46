#include "llm_int8_napi.h"

#include <cassert>
#include <cstring>
#include <string>

#include "llm_int8.h"
#include "runtime.h"

namespace qllm {
namespace {

/** What the External holds: null after dispose(). */
struct Handle {
  Int8Packed* p;
};

Int8Packed& packed(const Napi::Value& v) {
  Handle* h = v.As<Napi::External<Handle>>().Data();
  assert(h->p != nullptr && "int8 handle used after dispose()");
  return *h->p;
}

const Int8KernelTable* levelFor(Runtime& rt, const Napi::Value& v) {
  int n = 0;
  const Int8KernelTable* const* levels = int8Levels(&n);
  std::string want;
  if (v.IsString()) {
    want = v.As<Napi::String>().Utf8Value();
  } else {
    want = rt.kernels->name;
    if (want == "avx512") return levels[0];  // the best int8 level (vnni, else avx2)
  }
  for (int i = 0; i < n; ++i) if (want == levels[i]->name) return levels[i];
  assert(false && "int8Matmul: level not in int8Levels()");
  return levels[n - 1];
}

}  // namespace

Napi::Value napiInt8Pack(Runtime&, const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto cb = info[0].As<Napi::Int8Array>();
  const auto scb = info[1].As<Napi::Float32Array>();
  const int64_t N = info[2].As<Napi::Number>().Int64Value(), K = info[3].As<Napi::Number>().Int64Value();
  assert(cb.ElementLength() >= static_cast<size_t>(N * K) && scb.ElementLength() >= static_cast<size_t>(N));
  auto* h = new Handle{int8Pack(cb.Data(), scb.Data(), N, K)};
  const int64_t bytes = static_cast<int64_t>(h->p->bytes);
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return Napi::External<Handle>::New(env, h, [](Napi::Env e, Handle* hh) {
    if (hh->p != nullptr) {
      Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(hh->p->bytes));
      delete hh->p;
    }
    delete hh;
  });
}

Napi::Value napiInt8Unpack(Runtime&, const Napi::CallbackInfo& info) {
  const Int8Packed& p = packed(info[0]);
  auto out = info[1].As<Napi::Int8Array>();
  assert(out.ElementLength() >= static_cast<size_t>(p.N * p.K));
  int8Unpack(p, out.Data());
  return info.Env().Undefined();
}

Napi::Value napiInt8Bytes(Runtime&, const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(packed(info[0]).bytes));
}

Napi::Value napiInt8Dispose(Runtime&, const Napi::CallbackInfo& info) {
  Handle* h = info[0].As<Napi::External<Handle>>().Data();
  if (h->p != nullptr) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -static_cast<int64_t>(h->p->bytes));
    delete h->p;
    h->p = nullptr;
  }
  return info.Env().Undefined();
}

Napi::Value napiInt8Levels(Runtime&, const Napi::CallbackInfo& info) {
  int n = 0;
  const Int8KernelTable* const* levels = int8Levels(&n);
  Napi::Array out = Napi::Array::New(info.Env(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out.Set(static_cast<uint32_t>(i), Napi::String::New(info.Env(), levels[i]->name));
  return out;
}

Napi::Value napiInt8Matmul(Runtime& rt, const Napi::CallbackInfo& info) {
  Int8MatmulArgs a{};
  const auto x = info[0].As<Napi::Float32Array>();
  a.w = &packed(info[1]);
  a.M = info[2].As<Napi::Number>().Int64Value();
  a.threshold = static_cast<float>(info[3].As<Napi::Number>().DoubleValue());
  if (info[4].IsTypedArray()) {
    const auto s = info[4].As<Napi::Int32Array>();
    a.staticCols = s.Data();
    a.nStatic = static_cast<int64_t>(s.ElementLength());
  }
  a.bias = info[5].IsTypedArray() ? info[5].As<Napi::Float32Array>().Data() : nullptr;
  auto y = info[6].As<Napi::Float32Array>();
  a.kernels = levelFor(rt, info[7]);
  assert(x.ElementLength() >= static_cast<size_t>(a.M * a.w->K) && y.ElementLength() >= static_cast<size_t>(a.M * a.w->N));
  a.x = x.Data();
  a.y = y.Data();
  int32_t count = 0;
  a.outlierCount = &count;
  int8Matmul(rt, a);
  return Napi::Number::New(info.Env(), count);
}

}  // namespace qllm

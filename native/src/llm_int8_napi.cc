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
    want = simdLevelOf(rt.kernels->name);
    if (want == "avx512") return levels[0];  // the best int8 level (vnni, else avx2)
  }
  for (int i = 0; i < n; ++i) if (want == levels[i]->name) return levels[i];
  assert(false && "int8Matmul: level not in int8Levels()");
  return levels[n - 1];
}

/** The External a packed weight lives in (freed by its finalizer, or by int8Dispose). */
Napi::Value wrap(Napi::Env env, Int8Packed* p) {
  auto* h = new Handle{p};
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

/** The common arguments of int8Matmul / int8MatmulParts: x, handle, M, threshold, staticCols. */
Int8MatmulArgs matmulArgs(const Napi::CallbackInfo& info) {
  Int8MatmulArgs a{};
  a.x = info[0].As<Napi::Float32Array>().Data();
  a.w = &packed(info[1]);
  a.M = info[2].As<Napi::Number>().Int64Value();
  a.threshold = static_cast<float>(info[3].As<Napi::Number>().DoubleValue());
  if (info[4].IsTypedArray()) {
    const auto s = info[4].As<Napi::Int32Array>();
    a.staticCols = s.Data();
    a.nStatic = static_cast<int64_t>(s.ElementLength());
  }
  assert(info[0].As<Napi::Float32Array>().ElementLength() >= static_cast<size_t>(a.M * a.w->K));
  return a;
}

}  // namespace

Napi::Value napiInt8Pack(Runtime&, const Napi::CallbackInfo& info) {
  const auto cb = info[0].As<Napi::Int8Array>();
  const auto scb = info[1].As<Napi::Float32Array>();
  const int64_t N = info[2].As<Napi::Number>().Int64Value(), K = info[3].As<Napi::Number>().Int64Value();
  assert(cb.ElementLength() >= static_cast<size_t>(N * K) && scb.ElementLength() >= static_cast<size_t>(N));
  return wrap(info.Env(), int8Pack(cb.Data(), scb.Data(), N, K));
}

Napi::Value napiInt8Concat(Runtime&, const Napi::CallbackInfo& info) {
  const Napi::Array hs = info[0].As<Napi::Array>();
  const Int8Packed* parts[kI8MaxParts];
  const uint32_t n = hs.Length();
  if (n < 1 || n > static_cast<uint32_t>(kI8MaxParts)) return info.Env().Null();
  for (uint32_t i = 0; i < n; ++i) parts[i] = &packed(hs.Get(i));
  Int8Packed* p = int8Concat(parts, static_cast<int>(n));
  return p == nullptr ? info.Env().Null() : wrap(info.Env(), p);
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
  Int8MatmulArgs a = matmulArgs(info);
  a.bias = info[5].IsTypedArray() ? info[5].As<Napi::Float32Array>().Data() : nullptr;
  auto y = info[6].As<Napi::Float32Array>();
  a.kernels = levelFor(rt, info[7]);
  assert(y.ElementLength() >= static_cast<size_t>(a.M * a.w->N));
  a.y = y.Data();
  int32_t count = 0;
  a.outlierCount = &count;
  int8Matmul(rt, a);
  return Napi::Number::New(info.Env(), count);
}

Napi::Value napiInt8MatmulParts(Runtime& rt, const Napi::CallbackInfo& info) {
  Int8MatmulArgs a = matmulArgs(info);
  const Napi::Array rows = info[5].As<Napi::Array>(), bs = info[6].As<Napi::Array>(), os = info[7].As<Napi::Array>();
  const uint32_t n = os.Length();
  assert(n >= 1 && n <= static_cast<uint32_t>(kI8MaxParts) && bs.Length() == n && rows.Length() == n + 1);
  int64_t partRow[kI8MaxParts + 1];
  float* ys[kI8MaxParts];
  const float* biases[kI8MaxParts];
  for (uint32_t p = 0; p <= n; ++p) partRow[p] = rows.Get(p).As<Napi::Number>().Int64Value();
  for (uint32_t p = 0; p < n; ++p) {
    const Napi::Value b = bs.Get(p);
    biases[p] = b.IsTypedArray() ? b.As<Napi::Float32Array>().Data() : nullptr;
    auto o = os.Get(p).As<Napi::Float32Array>();
    assert(o.ElementLength() >= static_cast<size_t>(a.M * (partRow[p + 1] - partRow[p])));
    ys[p] = o.Data();
  }
  assert(partRow[0] % kI8Rows == 0 && partRow[n] <= a.w->N);
  a.nParts = static_cast<int>(n);
  a.partRow = partRow;
  a.ys = ys;
  a.biases = biases;
  a.kernels = levelFor(rt, info[8]);
  int32_t count = 0;
  a.outlierCount = &count;
  int8Matmul(rt, a);
  return Napi::Number::New(info.Env(), count);
}

}  // namespace qllm

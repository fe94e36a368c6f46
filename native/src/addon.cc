// The Node-API surface of quantize_llm.node. Its only importer is
// src/backend/native.ts, which holds the TypeScript type of these exports and
// validates every argument: this file unpacks and asserts, nothing more.
//
//   matmul(x, w, M, K, N, bias | null, out): void
//   attention(q, k, v, T, pos0, nHead, nKvHead, headDim, out): void
//   setThreads(n): void / getThreads(): number
//   kernelLevels(): string[]      compiled levels this CPU runs, fastest first
//   getKernelLevel(): string / setKernelLevel(name): void   (tests and benchmarks)
//   fmaPeak(threads): number      GFLOP/s of an FMA-only loop on that many pool threads
//
// Calls are synchronous: the JS thread blocks while the pool works.
#include <napi.h>

#include <cassert>
#include <chrono>
#include <cstring>
#include <memory>

#include "runtime.h"

namespace qllm {
namespace {

const float* inF32(const Napi::Value& v) { return v.As<Napi::Float32Array>().Data(); }
float* outF32(const Napi::Value& v) { return v.As<Napi::Float32Array>().Data(); }
size_t lenF32(const Napi::Value& v) { return v.As<Napi::Float32Array>().ElementLength(); }
int64_t i64(const Napi::Value& v) { return v.As<Napi::Number>().Int64Value(); }

}  // namespace

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) : levels_(availableKernels()), rt_(levels_.front()) {
    DefineAddon(exports, {
                             InstanceMethod("matmul", &Addon::Matmul, napi_enumerable),
                             InstanceMethod("attention", &Addon::Attention, napi_enumerable),
                             InstanceMethod("setThreads", &Addon::SetThreads, napi_enumerable),
                             InstanceMethod("getThreads", &Addon::GetThreads, napi_enumerable),
                             InstanceMethod("kernelLevels", &Addon::KernelLevels, napi_enumerable),
                             InstanceMethod("getKernelLevel", &Addon::GetKernelLevel, napi_enumerable),
                             InstanceMethod("setKernelLevel", &Addon::SetKernelLevel, napi_enumerable),
                             InstanceMethod("fmaPeak", &Addon::FmaPeak, napi_enumerable),
                         });
  }

 private:
  void Matmul(const Napi::CallbackInfo& info) {
    const int64_t M = i64(info[2]), K = i64(info[3]), N = i64(info[4]);
    const bool hasBias = info[5].IsTypedArray();
    assert(lenF32(info[0]) >= static_cast<size_t>(M * K));
    assert(lenF32(info[1]) >= static_cast<size_t>(N * K));
    assert(!hasBias || lenF32(info[5]) >= static_cast<size_t>(N));
    assert(lenF32(info[6]) >= static_cast<size_t>(M * N));
    matmul(rt_, inF32(info[0]), inF32(info[1]), M, K, N, hasBias ? inF32(info[5]) : nullptr, outF32(info[6]));
  }

  void Attention(const Napi::CallbackInfo& info) {
    const AttentionShape s{i64(info[3]), i64(info[4]), i64(info[5]), i64(info[6]), i64(info[7])};
    assert(lenF32(info[0]) >= static_cast<size_t>(s.T * s.nHead * s.headDim));
    assert(lenF32(info[1]) >= static_cast<size_t>((s.pos0 + s.T) * s.nKvHead * s.headDim));
    assert(lenF32(info[2]) >= static_cast<size_t>((s.pos0 + s.T) * s.nKvHead * s.headDim));
    assert(lenF32(info[8]) >= static_cast<size_t>(s.T * s.nHead * s.headDim));
    attention(rt_, inF32(info[0]), inF32(info[1]), inF32(info[2]), s, outF32(info[8]));
  }

  void SetThreads(const Napi::CallbackInfo& info) {
    const int64_t n = i64(info[0]);
    assert(n >= 1 && n <= 1024);
    rt_.setThreads(static_cast<int>(n));
  }

  Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), rt_.pool.threads()); }

  Napi::Value KernelLevels(const Napi::CallbackInfo& info) {
    Napi::Array out = Napi::Array::New(info.Env(), levels_.size());
    for (uint32_t i = 0; i < levels_.size(); ++i) out.Set(i, Napi::String::New(info.Env(), levels_[i]->name));
    return out;
  }

  Napi::Value GetKernelLevel(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), rt_.kernels->name); }

  void SetKernelLevel(const Napi::CallbackInfo& info) {
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    for (const KernelTable* k : levels_) {
      if (name == k->name) {
        rt_.kernels = k;
        return;
      }
    }
    assert(false && "setKernelLevel: level not in kernelLevels()");
  }

  Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
    const int n = static_cast<int>(i64(info[0]));
    assert(n >= 1 && n <= rt_.pool.threads());
    constexpr int64_t kIters = 1 << 20;  // ≈ 0.8 GFLOP per thread at AVX-512: a few ms
    double (*loop)(int64_t) = rt_.kernels->fmaLoop;
    const auto t0 = std::chrono::steady_clock::now();
    double flops = 0.0;
    if (n == 1) flops = loop(kIters);
    else rt_.pool.parallelFor(n, [&](int task, int) {
      const double f = loop(kIters);
      if (task == 0) flops = f * n;
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return Napi::Number::New(info.Env(), flops / s / 1e9);
  }

  std::vector<const KernelTable*> levels_;
  Runtime rt_;
};

}  // namespace qllm

using QuantizeLlmAddon = qllm::Addon;
NODE_API_ADDON(QuantizeLlmAddon)

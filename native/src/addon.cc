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
//   syrkAccumulate(x, T, K, sum (f32 | f64), alpha, beta): void      sum = beta·sum + alpha·xᵀx (gptq.h)
//   gptqHinv(H (f32 | f64), K, perm | null, diag (f64), out): boolean    out = upper Cholesky factor of H⁻¹
//   gptqQuantize(w, perm | null, dead | null, hinv, N, K, bits, g, sym, colGroup | null,
//                scales, zeros, codes, dequantized, blockSize): number (loss)
//
// Calls are synchronous: the JS thread blocks while the pool works.
#include <napi.h>

#include <cassert>
#include <chrono>
#include <cstring>
#include <memory>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "gptq.h"
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
#if defined(__GLIBC__)
    // Quantization frees tens of MB of typed arrays per layer. glibc's dynamic mmap threshold
    // would then serve later large buffers from the heap and keep them after free, adding
    // ~80 MB to peak RSS (eval/memory-gptq.ts); a fixed threshold returns them to the OS.
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    DefineAddon(exports, {
                             InstanceMethod("matmul", &Addon::Matmul, napi_enumerable),
                             InstanceMethod("attention", &Addon::Attention, napi_enumerable),
                             InstanceMethod("setThreads", &Addon::SetThreads, napi_enumerable),
                             InstanceMethod("getThreads", &Addon::GetThreads, napi_enumerable),
                             InstanceMethod("kernelLevels", &Addon::KernelLevels, napi_enumerable),
                             InstanceMethod("getKernelLevel", &Addon::GetKernelLevel, napi_enumerable),
                             InstanceMethod("setKernelLevel", &Addon::SetKernelLevel, napi_enumerable),
                             InstanceMethod("fmaPeak", &Addon::FmaPeak, napi_enumerable),
                             InstanceMethod("syrkAccumulate", &Addon::SyrkAccumulate, napi_enumerable),
                             InstanceMethod("gptqHinv", &Addon::GptqHinv, napi_enumerable),
                             InstanceMethod("gptqQuantize", &Addon::GptqQuantize, napi_enumerable),
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

  // ---------------------------------------------------------------- GPTQ (gptq.h)

  void SyrkAccumulate(const Napi::CallbackInfo& info) {
    const int64_t T = i64(info[1]), K = i64(info[2]);
    const float alpha = static_cast<float>(info[4].As<Napi::Number>().DoubleValue());
    const float beta = static_cast<float>(info[5].As<Napi::Number>().DoubleValue());
    assert(lenF32(info[0]) >= static_cast<size_t>(T * K));
    const auto sum = info[3].As<Napi::TypedArray>();
    assert(sum.ElementLength() >= static_cast<size_t>(K * K));
    if (sum.TypedArrayType() == napi_float64_array) {
      syrkAccumulate(rt_, inF32(info[0]), T, K, nullptr, info[3].As<Napi::Float64Array>().Data(), alpha, beta);
    } else {
      assert(sum.TypedArrayType() == napi_float32_array);
      syrkAccumulate(rt_, inF32(info[0]), T, K, outF32(info[3]), nullptr, alpha, beta);
    }
  }

  Napi::Value GptqHinv(const Napi::CallbackInfo& info) {
    const int64_t K = i64(info[1]);
    const auto h = info[0].As<Napi::TypedArray>();
    assert(h.ElementLength() >= static_cast<size_t>(K * K));
    const bool f64 = h.TypedArrayType() == napi_float64_array;
    const int32_t* perm = info[2].IsTypedArray() ? info[2].As<Napi::Int32Array>().Data() : nullptr;
    const auto diag = info[3].As<Napi::Float64Array>();
    assert(diag.ElementLength() >= static_cast<size_t>(K) && lenF32(info[4]) >= static_cast<size_t>(K * K));
    return Napi::Boolean::New(info.Env(), gptqHinv(rt_, f64 ? nullptr : inF32(info[0]), f64 ? info[0].As<Napi::Float64Array>().Data() : nullptr, K,
                                                   perm, diag.Data(), outF32(info[4])));
  }

  Napi::Value GptqQuantize(const Napi::CallbackInfo& info) {
    GptqQuantArgs a{};
    a.w = inF32(info[0]);
    a.perm = info[1].IsTypedArray() ? info[1].As<Napi::Int32Array>().Data() : nullptr;
    a.dead = info[2].IsTypedArray() ? info[2].As<Napi::Uint8Array>().Data() : nullptr;
    a.hinv = inF32(info[3]);
    a.N = i64(info[4]);
    a.K = i64(info[5]);
    a.bits = static_cast<int>(i64(info[6]));
    a.g = i64(info[7]);
    a.sym = info[8].As<Napi::Boolean>().Value();
    a.staticGroups = info[9].IsTypedArray();
    a.colGroup = a.staticGroups ? info[9].As<Napi::Int32Array>().Data() : nullptr;
    a.scales = outF32(info[10]);
    a.zeros = info[11].As<Napi::Uint8Array>().Data();
    a.codes = info[12].As<Napi::Uint8Array>().Data();
    a.dequantized = outF32(info[13]);
    a.blockSize = i64(info[14]);
    const size_t G = static_cast<size_t>((a.K + a.g - 1) / a.g), NK = static_cast<size_t>(a.N * a.K);
    assert(lenF32(info[0]) >= NK && lenF32(info[3]) >= static_cast<size_t>(a.K * a.K) && lenF32(info[13]) >= NK);
    assert(lenF32(info[10]) >= a.N * G && info[11].As<Napi::Uint8Array>().ElementLength() >= a.N * G);
    assert(info[12].As<Napi::Uint8Array>().ElementLength() >= NK);
    return Napi::Number::New(info.Env(), gptqQuantize(rt_, a));
  }

  std::vector<const KernelTable*> levels_;
  Runtime rt_;
};

}  // namespace qllm

using QuantizeLlmAddon = qllm::Addon;
NODE_API_ADDON(QuantizeLlmAddon)

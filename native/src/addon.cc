// The Node-API surface of quantize_llm.node. Its only importer is
// src/backend/native.ts, which holds the TypeScript type of these exports and
// validates every argument: this file unpacks and asserts, nothing more.
//
//   matmul(x, w, M, K, N, bias | null, out): void
//   attention(q, k, v, T, pos0, nHead, nKvHead, headDim, out, hint | null, keyBlocks?): void   (k, v: Float32Array, or Uint16Array f16 bits,
//                                 keyBlocks: the f16 keys in blocks of 32 positions, native/LAYOUTS.md "KV cache";
//                                 hint: packed handles the next calls read, prefetched during the call: prefetch.h)
//   prefetchPlan(handles[], threads, maxBytes): Float64Array   [handle, offset, bytes] per range of the plan (tests)
//   spanSplitClaims(partRg (f64), partN (f64), shares, ns, order (i32) | null): Float64Array   the decode split's claims
//                                 (packed.h spanSplitClaims; null order: the roles at once on the pool) (tests)
//   swiglu(g, u, n): void         g[i] = silu(g[i])·u[i] (the MLP activation; elementwise.cc)
//   rmsNorm(x, w, T, H, eps, out) / rope(x, T, nHeads, headDim, pos0, cos, sin) / add(a, b, out, n) /
//   toF16(src, dst (Uint16Array), n) / toF16Keys(src, dst (Uint16Array), T, pos0, nKvHead, headDim): void
//                                 the forward's other elementwise ops (elementwise.cc)
//   argmax(x, n): number          the greedy pick over x[n] (the step plan's last op; elementwise.cc)
//   graphBuild(record (f64), arrays[], handles[], pos): handle   a recorded decode step (graph.h; native-graph.ts)
//   graphRun(graph, pos): void    the whole step at position pos, in one call
//   setThreads(n): void / getThreads(): number
//   kernelLevels(): string[]      compiled levels this CPU runs, fastest first
//   getKernelLevel(): string / setKernelLevel(name): void   (tests and benchmarks)
//   fmaPeak(threads): number      GFLOP/s of an FMA-only loop on that many pool threads
//   syrkAccumulate(x, T, K, sum (f32 | f64), alpha, beta): void      sum = beta·sum + alpha·xᵀx (gptq.h)
//   gptqHinv(H (f32 | f64), K, perm | null, diag (f64), out): boolean    out = upper Cholesky factor of H⁻¹
//   gptqQuantize(w, perm | null, dead | null, hinv, N, K, bits, g, sym, colGroup | null,
//                scales, zeros, codes, dequantized, blockSize, blockStartGrids): number (loss)
//   packQ4(codes, scales, mins | null, N, K, groupSize, perm | null): PackedInfo   (packed.h)
//   packQ8(codes, scales, N, K, groupSize, perm | null): PackedInfo
//   pack16(data, isBf16, N, K): PackedInfo
//   packedFree(handle): void      frees now; the handle's finalizer frees otherwise
//   repack(source, data, qzeros | null, scales | null, perm | null, rows | null, N, K, groupSize, zeroAdd): PackedInfo | [status, index]
//                                 stored quantized bytes → layout (packed_repack.h; status 1 no memory, 2 unsupported, 3/4 non-finite scale/min)
//   packedBytes(handle): Uint8Array   a copy of the layout's bytes (tests)
//   matmulPacked(x, handle, M, bias | null, out, f32Acts): void
//   matmulPackedAsync(x, handle, M, bias | null, out, f32Acts, ctl): Promise<void>
//   packedConcat(handles[]): PackedInfo | [status]   row groups of the parts back to back (1 no memory, 2 incompatible)
//   packedView(handle, part): PackedInfo             part p of a concatenated weight, sharing its memory
//   mapFile(path, populate): { handle, bytes } | [status, errno]   read-only map (packed_map.cc; 1 open, 2 map, 3 unsupported)
//   mapRelease(handle): void      drops the caller's reference (the views keep theirs)
//   view16(map, offset, isBf16, N, K): PackedInfo | null   a row-major 16-bit view of mapped bytes (null: out of bounds)
//   matmulPackedParts(x, handle, M, biases[], outs[], f32Acts): void   one call, one output per part
//   readBandwidth(bytes, threads, reps): Float64Array   GB/s of each pass (benchmark probe)
//   packedKernelLevel(): string   the packed kernels the current level runs (packedKernelsFor)
//   convertRows(src, srcType, rows | null, N, K, dst, dstType): number         (convert.h; types 0 F32, 1 F16, 2 BF16)
//   ggmlQuantizeRows(src, srcType, rows | null, N, K, type (0 Q4_0, 1 Q8_0), out): void
//   rtnQuantize(src, srcType, N, K, bits, g, sym, codes, scales, zeros, err (f64 [2])): number
//   gptqPackCodes(codes, N, K, bits, qweight): void
//   alignedBuffer(bytes, align): ArrayBuffer                                     (direct_io.h: O_DIRECT output staging)
//
// …Async variants (async.h): the same call on a libuv worker thread, returning a Promise;
// the last argument is the ctl Int32Array [3] (cancel, progress done, progress total) or null:
//   matmulAsync(x, w, M, K, N, bias | null, out, ctl): Promise<void>
//   syrkAccumulateAsync(x, T, K, sum, alpha, beta, ctl): Promise<void>
//   gptqHinvAsync(H, K, perm | null, diag, out, ctl): Promise<boolean>
//   gptqQuantizeAsync(<the 16 arguments of gptqQuantize>, ctl): Promise<number>
//   awqFakeQuantizeAsync(w, s | null, N, K, bits, g, out, ctl): Promise<void>          (awq.h)
//   awqClipSearchAsync(w, x, N, K, T, bits, g, maxVal, ctl): Promise<void>
//
// The plain calls are synchronous: the JS thread blocks while the pool works. Every
// entry point holds calls_ (async.h's CallGate) while it uses the runtime.
//
// Why one file of ~860 lines (session 12 added the elementwise and step-plan exports, graphBuild/graphRun; session 13 spanSplitClaims): Node-API allows one module-init per addon and this is the
// list of every export above, each a short unpack-and-call wrapper (the kernels live in
// their own files); it mirrors src/backend/native.ts, the one typed importer, entry for
// entry, so the two are read side by side. Splitting by kernel family would need a
// registration function per family and gains nothing a reader of one wrapper needs.
#include <napi.h>

#include <cassert>
#include <chrono>
#include <cstring>
#include <memory>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "async.h"
#include "awq.h"
#include "convert.h"
#include "direct_io.h"
#include "packed_repack.h"
#include "gptq.h"
#include "graph.h"
#include "packed.h"
#include "llm_int8_napi.h"  // int8Pack/int8Matmul/...: LLM.int8() (documented there)
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
                             InstanceMethod("swiglu", &Addon::Swiglu, napi_enumerable),
                             InstanceMethod("rmsNorm", &Addon::RmsNorm, napi_enumerable),
                             InstanceMethod("graphBuild", &Addon::GraphBuild, napi_enumerable),
                             InstanceMethod("graphRun", &Addon::GraphRun, napi_enumerable),
                             InstanceMethod("rope", &Addon::Rope, napi_enumerable),
                             InstanceMethod("add", &Addon::Add, napi_enumerable),
                             InstanceMethod("toF16", &Addon::ToF16, napi_enumerable),
                             InstanceMethod("toF16Keys", &Addon::ToF16Keys, napi_enumerable),
                             InstanceMethod("argmax", &Addon::Argmax, napi_enumerable),
                             InstanceMethod("setThreads", &Addon::SetThreads, napi_enumerable),
                             InstanceMethod("getThreads", &Addon::GetThreads, napi_enumerable),
                             InstanceMethod("kernelLevels", &Addon::KernelLevels, napi_enumerable),
                             InstanceMethod("getKernelLevel", &Addon::GetKernelLevel, napi_enumerable),
                             InstanceMethod("setKernelLevel", &Addon::SetKernelLevel, napi_enumerable),
                             InstanceMethod("fmaPeak", &Addon::FmaPeak, napi_enumerable),
                             InstanceMethod("syrkAccumulate", &Addon::SyrkAccumulate, napi_enumerable),
                             InstanceMethod("gptqHinv", &Addon::GptqHinv, napi_enumerable),
                             InstanceMethod("gptqQuantize", &Addon::GptqQuantize, napi_enumerable),
                             InstanceMethod("matmulAsync", &Addon::MatmulAsync, napi_enumerable),
                             InstanceMethod("syrkAccumulateAsync", &Addon::SyrkAccumulateAsync, napi_enumerable),
                             InstanceMethod("gptqHinvAsync", &Addon::GptqHinvAsync, napi_enumerable),
                             InstanceMethod("gptqQuantizeAsync", &Addon::GptqQuantizeAsync, napi_enumerable),
                             InstanceMethod("packQ4", &Addon::PackQ4, napi_enumerable),
                             InstanceMethod("packQ8", &Addon::PackQ8, napi_enumerable),
                             InstanceMethod("pack16", &Addon::Pack16, napi_enumerable),
                             InstanceMethod("packedFree", &Addon::PackedFree, napi_enumerable),
                             InstanceMethod("repack", &Addon::Repack, napi_enumerable),
                             InstanceMethod("packedBytes", &Addon::PackedBytes, napi_enumerable),
                             InstanceMethod("matmulPacked", &Addon::MatmulPacked, napi_enumerable),
                             InstanceMethod("matmulPackedAsync", &Addon::MatmulPackedAsync, napi_enumerable),
                             InstanceMethod("packedConcat", &Addon::PackedConcat, napi_enumerable),
                             InstanceMethod("packedView", &Addon::PackedView, napi_enumerable),
                             InstanceMethod("mapFile", &Addon::MapFile, napi_enumerable),
                             InstanceMethod("mapRelease", &Addon::MapRelease, napi_enumerable),
                             InstanceMethod("view16", &Addon::View16, napi_enumerable),
                             InstanceMethod("matmulPackedParts", &Addon::MatmulPackedParts, napi_enumerable),
                             InstanceMethod("int8Pack", &Addon::Int8Pack, napi_enumerable),
                             InstanceMethod("int8Unpack", &Addon::Int8Unpack, napi_enumerable),
                             InstanceMethod("int8Bytes", &Addon::Int8Bytes, napi_enumerable),
                             InstanceMethod("int8Dispose", &Addon::Int8Dispose, napi_enumerable),
                             InstanceMethod("int8Levels", &Addon::Int8Levels, napi_enumerable),
                             InstanceMethod("int8Matmul", &Addon::Int8Matmul, napi_enumerable),
                             InstanceMethod("int8Concat", &Addon::Int8Concat, napi_enumerable),
                             InstanceMethod("int8MatmulParts", &Addon::Int8MatmulParts, napi_enumerable),
                             InstanceMethod("awqFakeQuantizeAsync", &Addon::AwqFakeQuantizeAsync, napi_enumerable),
                             InstanceMethod("awqClipSearchAsync", &Addon::AwqClipSearchAsync, napi_enumerable),
                             InstanceMethod("readBandwidth", &Addon::ReadBandwidth, napi_enumerable),
                             InstanceMethod("prefetchPlan", &Addon::PrefetchPlan, napi_enumerable),
                             InstanceMethod("spanSplitClaims", &Addon::SpanSplitClaims, napi_enumerable),
                             InstanceMethod("packedKernelLevel", &Addon::PackedKernelLevel, napi_enumerable),
                             InstanceMethod("convertRows", &Addon::ConvertRows, napi_enumerable),
                             InstanceMethod("ggmlQuantizeRows", &Addon::GgmlQuantizeRows, napi_enumerable),
                             InstanceMethod("rtnQuantize", &Addon::RtnQuantize, napi_enumerable),
                             InstanceMethod("gptqPackCodes", &Addon::GptqPackCodes, napi_enumerable),
                             InstanceMethod("alignedBuffer", &Addon::AlignedBuffer, napi_enumerable),
                         });
  }

 private:
  struct MatmulArgs {
    const float *x, *w, *bias;
    float* y;
    int64_t M, K, N;
  };
  static MatmulArgs matmulArgs(const Napi::CallbackInfo& info) {
    const int64_t M = i64(info[2]), K = i64(info[3]), N = i64(info[4]);
    const bool hasBias = info[5].IsTypedArray();
    assert(lenF32(info[0]) >= static_cast<size_t>(M * K));
    assert(lenF32(info[1]) >= static_cast<size_t>(N * K));
    assert(!hasBias || lenF32(info[5]) >= static_cast<size_t>(N));
    assert(lenF32(info[6]) >= static_cast<size_t>(M * N));
    return {inF32(info[0]), inF32(info[1]), hasBias ? inF32(info[5]) : nullptr, outF32(info[6]), M, K, N};
  }

  void Matmul(const Napi::CallbackInfo& info) {
    const MatmulArgs m = matmulArgs(info);
    auto lock = calls_.lock();
    matmul(rt_, m.x, m.w, m.M, m.K, m.N, m.bias, m.y);
  }

  Napi::Value MatmulAsync(const Napi::CallbackInfo& info) {
    const MatmulArgs m = matmulArgs(info);
    return calls_.run(info.Env(), {info[0], info[1], info[5], info[6]}, info[7], [this, m](const CallControl&) {
      matmul(rt_, m.x, m.w, m.M, m.K, m.N, m.bias, m.y);
      return AsyncResult::none();
    });
  }

  void Attention(const Napi::CallbackInfo& info) {
    AttentionShape s{i64(info[3]), i64(info[4]), i64(info[5]), i64(info[6]), i64(info[7])};
    s.keyBlocks = info.Length() > 10 && info[10].IsBoolean() && info[10].As<Napi::Boolean>().Value();
    assert(lenF32(info[0]) >= static_cast<size_t>(s.T * s.nHead * s.headDim));
    assert(lenF32(info[8]) >= static_cast<size_t>(s.T * s.nHead * s.headDim));
    const size_t kvLen = static_cast<size_t>((s.pos0 + s.T) * s.nKvHead * s.headDim);
    auto lock = calls_.lock();
    const PrefetchList* hint = planHint(info[9], attentionHintBytes(s));
    if (info[1].As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array) {  // an f16 cache
      const auto k = info[1].As<Napi::Uint16Array>(), v = info[2].As<Napi::Uint16Array>();
      const size_t kLen = s.keyBlocks ? static_cast<size_t>((s.pos0 + s.T + 31) / 32 * 32 * s.nKvHead * s.headDim) : kvLen;  // whole blocks
      assert(k.ElementLength() >= kLen && v.ElementLength() >= kvLen);
      (void)kLen;
      attentionF16(rt_, inF32(info[0]), k.Data(), v.Data(), s, outF32(info[8]), hint);
      return;
    }
    assert(lenF32(info[1]) >= kvLen && lenF32(info[2]) >= kvLen);
    attention(rt_, inF32(info[0]), inF32(info[1]), inF32(info[2]), s, outF32(info[8]), hint);
  }

  /**
   * hint_ = the plans of the packed handles in `handles` (an array, or null/undefined: none), in
   * order, up to maxBytes in all; null when it holds no line. Under calls_.
   */
  const PrefetchList* planHint(const Napi::Value& handles, int64_t maxBytes) {
    hint_.clear();
    if (!handles.IsArray() || maxBytes < 64) return nullptr;
    const Napi::Array a = handles.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      const int64_t left = maxBytes - hint_.lines() * 64;
      if (left < 64) break;
      const PackedWeight* w = a.Get(i).As<Napi::External<PackedHolder>>().Data()->w;
      if (w != nullptr) prefetchPlan(*w, rt_.pool.threads(), left, &hint_);  // null: freed early (packedFree)
    }
    return hint_.lines() > 0 ? &hint_ : nullptr;
  }

  /** The plan of planHint as [handle index, byte offset from the handle's data (row-major views: its part's row 0, part·2^40 added), bytes] per range. */
  Napi::Value PrefetchPlan(const Napi::CallbackInfo& info) {
    const Napi::Array a = info[0].As<Napi::Array>();
    const int threads = static_cast<int>(i64(info[1]));
    auto lock = calls_.lock();
    PrefetchList pl;
    pl.clear();
    std::vector<size_t> firstRange;
    for (uint32_t i = 0; i < a.Length(); ++i) {
      firstRange.push_back(pl.r.size());
      const int64_t left = i64(info[2]) - pl.lines() * 64;
      if (left >= 64) prefetchPlan(*packedOf(a.Get(i)), threads, left, &pl);
    }
    firstRange.push_back(pl.r.size());
    Napi::Float64Array out = Napi::Float64Array::New(info.Env(), 3 * pl.r.size());
    for (uint32_t i = 0; i < a.Length(); ++i) {
      const PackedWeight& w = *packedOf(a.Get(i));
      for (size_t j = firstRange[i]; j < firstRange[i + 1]; ++j) {
        double off = static_cast<double>(pl.r[j].p - w.data);
        for (int p = 0; w.L.rowMajor && p < w.nParts; ++p) {  // the part whose rows hold the range
          const uint8_t* row0 = w.partData[p];
          if (pl.r[j].p >= row0 && pl.r[j].p < row0 + w.partN[p] * w.L.codeBytes) off = static_cast<double>(pl.r[j].p - row0) + p * 1099511627776.0;
        }
        out[3 * j] = i;
        out[3 * j + 1] = off;
        out[3 * j + 2] = static_cast<double>(pl.r[j].bytes);
      }
    }
    return out;
  }

  Napi::Value SpanSplitClaims(const Napi::CallbackInfo& info) {
    const Napi::Float64Array rgAt = info[0].As<Napi::Float64Array>(), partN = info[1].As<Napi::Float64Array>();
    const int nParts = static_cast<int>(partN.ElementLength());
    assert(nParts >= 1 && nParts <= kMaxParts && rgAt.ElementLength() == static_cast<size_t>(nParts) + 1);
    int64_t at[kMaxParts + 1], n[kMaxParts];
    for (int p = 0; p <= nParts; ++p) at[p] = static_cast<int64_t>(rgAt[p]);
    for (int p = 0; p < nParts; ++p) n[p] = static_cast<int64_t>(partN[p]);
    const bool concurrent = info[4].IsNull();
    const Napi::Int32Array order = concurrent ? Napi::Int32Array() : info[4].As<Napi::Int32Array>();
    auto lock = calls_.lock();
    const std::vector<double> log = spanSplitClaims(at, n, nParts, static_cast<int>(i64(info[2])), static_cast<int>(i64(info[3])),
                                                    concurrent ? nullptr : order.Data(), concurrent ? 0 : static_cast<int64_t>(order.ElementLength()),
                                                    concurrent ? &rt_ : nullptr);
    Napi::Float64Array out = Napi::Float64Array::New(info.Env(), log.size());
    std::memcpy(out.Data(), log.data(), log.size() * sizeof(double));
    return out;
  }

  void Swiglu(const Napi::CallbackInfo& info) {
    const int64_t n = i64(info[2]);
    assert(lenF32(info[0]) >= static_cast<size_t>(n) && lenF32(info[1]) >= static_cast<size_t>(n));
    auto lock = calls_.lock();
    swiglu(rt_, outF32(info[0]), inF32(info[1]), n);
  }

  void RmsNorm(const Napi::CallbackInfo& info) {
    const int64_t T = i64(info[2]), H = i64(info[3]);
    assert(lenF32(info[0]) >= static_cast<size_t>(T * H) && lenF32(info[1]) >= static_cast<size_t>(H) && lenF32(info[5]) >= static_cast<size_t>(T * H));
    auto lock = calls_.lock();
    rmsNorm(rt_, inF32(info[0]), inF32(info[1]), T, H, info[4].As<Napi::Number>().FloatValue(), outF32(info[5]));
  }

  void Rope(const Napi::CallbackInfo& info) {
    const int64_t T = i64(info[1]), nHeads = i64(info[2]), d = i64(info[3]), pos0 = i64(info[4]);
    assert(lenF32(info[0]) >= static_cast<size_t>(T * nHeads * d) && lenF32(info[5]) >= static_cast<size_t>((pos0 + T) * (d / 2)) &&
           lenF32(info[6]) >= static_cast<size_t>((pos0 + T) * (d / 2)));
    auto lock = calls_.lock();
    rope(rt_, outF32(info[0]), T, nHeads, d, pos0, inF32(info[5]), inF32(info[6]));
  }

  void Add(const Napi::CallbackInfo& info) {
    const int64_t n = i64(info[3]);
    assert(lenF32(info[0]) >= static_cast<size_t>(n) && lenF32(info[1]) >= static_cast<size_t>(n) && lenF32(info[2]) >= static_cast<size_t>(n));
    auto lock = calls_.lock();
    add(rt_, inF32(info[0]), inF32(info[1]), outF32(info[2]), n);
  }

  void ToF16(const Napi::CallbackInfo& info) {
    const int64_t n = i64(info[2]);
    Napi::Uint16Array dst = info[1].As<Napi::Uint16Array>();
    assert(lenF32(info[0]) >= static_cast<size_t>(n) && dst.ElementLength() >= static_cast<size_t>(n));
    auto lock = calls_.lock();
    toF16(rt_, inF32(info[0]), dst.Data(), n);
  }

  void ToF16Keys(const Napi::CallbackInfo& info) {
    const int64_t T = i64(info[2]), pos0 = i64(info[3]), nKvHead = i64(info[4]), d = i64(info[5]);
    Napi::Uint16Array dst = info[1].As<Napi::Uint16Array>();
    assert(lenF32(info[0]) >= static_cast<size_t>(T * nKvHead * d) && dst.ElementLength() >= static_cast<size_t>((pos0 + T + 31) / 32 * 32 * nKvHead * d));
    auto lock = calls_.lock();
    toF16Keys(rt_, inF32(info[0]), dst.Data(), T, pos0, nKvHead, d);
  }

  Napi::Value Argmax(const Napi::CallbackInfo& info) {
    const int64_t n = i64(info[1]);
    assert(lenF32(info[0]) >= static_cast<size_t>(n));
    auto lock = calls_.lock();
    return Napi::Number::New(info.Env(), static_cast<double>(argmax(rt_, inF32(info[0]), n)));
  }

  /**
   * A decode-step plan from the TS recorder's flat record (graph.h kGraphRecord f64 per op):
   * array indices name entries of `arrays` (typed arrays, views included; −1 none), the weight
   * index an entry of `handles`; addresses are rebased to position 0 with each perPos.
   */
  Napi::Value GraphBuild(const Napi::CallbackInfo& info) {
    const Napi::Float64Array rec = info[0].As<Napi::Float64Array>();
    const Napi::Array arrays = info[1].As<Napi::Array>(), handles = info[2].As<Napi::Array>();
    const int64_t recPos = i64(info[3]);
    std::vector<uint8_t*> data(arrays.Length());
    for (uint32_t a = 0; a < arrays.Length(); ++a) {
      const Napi::TypedArray t = arrays.Get(a).As<Napi::TypedArray>();
      data[a] = static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset();
    }
    auto g = std::make_unique<Graph>();
    const size_t nOps = rec.ElementLength() / kGraphRecord;
    for (size_t o = 0; o < nOps; ++o) {
      const double* r = rec.Data() + o * kGraphRecord;
      GraphOp op;
      assert(r[0] >= 0 && r[0] < kGraphKinds);
      op.kind = static_cast<GraphOpKind>(static_cast<int32_t>(r[0]));
      if (r[1] >= 0) {
        op.w = handles.Get(static_cast<uint32_t>(r[1])).As<Napi::External<PackedHolder>>().Data()->w;
        assert(op.w != nullptr);
      }
      op.f32Acts = r[2] != 0;
      op.eps = static_cast<float>(r[3]);
      for (int k = 0; k < kGraphInts; ++k) op.i[k] = static_cast<int64_t>(r[4 + k]);
      for (int k = 0; k < kGraphPtrs; ++k) {
        const double idx = r[4 + kGraphInts + k];
        if (idx < 0) continue;
        assert(idx < static_cast<double>(data.size()));
        op.p[k].perPos = static_cast<int64_t>(r[4 + kGraphInts + kGraphPtrs + k]);
        op.p[k].base = data[static_cast<size_t>(idx)] - op.p[k].perPos * recPos;
      }
      g->ops.push_back(op);
    }
    return Napi::External<Graph>::New(info.Env(), g.release(), [](Napi::Env, Graph* p) { delete p; });
  }

  void GraphRun(const Napi::CallbackInfo& info) {
    const Graph* g = info[0].As<Napi::External<Graph>>().Data();
    const int64_t pos = i64(info[1]);
    auto lock = calls_.lock();
    runGraph(rt_, *g, pos);
  }

  void SetThreads(const Napi::CallbackInfo& info) {
    const int64_t n = i64(info[0]);
    assert(n >= 1 && n <= 1024);
    auto lock = calls_.lock();
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
    auto lock = calls_.lock();
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
    auto lock = calls_.lock();
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

  struct SyrkArgs {
    const float* x;
    int64_t T, K;
    float* sum32;
    double* sum64;
    float alpha, beta;
  };
  static SyrkArgs syrkArgs(const Napi::CallbackInfo& info) {
    SyrkArgs s{inF32(info[0]), i64(info[1]), i64(info[2]), nullptr, nullptr,
               static_cast<float>(info[4].As<Napi::Number>().DoubleValue()), static_cast<float>(info[5].As<Napi::Number>().DoubleValue())};
    assert(lenF32(info[0]) >= static_cast<size_t>(s.T * s.K));
    const auto sum = info[3].As<Napi::TypedArray>();
    assert(sum.ElementLength() >= static_cast<size_t>(s.K * s.K));
    if (sum.TypedArrayType() == napi_float64_array) {
      s.sum64 = info[3].As<Napi::Float64Array>().Data();
    } else {
      assert(sum.TypedArrayType() == napi_float32_array);
      s.sum32 = outF32(info[3]);
    }
    return s;
  }

  void SyrkAccumulate(const Napi::CallbackInfo& info) {
    const SyrkArgs s = syrkArgs(info);
    auto lock = calls_.lock();
    syrkAccumulate(rt_, s.x, s.T, s.K, s.sum32, s.sum64, s.alpha, s.beta);
  }

  Napi::Value SyrkAccumulateAsync(const Napi::CallbackInfo& info) {
    const SyrkArgs s = syrkArgs(info);
    return calls_.run(info.Env(), {info[0], info[3]}, info[6], [this, s](const CallControl& c) {
      syrkAccumulate(rt_, s.x, s.T, s.K, s.sum32, s.sum64, s.alpha, s.beta, &c);
      return AsyncResult::none();
    });
  }

  struct HinvArgs {
    const float* h32;
    const double* h64;
    int64_t K;
    const int32_t* perm;
    const double* diag;
    float* out;
  };
  static HinvArgs hinvArgs(const Napi::CallbackInfo& info) {
    const int64_t K = i64(info[1]);
    const auto h = info[0].As<Napi::TypedArray>();
    assert(h.ElementLength() >= static_cast<size_t>(K * K));
    const bool f64 = h.TypedArrayType() == napi_float64_array;
    const int32_t* perm = info[2].IsTypedArray() ? info[2].As<Napi::Int32Array>().Data() : nullptr;
    const auto diag = info[3].As<Napi::Float64Array>();
    assert(diag.ElementLength() >= static_cast<size_t>(K) && lenF32(info[4]) >= static_cast<size_t>(K * K));
    return {f64 ? nullptr : inF32(info[0]), f64 ? info[0].As<Napi::Float64Array>().Data() : nullptr, K, perm, diag.Data(), outF32(info[4])};
  }

  Napi::Value GptqHinv(const Napi::CallbackInfo& info) {
    const HinvArgs h = hinvArgs(info);
    auto lock = calls_.lock();
    return Napi::Boolean::New(info.Env(), gptqHinv(rt_, h.h32, h.h64, h.K, h.perm, h.diag, h.out));
  }

  Napi::Value GptqHinvAsync(const Napi::CallbackInfo& info) {
    const HinvArgs h = hinvArgs(info);
    return calls_.run(info.Env(), {info[0], info[2], info[3], info[4]}, info[5], [this, h](const CallControl& c) {
      return AsyncResult::boolean(gptqHinv(rt_, h.h32, h.h64, h.K, h.perm, h.diag, h.out, &c));
    });
  }

  static GptqQuantArgs quantArgs(const Napi::CallbackInfo& info) {
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
    a.blockStartGrids = info[15].As<Napi::Boolean>().Value();
    const size_t G = static_cast<size_t>((a.K + a.g - 1) / a.g), NK = static_cast<size_t>(a.N * a.K);
    assert(lenF32(info[0]) >= NK && lenF32(info[3]) >= static_cast<size_t>(a.K * a.K) && lenF32(info[13]) >= NK);
    assert(lenF32(info[10]) >= a.N * G && info[11].As<Napi::Uint8Array>().ElementLength() >= a.N * G);
    assert(info[12].As<Napi::Uint8Array>().ElementLength() >= NK);
    return a;
  }

  Napi::Value GptqQuantize(const Napi::CallbackInfo& info) {
    const GptqQuantArgs a = quantArgs(info);
    auto lock = calls_.lock();
    return Napi::Number::New(info.Env(), gptqQuantize(rt_, a));
  }

  Napi::Value GptqQuantizeAsync(const Napi::CallbackInfo& info) {
    const GptqQuantArgs a = quantArgs(info);
    return calls_.run(info.Env(), {info[0], info[1], info[2], info[3], info[9], info[10], info[11], info[12], info[13]}, info[16],
                      [this, a](const CallControl& c) {
                        GptqQuantArgs ac = a;
                        ac.ctl = &c;
                        return AsyncResult::number(gptqQuantize(rt_, ac));
                      });
  }

  // ---------------------------------------------------------------- packed weights (packed.h)

  /** Owns one PackedWeight; packedFree empties it early, the GC finalizer frees what is left. */
  struct PackedHolder {
    PackedWeight* w;
  };

  /** Native bytes a handle accounts for: a view's memory belongs to its concatenated weight. */
  static int64_t ownedBytes(const PackedWeight* w) { return w->view || w->L.rowMajor ? 0 : static_cast<int64_t>(w->bytes); }

  static void FinalizePacked(Napi::Env env, PackedHolder* h) {
    if (h->w != nullptr) {
      Napi::MemoryManagement::AdjustExternalMemory(env, -ownedBytes(h->w));
      freePacked(h->w);
    }
    delete h;
  }

  /** { handle, N, K, Np, Kp, G, groupSize, Ba, scaleBytes, mins, bytes, rowGroupBytes } or null (out of memory). */
  Napi::Value WrapPacked(Napi::Env env, PackedWeight* w) {
    if (w == nullptr) return env.Null();
    Napi::MemoryManagement::AdjustExternalMemory(env, ownedBytes(w));
    const PackedLayout& L = w->L;
    Napi::Object o = Napi::Object::New(env);
    o.Set("handle", Napi::External<PackedHolder>::New(env, new PackedHolder{w}, FinalizePacked));
    o.Set("N", Napi::Number::New(env, static_cast<double>(L.N)));
    o.Set("K", Napi::Number::New(env, static_cast<double>(L.K)));
    o.Set("Np", Napi::Number::New(env, static_cast<double>(L.Np)));
    o.Set("Kp", Napi::Number::New(env, static_cast<double>(L.Kp)));
    o.Set("G", Napi::Number::New(env, static_cast<double>(L.G)));
    o.Set("groupSize", Napi::Number::New(env, static_cast<double>(L.g)));
    o.Set("Ba", Napi::Number::New(env, static_cast<double>(L.Ba)));
    o.Set("scaleBytes", Napi::Number::New(env, L.scaleBytes));
    o.Set("mins", Napi::Boolean::New(env, L.mins));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(w->bytes)));
    o.Set("rowGroupBytes", Napi::Number::New(env, static_cast<double>(L.rgStride)));
    o.Set("rowMajor", Napi::Boolean::New(env, L.rowMajor));
    return o;
  }

  static const int32_t* optI32(const Napi::Value& v) { return v.IsTypedArray() ? v.As<Napi::Int32Array>().Data() : nullptr; }

  Napi::Value PackQ4(const Napi::CallbackInfo& info) {
    const float* mins = info[2].IsTypedArray() ? inF32(info[2]) : nullptr;
    return WrapPacked(info.Env(), packQ4(info[0].As<Napi::Uint8Array>().Data(), inF32(info[1]), mins, i64(info[3]), i64(info[4]),
                                         i64(info[5]), optI32(info[6])));
  }

  Napi::Value PackQ8(const Napi::CallbackInfo& info) {
    return WrapPacked(info.Env(), packQ8(info[0].As<Napi::Int8Array>().Data(), inF32(info[1]), i64(info[2]), i64(info[3]),
                                         i64(info[4]), optI32(info[5])));
  }

  Napi::Value Pack16(const Napi::CallbackInfo& info) {
    const H16Type t = info[1].As<Napi::Boolean>().Value() ? H16Type::BF16 : H16Type::F16;
    return WrapPacked(info.Env(), pack16(info[0].As<Napi::Uint16Array>().Data(), t, i64(info[2]), i64(info[3])));
  }

  static const uint8_t* optBytes(const Napi::Value& v) {
    if (!v.IsTypedArray()) return nullptr;
    const auto a = v.As<Napi::TypedArray>();
    return static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  }

  Napi::Value Repack(const Napi::CallbackInfo& info) {
    RepackArgs a{static_cast<RepackSource>(i64(info[0])), optBytes(info[1]), optBytes(info[2]), optBytes(info[3]), optI32(info[4]),
                 optI32(info[5]), i64(info[6]), i64(info[7]), i64(info[8]), static_cast<int32_t>(i64(info[9]))};
    RepackResult r;
    {
      auto lock = calls_.lock();
      r = repackSource(rt_, a);
    }
    if (r.w != nullptr) return WrapPacked(info.Env(), r.w);
    Napi::Array out = Napi::Array::New(info.Env(), 2);
    out.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(r.status)));
    out.Set(1u, Napi::Number::New(info.Env(), static_cast<double>(r.index)));
    return out;
  }

  Napi::Value PackedBytes(const Napi::CallbackInfo& info) {
    const PackedWeight* w = info[0].As<Napi::External<PackedHolder>>().Data()->w;
    assert(w != nullptr);
    Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), w->bytes);
    if (w->L.rowMajor && w->nParts > 0) {  // a concatenation of views: each part where the file has it
      size_t at = 0;
      for (int p = 0; p < w->nParts; ++p) {
        const size_t n = static_cast<size_t>(w->partN[p] * w->L.codeBytes);
        std::memcpy(out.Data() + at, w->partData[p], n);
        at += n;
      }
    } else {
      std::memcpy(out.Data(), w->data, w->bytes);
    }
    return out;
  }

  void PackedFree(const Napi::CallbackInfo& info) {
    PackedHolder* h = info[0].As<Napi::External<PackedHolder>>().Data();
    auto lock = calls_.lock();  // never under a running matmulPackedAsync
    if (h->w == nullptr) return;
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -ownedBytes(h->w));
    freePacked(h->w);
    h->w = nullptr;
  }

  static const PackedWeight* packedOf(const Napi::Value& v) {
    const PackedWeight* w = v.As<Napi::External<PackedHolder>>().Data()->w;
    assert(w != nullptr);
    return w;
  }

  /** packedConcat(handles[]): PackedInfo of the concatenation, or [status] (1 no memory, 2 incompatible parts). */
  Napi::Value PackedConcat(const Napi::CallbackInfo& info) {
    const Napi::Array hs = info[0].As<Napi::Array>();
    const PackedWeight* parts[kMaxParts];
    const uint32_t n = hs.Length();
    assert(n >= 1 && n <= static_cast<uint32_t>(kMaxParts));
    for (uint32_t i = 0; i < n; ++i) parts[i] = packedOf(hs.Get(i));
    ConcatStatus st;
    PackedWeight* w = packedConcat(parts, static_cast<int>(n), &st);
    if (w != nullptr) return WrapPacked(info.Env(), w);
    Napi::Array out = Napi::Array::New(info.Env(), 1);
    out.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(st)));
    return out;
  }

  /** packedView(handle, part): PackedInfo of part p of a concatenated weight (the caller keeps that weight alive). */
  Napi::Value PackedView(const Napi::CallbackInfo& info) {
    const PackedWeight* w = packedOf(info[0]);
    const int64_t p = i64(info[1]);
    assert(p >= 0 && p < w->nParts);
    return WrapPacked(info.Env(), packedView(*w, static_cast<int>(p)));
  }

  /** Owns one reference to a mapped file; mapRelease drops it early, the GC finalizer otherwise. */
  struct MapHolder {
    MappedFile* f;
  };

  static void FinalizeMap(Napi::Env, MapHolder* h) {
    releaseFile(h->f);
    delete h;
  }

  Napi::Value MapFile(const Napi::CallbackInfo& info) {
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    MapStatus st;
    int err;
    MappedFile* f = qllm::mapFile(path.c_str(), info[1].As<Napi::Boolean>().Value(), &st, &err);
    if (f == nullptr) {
      Napi::Array out = Napi::Array::New(info.Env(), 2);
      out.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(st)));
      out.Set(1u, Napi::Number::New(info.Env(), err));
      return out;
    }
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("handle", Napi::External<MapHolder>::New(info.Env(), new MapHolder{f}, FinalizeMap));
    o.Set("bytes", Napi::Number::New(info.Env(), static_cast<double>(mappedBytes(f))));
    return o;
  }

  void MapRelease(const Napi::CallbackInfo& info) {
    MapHolder* h = info[0].As<Napi::External<MapHolder>>().Data();
    releaseFile(h->f);
    h->f = nullptr;
  }

  Napi::Value View16(const Napi::CallbackInfo& info) {
    MappedFile* f = info[0].As<Napi::External<MapHolder>>().Data()->f;
    assert(f != nullptr);
    const H16Type t = info[2].As<Napi::Boolean>().Value() ? H16Type::BF16 : H16Type::F16;
    return WrapPacked(info.Env(), view16(f, static_cast<size_t>(i64(info[1])), t, i64(info[3]), i64(info[4])));
  }

  /** matmulPackedParts(x, handle, M, biases (Float32Array | null)[], outs[], f32Acts): one output per part. */
  void MatmulPackedParts(const Napi::CallbackInfo& info) {
    const PackedWeight* w = packedOf(info[1]);
    const int64_t M = i64(info[2]);
    const Napi::Array bs = info[3].As<Napi::Array>(), os = info[4].As<Napi::Array>();
    const int n = w->nParts == 0 ? 1 : w->nParts;
    assert(os.Length() == static_cast<uint32_t>(n) && bs.Length() == static_cast<uint32_t>(n));
    assert(lenF32(info[0]) >= static_cast<size_t>(M * w->L.K));
    const float* bias[kMaxParts];
    float* ys[kMaxParts];
    for (int p = 0; p < n; ++p) {
      const Napi::Value b = bs.Get(static_cast<uint32_t>(p)), o = os.Get(static_cast<uint32_t>(p));
      bias[p] = b.IsTypedArray() ? inF32(b) : nullptr;
      ys[p] = outF32(o);
      assert(lenF32(o) >= static_cast<size_t>(M * (w->nParts == 0 ? w->L.N : w->partN[p])));
    }
    auto lock = calls_.lock();
    matmulPackedParts(rt_, inF32(info[0]), *w, M, bias, ys, info[5].As<Napi::Boolean>().Value());
  }

  void MatmulPacked(const Napi::CallbackInfo& info) {
    const PackedWeight* w = info[1].As<Napi::External<PackedHolder>>().Data()->w;
    assert(w != nullptr);
    const int64_t M = i64(info[2]);
    assert(lenF32(info[0]) >= static_cast<size_t>(M * w->L.K) && lenF32(info[4]) >= static_cast<size_t>(M * w->L.N));
    const float* bias = info[3].IsTypedArray() ? inF32(info[3]) : nullptr;
    auto lock = calls_.lock();
    matmulPacked(rt_, inF32(info[0]), *w, M, bias, outF32(info[4]), info[5].As<Napi::Boolean>().Value());
  }

  /** matmulPacked on a worker thread (prefill-sized calls); the TS wrapper keeps the handle alive. */
  Napi::Value MatmulPackedAsync(const Napi::CallbackInfo& info) {
    const PackedWeight* w = info[1].As<Napi::External<PackedHolder>>().Data()->w;
    assert(w != nullptr);
    const int64_t M = i64(info[2]);
    assert(lenF32(info[0]) >= static_cast<size_t>(M * w->L.K) && lenF32(info[4]) >= static_cast<size_t>(M * w->L.N));
    const float* x = inF32(info[0]);
    const float* bias = info[3].IsTypedArray() ? inF32(info[3]) : nullptr;
    float* y = outF32(info[4]);
    const bool f32Acts = info[5].As<Napi::Boolean>().Value();
    return calls_.run(info.Env(), {info[0], info[3], info[4]}, info[6], [this, x, w, M, bias, y, f32Acts](const CallControl&) {
      matmulPacked(rt_, x, *w, M, bias, y, f32Acts);
      return AsyncResult::none();
    });
  }

  // ---------------------------------------------------------------- LLM.int8() (llm_int8_napi.h)
  Napi::Value Int8Pack(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    return napiInt8Pack(rt_, info);
  }
  Napi::Value Int8Unpack(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    return napiInt8Unpack(rt_, info);
  }
  Napi::Value Int8Bytes(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    return napiInt8Bytes(rt_, info);
  }
  Napi::Value Int8Dispose(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    return napiInt8Dispose(rt_, info);
  }
  Napi::Value Int8Levels(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    return napiInt8Levels(rt_, info);
  }
  Napi::Value Int8Matmul(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    return napiInt8Matmul(rt_, info);
  }
  Napi::Value Int8Concat(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    return napiInt8Concat(rt_, info);
  }
  Napi::Value Int8MatmulParts(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    return napiInt8MatmulParts(rt_, info);
  }

  // ---------------------------------------------------------------- AWQ (awq.h)

  Napi::Value AwqFakeQuantizeAsync(const Napi::CallbackInfo& info) {
    const float* w = inF32(info[0]);
    const float* s = info[1].IsTypedArray() ? inF32(info[1]) : nullptr;
    const int64_t N = i64(info[2]), K = i64(info[3]), g = i64(info[5]);
    const int bits = static_cast<int>(i64(info[4]));
    float* out = outF32(info[6]);
    assert(lenF32(info[0]) >= static_cast<size_t>(N * K) && lenF32(info[6]) >= static_cast<size_t>(N * K));
    assert(s == nullptr || lenF32(info[1]) >= static_cast<size_t>(K));
    return calls_.run(info.Env(), {info[0], info[1], info[6]}, info[7], [=, this](const CallControl&) {
      awqFakeQuantize(rt_, w, s, N, K, bits, g, out);
      return AsyncResult::none();
    });
  }

  Napi::Value AwqClipSearchAsync(const Napi::CallbackInfo& info) {
    const float* w = inF32(info[0]);
    const float* x = inF32(info[1]);
    const int64_t N = i64(info[2]), K = i64(info[3]), T = i64(info[4]), g = i64(info[6]);
    const int bits = static_cast<int>(i64(info[5]));
    float* maxVal = outF32(info[7]);
    assert(lenF32(info[0]) >= static_cast<size_t>(N * K) && lenF32(info[1]) >= static_cast<size_t>(T * K));
    assert(lenF32(info[7]) >= static_cast<size_t>(N * (K / g)));
    return calls_.run(info.Env(), {info[0], info[1], info[7]}, info[8], [=, this](const CallControl& c) {
      awqClipSearch(rt_, w, x, N, K, T, bits, g, maxVal, &c);
      return AsyncResult::none();
    });
  }

  Napi::Value PackedKernelLevel(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), packedKernelsFor(rt_.kernels->name)->name);
  }

  Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
    const int threads = static_cast<int>(i64(info[1])), reps = static_cast<int>(i64(info[2]));
    assert(threads >= 1 && threads <= rt_.pool.threads() && reps >= 1);
    Napi::Float64Array out = Napi::Float64Array::New(info.Env(), static_cast<size_t>(reps));
    auto lock = calls_.lock();
    readBandwidth(rt_, static_cast<size_t>(i64(info[0])), threads, reps, out.Data());
    return out;
  }

  // ---------------------------------------------------------------- conversions (convert.h)

  static void* taData(const Napi::Value& v) {
    const auto a = v.As<Napi::TypedArray>();
    return static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  }
  static WType wtype(const Napi::Value& v) { return static_cast<WType>(i64(v)); }

  Napi::Value ConvertRows(const Napi::CallbackInfo& info) {
    const int32_t* rows = optI32(info[2]);
    auto lock = calls_.lock();
    const int64_t bad = convertRows(rt_, taData(info[0]), wtype(info[1]), rows, i64(info[3]), i64(info[4]), taData(info[5]), wtype(info[6]));
    return Napi::Number::New(info.Env(), static_cast<double>(bad));
  }

  void GgmlQuantizeRows(const Napi::CallbackInfo& info) {
    const int32_t* rows = optI32(info[2]);
    auto lock = calls_.lock();
    ggmlQuantizeRows(rt_, taData(info[0]), wtype(info[1]), rows, i64(info[3]), i64(info[4]), static_cast<int>(i64(info[5])),
                     static_cast<uint8_t*>(taData(info[6])));
  }

  Napi::Value RtnQuantize(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    const int64_t bad = rtnQuantize(rt_, taData(info[0]), wtype(info[1]), i64(info[2]), i64(info[3]), static_cast<int>(i64(info[4])), i64(info[5]),
                                    info[6].As<Napi::Boolean>().Value(), static_cast<uint8_t*>(taData(info[7])), static_cast<float*>(taData(info[8])),
                                    static_cast<uint8_t*>(taData(info[9])), static_cast<double*>(taData(info[10])));
    return Napi::Number::New(info.Env(), static_cast<double>(bad));
  }

  void GptqPackCodes(const Napi::CallbackInfo& info) {
    auto lock = calls_.lock();
    gptqPackCodes(rt_, static_cast<const uint8_t*>(taData(info[0])), i64(info[1]), i64(info[2]), static_cast<int>(i64(info[3])),
                  static_cast<int32_t*>(taData(info[4])));
  }

  Napi::Value AlignedBuffer(const Napi::CallbackInfo& info) { return alignedBuffer(info); }

  std::vector<const KernelTable*> levels_;
  Runtime rt_;
  CallGate calls_;
  PrefetchList hint_;  // the current call's prefetch hint (planHint), reused
};

}  // namespace qllm

using QuantizeLlmAddon = qllm::Addon;
NODE_API_ADDON(QuantizeLlmAddon)

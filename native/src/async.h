// Running a long native call off the JS thread (a Napi::AsyncWorker per call).
//
// GENERIC AND REUSABLE: any kernel entry point of addon.cc that may take more
// than ~1 ms should be exposed through `runAsync` (this is how the GPTQ sweep,
// Hinv, the Hessian syrk and big GEMMs are); other helpers adding kernels are
// welcome to use it. Shape of an async entry point:
//
//   Napi::Value FooAsync(const Napi::CallbackInfo& info) {
//     FooArgs a = ...;                       // unpack + assert, on the JS thread
//     return calls_.run(info.Env(), {info[0], info[3]} /* arrays to keep alive */, info[9] /* ctl | null */,
//                       [this, a](const CallControl& c) { return AsyncResult::number(foo(rt_, a, &c)); });
//   }
//
// The Promise resolves with the result, or rejects with an Error whose code is
// "E_CANCELLED" when JS asked to cancel (outputs are then partly written and must
// be discarded). Cancellation and progress travel through an optional Int32Array
// `ctl` [4] shared with JS, so nothing crosses threads but plain memory:
//
//   ctl[0]  cancel request: JS stores 1, the kernel polls it between work units
//   ctl[1]  units done       (written by the kernel, monotone)
//   ctl[2]  units in total   (written by the kernel when it plans the work)
//
// One call at a time: every entry point, synchronous or not, holds the
// CallGate's mutex while it uses the Runtime (its pool and scratch buffers are
// not reentrant). A synchronous call made while an async one runs therefore
// waits for it instead of racing it.
#pragma once
#include <napi.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <utility>
#include <vector>

#include "control.h"

namespace qllm {

/** What an async call resolves with. */
struct AsyncResult {
  enum Kind { kUndefined, kNumber, kBoolean } kind = kUndefined;
  double value = 0.0;
  static AsyncResult none() { return {}; }
  static AsyncResult number(double v) { return {kNumber, v}; }
  static AsyncResult boolean(bool v) { return {kBoolean, v ? 1.0 : 0.0}; }
  Napi::Value toJs(Napi::Env env) const {
    if (kind == kNumber) return Napi::Number::New(env, value);
    if (kind == kBoolean) return Napi::Boolean::New(env, value != 0.0);
    return env.Undefined();
  }
};

class CallGate {
 public:
  using Work = std::function<AsyncResult(const CallControl&)>;

  /** Held by synchronous entry points for the duration of the call. */
  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mu_); }

  /**
   * Runs `work` on a libuv worker thread (holding the gate) and returns its
   * Promise. `keep`: the JS values `work` reads or writes (typed arrays), kept
   * alive until the call ends. `ctl`: null/undefined or an Int32Array of ≥ 3.
   */
  Napi::Value run(Napi::Env env, std::initializer_list<Napi::Value> keep, const Napi::Value& ctl, Work work) {
    int32_t* words = ctl.IsTypedArray() ? ctl.As<Napi::Int32Array>().Data() : nullptr;
    auto* w = new Worker(env, mu_, std::move(work), words);
    for (const Napi::Value& v : keep) {
      if (v.IsObject()) w->keep(v.As<Napi::Object>());
    }
    if (ctl.IsObject()) w->keep(ctl.As<Napi::Object>());
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

 private:
  class Worker : public Napi::AsyncWorker {
   public:
    Worker(Napi::Env env, std::mutex& mu, Work work, int32_t* ctl)
        : Napi::AsyncWorker(env, "quantize_llm.kernel"), deferred_(Napi::Promise::Deferred::New(env)), mu_(mu),
          work_(std::move(work)), ctl_(ctl) {}
    void keep(const Napi::Object& o) { refs_.push_back(Napi::Persistent(o)); }
    Napi::Promise promise() const { return deferred_.Promise(); }

    void Execute() override {
      std::lock_guard<std::mutex> g(mu_);
      if (ctl_.cancelled()) {  // cancelled before it started: do nothing
        SetError("E_CANCELLED");
        return;
      }
      result_ = work_(ctl_);
      if (ctl_.cancelled()) SetError("E_CANCELLED");
    }
    void OnOK() override { deferred_.Resolve(result_.toJs(Env())); }
    void OnError(const Napi::Error& e) override {
      Napi::Error err = Napi::Error::New(Env(), "native call cancelled");
      err.Set("code", Napi::String::New(Env(), e.Message()));
      deferred_.Reject(err.Value());
    }

   private:
    Napi::Promise::Deferred deferred_;
    std::mutex& mu_;
    Work work_;
    CallControl ctl_;
    AsyncResult result_;
    std::vector<Napi::ObjectReference> refs_;
  };

  std::mutex mu_;
};

}  // namespace qllm

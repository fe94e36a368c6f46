#include "pool.h"

#include <cassert>
#include <chrono>

namespace qllm {
namespace {

// How long a worker keeps polling for the next job before it sleeps: short enough to
// be invisible when idle, long enough to bridge the JS work between two kernel calls.
constexpr auto kWorkerSpin = std::chrono::microseconds(200);
// How long the caller polls for the tasks still running on workers before it sleeps.
// It waits on work in flight, so it polls without yielding: in a decode step on the
// Intel KVM host (2 vCPUs) the old 50 µs budget with a yield every 64 polls left
// 8–24 µs on average between the last task's end and the call's return (the caller
// asleep on the condition variable, or yielded to another thread), 1–2 µs this way.
constexpr auto kCallerSpin = std::chrono::microseconds(1000);

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

/** Polls `ready` for up to `budget`, yielding the core now and then when `yield`. */
template <class Pred>
bool spinUntil(Pred ready, std::chrono::microseconds budget, bool yield) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  for (int i = 1;; ++i) {
    if (ready()) return true;
    cpuRelax();
    if ((i & 63) == 0) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (yield) std::this_thread::yield();
    }
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) { start(threads - 1); }

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::resize(int threads) {
  assert(threads >= 1);
  std::lock_guard<std::mutex> runLock(runMu_);
  if (threads == this->threads()) return;
  stop();
  start(threads - 1);
}

void ThreadPool::start(int nWorkers) {
  stop_ = false;
  workers_.reserve(nWorkers);
  for (int i = 0; i < nWorkers; ++i) workers_.emplace_back(&ThreadPool::workerMain, this, i + 1);
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  wakeCv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::run(int nTasks, TaskFn fn, void* ctx) {
  if (nTasks <= 0) return;
  if (workers_.empty() || nTasks == 1) {
    for (int t = 0; t < nTasks; ++t) fn(ctx, t, 0);
    return;
  }
  std::lock_guard<std::mutex> runLock(runMu_);
  Job j;
  {
    std::lock_guard<std::mutex> lk(mu_);
    j = Job{fn, ctx, nTasks, job_.gen + 1};
    if (j.gen == 0) j.gen = 1;  // 0 means "no job yet" to the workers
    job_ = j;
    done_.store(0, std::memory_order_relaxed);
    claim_.store(static_cast<uint64_t>(j.gen) << 32, std::memory_order_relaxed);
    gen_.store(j.gen, std::memory_order_release);
  }
  wakeCv_.notify_all();
  drain(j, 0);
  auto finished = [&] { return done_.load(std::memory_order_acquire) == nTasks; };
  if (spinUntil(finished, kCallerSpin, false)) return;
  std::unique_lock<std::mutex> lk(mu_);
  doneCv_.wait(lk, finished);
}

void ThreadPool::drain(const Job& j, int tid) {
  for (;;) {
    uint64_t cur = claim_.load(std::memory_order_relaxed);
    do {
      // A stale job (other generation) or no task left: nothing to do.
      if (static_cast<uint32_t>(cur >> 32) != j.gen || static_cast<uint32_t>(cur) >= static_cast<uint32_t>(j.nTasks)) return;
    } while (!claim_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_relaxed));
    j.fn(j.ctx, static_cast<int>(static_cast<uint32_t>(cur)), tid);
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == j.nTasks) {
      std::lock_guard<std::mutex> lk(mu_);
      doneCv_.notify_all();
    }
  }
}

void ThreadPool::workerMain(int tid) {
  uint32_t seen = 0;
  for (;;) {
    spinUntil([&] { return gen_.load(std::memory_order_acquire) != seen; }, kWorkerSpin, true);
    Job j;
    {
      std::unique_lock<std::mutex> lk(mu_);
      wakeCv_.wait(lk, [&] { return stop_ || job_.gen != seen; });
      if (stop_) return;
      j = job_;
    }
    seen = j.gen;
    drain(j, tid);
  }
}

}  // namespace qllm

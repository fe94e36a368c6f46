#include "pool.h"

#include <cassert>
#include <chrono>

#include "prefetch.h"

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
// Lines a held worker prefetches between two looks at the job generation (1 KiB: ~40 ns of DRAM
// time at 25 GB/s, so a new job waits little).
constexpr int64_t kHintChunkLines = 16;

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
    held_.store(false);
  }
  wakeCv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::hold(bool on, bool fast, bool joint) {
  if (workers_.empty()) return;
  if (on) {
    if (fast) {
      runMu_.lock();  // the holder's jobs skip it (runFast); other threads' wait for the step's end
      holder_ = std::this_thread::get_id();
      fast_ = true;
      joint_ = joint;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      held_.store(true, std::memory_order_seq_cst);
    }
    wakeCv_.notify_all();  // sleeping workers come back to poll
    return;
  }
  held_.store(false, std::memory_order_seq_cst);
  hint_.store(nullptr, std::memory_order_seq_cst);
  hintAfterJob_ = callerHint_ = nullptr;
  // A worker that loaded the hint before it was cleared counted itself in first (waitHeld).
  while (hintReaders_.load(std::memory_order_seq_cst) != 0) cpuRelax();
  if (fast_) {
    fast_ = joint_ = false;
    holder_ = std::thread::id();
    runMu_.unlock();
  }
}

void ThreadPool::waitHeld(uint32_t seen) {
  const PrefetchList* cur = nullptr;
  int64_t line = 0;
  while (held_.load(std::memory_order_acquire) && gen_.load(std::memory_order_acquire) == seen) {
    hintReaders_.fetch_add(1, std::memory_order_seq_cst);
    const PrefetchList* h = hint_.load(std::memory_order_seq_cst);
    if (h != cur) {
      cur = h;
      line = 0;
    }
    if (h != nullptr && line < h->lines()) {
      const int64_t end = line + kHintChunkLines < h->lines() ? line + kHintChunkLines : h->lines();
      prefetchLines(*h, line, end);
      line = end;
    } else {
      cpuRelax();
    }
    hintReaders_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void ThreadPool::run(int nTasks, TaskFn fn, void* ctx) {
  if (nTasks <= 0) return;
  if (hintAfterJob_ != nullptr) {
    hint_.store(hintAfterJob_, std::memory_order_release);
    hintAfterJob_ = nullptr;
  }
  if (workers_.empty() || nTasks == 1) {
    for (int t = 0; t < nTasks; ++t) fn(ctx, t, 0);
    return;
  }
  if (fast_ && std::this_thread::get_id() == holder_) {
    runFast(nTasks, fn, ctx);
    return;
  }
  std::lock_guard<std::mutex> runLock(runMu_);
  Job j;
  {
    std::lock_guard<std::mutex> lk(mu_);
    j = Job{fn, ctx, nTasks, nextGen(), false};
    publish(j);
  }
  wakeCv_.notify_all();
  drain(j, 0);
  callerWait(nTasks, false);
}

uint32_t ThreadPool::nextGen() const {
  const uint32_t g = gen_.load(std::memory_order_relaxed) + 1;
  return g == 0 ? 1 : g;  // 0 means "no job yet" to the workers
}

void ThreadPool::publish(const Job& j) {
  jobFn_.store(j.fn, std::memory_order_relaxed);
  jobCtx_.store(j.ctx, std::memory_order_relaxed);
  jobN_.store(j.nTasks, std::memory_order_relaxed);
  jobFast_.store(j.fast, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  claim_.store(static_cast<uint64_t>(j.gen) << 32, std::memory_order_relaxed);
  gen_.store(j.gen, std::memory_order_release);
}

ThreadPool::Job ThreadPool::jobOf(uint32_t g) const {
  return Job{jobFn_.load(std::memory_order_relaxed), jobCtx_.load(std::memory_order_relaxed), jobN_.load(std::memory_order_relaxed), g,
             jobFast_.load(std::memory_order_relaxed)};
}

void ThreadPool::runFast(int nTasks, TaskFn fn, void* ctx) {
  const Job j{fn, ctx, nTasks, nextGen(), true};
  publish(j);
  drain(j, 0);
  callerWait(nTasks, true);
}

void ThreadPool::callerWait(int nTasks, bool fast) {
  auto finished = [&] { return done_.load(std::memory_order_acquire) == nTasks; };
  // Held: the caller waits on the workers' last tasks prefetching the hint too (its own place in it).
  if (held_.load(std::memory_order_relaxed)) {
    const PrefetchList* h = hint_.load(std::memory_order_relaxed);  // set by this thread
    if (h != callerHint_) {
      callerHint_ = h;
      callerLine_ = 0;
    }
    while (h != nullptr && callerLine_ < h->lines() && !finished()) {
      const int64_t end = callerLine_ + kHintChunkLines < h->lines() ? callerLine_ + kHintChunkLines : h->lines();
      prefetchLines(*h, callerLine_, end);
      callerLine_ = end;
    }
  }
  if (fast) {  // the workers are held: nobody sleeps, nobody notifies
    while (!finished()) cpuRelax();
    return;
  }
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
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == j.nTasks && !j.fast) {
      std::lock_guard<std::mutex> lk(mu_);
      doneCv_.notify_all();
    }
  }
}

void ThreadPool::workerMain(int tid) {
  uint32_t seen = 0;
  for (;;) {
    waitHeld(seen);
    uint32_t g = gen_.load(std::memory_order_acquire);
    // A job handed over by atomics alone (held fast) is taken at once; otherwise as before, under mu_.
    // Either way its fields come from the atomics: a claim of generation g only succeeds while g runs.
    if (g == seen || !jobFast_.load(std::memory_order_relaxed)) {
      spinUntil([&] { return gen_.load(std::memory_order_acquire) != seen || held_.load(std::memory_order_relaxed); }, kWorkerSpin, true);
      std::unique_lock<std::mutex> lk(mu_);
      wakeCv_.wait(lk, [&] { return stop_ || gen_.load(std::memory_order_relaxed) != seen || held_.load(std::memory_order_relaxed); });
      if (stop_) return;
      g = gen_.load(std::memory_order_acquire);
      if (g == seen) continue;  // held, no job yet: poll (waitHeld)
    }
    seen = g;
    drain(jobOf(g), tid);
  }
}

}  // namespace qllm

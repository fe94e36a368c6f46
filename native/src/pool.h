// A persistent thread pool for the kernels: sized at creation, resizable, no
// OpenMP. The calling thread works too (thread index 0), so a pool of n threads
// owns n − 1 workers and a pool of 1 runs everything inline.
//
// Idle workers sleep on a condition variable. After a job they spin briefly
// (bounded, yielding) so that the next kernel call of a decode step finds them
// awake; a pool left alone burns no CPU.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace qllm {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /** Total threads including the caller. Joins and recreates the workers. */
  void resize(int threads);
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  /** Runs f(task, threadIndex) for every task in [0, nTasks); returns when all are done. */
  template <class F>
  void parallelFor(int nTasks, F&& f) {
    using Fn = std::remove_reference_t<F>;
    run(nTasks, [](void* ctx, int task, int tid) { (*static_cast<Fn*>(ctx))(task, tid); }, const_cast<void*>(static_cast<const void*>(&f)));
  }

 private:
  using TaskFn = void (*)(void* ctx, int task, int tid);
  struct Job {
    TaskFn fn = nullptr;
    void* ctx = nullptr;
    int nTasks = 0;
    uint32_t gen = 0;
  };

  void run(int nTasks, TaskFn fn, void* ctx);
  void start(int nWorkers);
  void stop();
  void workerMain(int tid);
  /** Claims and runs tasks of job j until none is left. */
  void drain(const Job& j, int tid);

  std::vector<std::thread> workers_;
  std::mutex runMu_;  // one job at a time
  std::mutex mu_;     // guards job_ and stop_
  std::condition_variable wakeCv_, doneCv_;
  Job job_;
  bool stop_ = false;
  std::atomic<uint32_t> gen_{0};    // job_.gen, readable without the lock for spinning
  std::atomic<uint64_t> claim_{0};  // (generation << 32) | next task index
  std::atomic<int> done_{0};        // tasks of the current job finished
};

}  // namespace qllm

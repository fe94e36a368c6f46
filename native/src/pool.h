// A persistent thread pool for the kernels: sized at creation, resizable, no
// OpenMP. The calling thread works too (thread index 0), so a pool of n threads
// owns n − 1 workers and a pool of 1 runs everything inline.
//
// Idle workers sleep on a condition variable. After a job they spin briefly
// (bounded, yielding) so that the next kernel call of a decode step finds them
// awake; a pool left alone burns no CPU.
//
// Held (hold(true) … hold(false), a replayed decode step: graph.cc): between jobs the workers
// poll without sleeping or yielding, so that each of the step's ~150 parallel ops finds them
// running, and while they wait they prefetch the lines of the current hint (setHint: the head
// of the next packed matmul's weights), so that the time a worker waits on the caller (a
// single-threaded op, the activation quantization) streams weights too; the caller likewise
// while it waits on the workers' last tasks of a job.
//
// Held fast (hold(true, true), the step executor "walk", graph.cc): a job is handed over by atomics
// alone: the caller stores the job's fields and its generation, the polling workers read them and
// claim tasks by the generation-tagged counter; no lock, no condition variable, and the caller waits
// for the last task by polling only. The workers poll while held, so none is ever asleep then.
// jointTasks(n): whether parallelFor(n) runs its tasks at once on n different threads (held fast
// and n = threads): then a task may wait for the others (a barrier inside the job).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace qllm {

struct PrefetchList;

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /** Total threads including the caller. Joins and recreates the workers. */
  void resize(int threads);
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  /**
   * Holds the workers awake between jobs (on) or lets them sleep again (off). off returns once
   * no worker reads the hint any more. Called by the thread that submits the jobs.
   */
  void hold(bool on, bool fast = false, bool joint = false);
  /**
   * Held fast with joint (hold(true, true, true)), called by the holder, n == threads(): parallelFor(n)'s
   * tasks run side by side, one per thread (packed_matmul.cc: each decode span task quantizes x itself).
   */
  bool jointTasks(int n) const { return joint_ && n == threads() && n > 1 && std::this_thread::get_id() == holder_; }
  /**
   * The lines held threads prefetch while they wait (null: none), from now and, when afterJob is
   * not null, from the start of the next job on (a matmul: its own head while the caller quantizes
   * its activations, then the next matmul's). Both must live until the next setHint or hold(false).
   */
  void setHint(const PrefetchList* now, const PrefetchList* afterJob = nullptr) {
    hint_.store(now, std::memory_order_release);
    hintAfterJob_ = afterJob;
  }

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
    bool fast = false;  // published by atomics (held fast): the caller polls, nobody notifies
  };

  void run(int nTasks, TaskFn fn, void* ctx);
  void start(int nWorkers);
  void stop();
  void runFast(int nTasks, TaskFn fn, void* ctx);
  uint32_t nextGen() const;
  /** Stores j's fields, resets the counters and publishes its generation (the caller's). */
  void publish(const Job& j);
  /** Waits for the caller's job's tasks to finish, prefetching the hint meanwhile (held); fast: polling only. */
  void callerWait(int nTasks, bool fast);
  /** The job of generation g from the atomics (jobFn_ …): valid if a task of it can still be claimed (drain checks). */
  Job jobOf(uint32_t g) const;
  void workerMain(int tid);
  /** While held and no job after `seen`: prefetches the hint's lines, a few at a time. */
  void waitHeld(uint32_t seen);
  /** Claims and runs tasks of job j until none is left. */
  void drain(const Job& j, int tid);

  std::vector<std::thread> workers_;
  std::mutex runMu_;  // one job at a time
  std::mutex mu_;     // guards stop_ and the sleeping (a job published by run() is stored under it)
  std::condition_variable wakeCv_, doneCv_;
  bool stop_ = false;
  // Cache lines (alignas(64)): what the caller writes and the workers poll (the job, held_, the hint);
  // claim_; done_; hintReaders_, which each polling worker writes twice per look (beside gen_ it stole
  // the polled line from the caller at every publish).
  alignas(64) std::atomic<uint32_t> gen_{0};  // the current job's generation (0: none yet); stored last (publish)
  // The current job's fields for readers without mu_ (both paths store them before gen_).
  std::atomic<TaskFn> jobFn_{nullptr};
  std::atomic<void*> jobCtx_{nullptr};
  std::atomic<int> jobN_{0};
  std::atomic<bool> jobFast_{false};
  std::atomic<bool> held_{false};
  std::atomic<const PrefetchList*> hint_{nullptr};
  alignas(64) std::atomic<uint64_t> claim_{0};  // (generation << 32) | next task index
  alignas(64) std::atomic<int> done_{0};        // tasks of the current job finished
  alignas(64) std::atomic<int> hintReaders_{0};  // workers inside a hint's lines (hold(false) waits for 0)
  alignas(64) bool fast_ = false;  // hold(true, true) …  hold(false): the holder's jobs go by runFast
  bool joint_ = false;             // hold(true, true, true): jointTasks
  std::thread::id holder_;
  const PrefetchList* hintAfterJob_ = nullptr;  // setHint's afterJob, until run() publishes it (the caller's)
  const PrefetchList* callerHint_ = nullptr;  // the hint the caller last prefetched from (run), and its next line
  int64_t callerLine_ = 0;
};

}  // namespace qllm

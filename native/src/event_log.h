// Opt-in binary event logs for measurement tools (eval/trace-matmul.ts, eval/profile-step.ts): an
// environment variable names the output file when the addon loads (QLLM_MATMUL_TRACE,
// QLLM_STEP_PROFILE); the log then holds a fixed buffer of Cap records, allocated and touched up
// front (no page faults while recording), appended lock-free from any thread (records past Cap
// are dropped) and written to the file at exit. Unset, it allocates nothing and on() is false.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace qllm {

/** CLOCK_MONOTONIC in ns (process.hrtime.bigint()'s clock). */
inline uint64_t monotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

/** One log per record type E (a static object per E: its atexit writer finds it through self_). */
template <class E, size_t Cap>
class EventLog {
 public:
  explicit EventLog(const char* env) {
    path_ = std::getenv(env);
    if (path_ == nullptr || *path_ == 0) return;
    buf_ = static_cast<E*>(std::malloc(Cap * sizeof(E)));
    if (buf_ == nullptr) return;
    std::memset(buf_, 1, Cap * sizeof(E));  // touched up front: no page faults while recording
    self_ = this;
    std::atexit([] { self_->write(); });
  }
  bool on() const { return buf_ != nullptr; }
  void record(const E& e) {
    const size_t i = at_.fetch_add(1, std::memory_order_relaxed);
    if (i < Cap) buf_[i] = e;
  }

 private:
  void write() const {
    FILE* f = std::fopen(path_, "wb");
    if (f == nullptr) return;
    const size_t n = at_.load() < Cap ? at_.load() : Cap;
    std::fwrite(buf_, sizeof(E), n, f);
    std::fclose(f);
  }
  static inline EventLog* self_ = nullptr;
  const char* path_ = nullptr;
  E* buf_ = nullptr;
  std::atomic<size_t> at_{0};
};

}  // namespace qllm

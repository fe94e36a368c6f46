// CallControl: how a long kernel learns that JS wants it cancelled, and reports
// progress (the ctl words of async.h). Kept free of Node-API so that the kernel
// files can take one. A null control never cancels and reports nothing.
#pragma once
#include <cstdint>

namespace qllm {

/** The kernel's view of ctl: poll `cancelled()` between work units, report progress. */
class CallControl {
 public:
  CallControl() = default;
  explicit CallControl(int32_t* words) : w_(words) {}
  bool cancelled() const { return w_ != nullptr && __atomic_load_n(&w_[0], __ATOMIC_RELAXED) != 0; }
  void setTotal(int64_t units) const {
    if (w_ != nullptr) __atomic_store_n(&w_[2], static_cast<int32_t>(units), __ATOMIC_RELAXED);
  }
  void advance(int64_t units) const {
    if (w_ != nullptr) __atomic_fetch_add(&w_[1], static_cast<int32_t>(units), __ATOMIC_RELAXED);
  }

 private:
  int32_t* w_ = nullptr;
};

}  // namespace qllm

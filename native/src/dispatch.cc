// Runtime choice of the kernel level: a level is offered when it was compiled in
// AND the CPU (and OS, which __builtin_cpu_supports checks through XGETBV) runs it.
#include "runtime.h"

namespace qllm {

std::vector<const KernelTable*> availableKernels() {
  std::vector<const KernelTable*> out;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (kernelsAvx512() != nullptr && __builtin_cpu_supports("avx512f")) out.push_back(kernelsAvx512());
  if (kernelsAvx2() != nullptr && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back(kernelsAvx2());
#endif
  out.push_back(kernelsScalar());
  return out;
}

}  // namespace qllm

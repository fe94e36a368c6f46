// Runtime choice of the kernel level: a level is offered when it was compiled in
// AND the CPU (and OS, which __builtin_cpu_supports checks through XGETBV) runs it.
// "amx" is the avx512 level's f32 (and GPTQ, int8, convert) kernels with the AMX-INT8
// packed GEMM (packed_amx.cc); it is offered when packedKernelsFor("amx") has it.
#include <cstring>

#include "packed.h"
#include "runtime.h"

namespace qllm {

const char* simdLevelOf(const char* levelName) { return std::strcmp(levelName, "amx") == 0 ? "avx512" : levelName; }

std::vector<const KernelTable*> availableKernels() {
  std::vector<const KernelTable*> out;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (kernelsAvx512() != nullptr && __builtin_cpu_supports("avx512f")) {
    if (std::strcmp(packedKernelsFor("amx")->name, "amx") == 0) {
      static const KernelTable amx = [] {
        KernelTable t = *kernelsAvx512();
        t.name = "amx";
        return t;
      }();
      out.push_back(&amx);
    }
    out.push_back(kernelsAvx512());
  }
  if (kernelsAvx2() != nullptr && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back(kernelsAvx2());
#endif
  out.push_back(kernelsScalar());
  return out;
}

}  // namespace qllm

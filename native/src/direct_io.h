// Memory for O_DIRECT file output (src/io/direct-write.ts, issue 10): an ArrayBuffer whose
// bytes start at a multiple of `align`, which JS cannot ask of its own allocator. O_DIRECT
// writes go from such a buffer straight to the device (no copy into fresh page-cache pages:
// on a host that hands freed memory back to its hypervisor those pages cost more than the
// disk). The memory is freed when the ArrayBuffer is collected.
#pragma once
#include <napi.h>

namespace qllm {

/** alignedBuffer(bytes, align): ArrayBuffer of `bytes` zeroed bytes at a multiple of `align` (a power of two ≥ 8). */
Napi::Value alignedBuffer(const Napi::CallbackInfo& info);

}  // namespace qllm

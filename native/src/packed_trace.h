// Optional trace of the packed matmul driver (issue 9: why the short decode calls read below
// the probe). Off unless the environment names a file: QLLM_MATMUL_TRACE=/tmp/t.bin records,
// for every packed matmul call, its entry, the end of the activation quantization, each task's
// start and end (thread id), every step of the span walk (one row group of each stream), and
// its return, as CLOCK_MONOTONIC ns (process.hrtime.bigint()'s clock), into a preallocated
// buffer written to that file when the process exits (16-byte records, struct TraceEvent).
// Off, each hook is one load of a global and a not-taken branch.
//
// The names are extern "C" because packed_walk.h is included inside each SIMD level's own
// namespace, where a C++ declaration would name a different symbol per level.
#pragma once
#include <cstdint>

extern "C" {
extern int qllmTraceOn;
/** One event: kind (TraceKind), the thread's pool id, a and b (kind-specific). */
void qllmTrace(int kind, int64_t a, int64_t b);
}

namespace qllm {
/** Event kinds; a, b per kind. */
enum TraceKind : int {
  kTraceCall = 1,   // a = N (all parts), b = K · 16 + parts
  kTraceQuant = 2,  // activation quantization done
  kTraceTask = 3,   // a = task, b = first row group (thread = the pool id running it)
  kTraceTaskEnd = 4,
  kTraceSpan = 5,   // a = step i of the span walk, b = steps in all (a step: one row group of each stream)
  kTraceReturn = 6,
  kTraceSteal = 7,  // a = share, b = step: a span starts claiming a share's back (packed.h SpanSplit)
};
/** Sets the pool id the hooks of this thread record (thread_local). */
void traceSetThread(int tid);
}  // namespace qllm

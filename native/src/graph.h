// A decode step as a list of kernel calls, replayed in ONE addon call (issue 9: one native call
// per step instead of 133 Node-API crossings with TS glue between them).
//
// The list is recorded by src/backend/native-graph.ts from the one TS forward pass (nn/model.ts
// runs it with NativeBackend capturing its calls instead of executing them), so nn/ keeps a single
// forward and --backend ref stays the specification. Every argument was validated when recorded;
// the JS plan object keeps every array and weight handle the addresses point into alive.
//
// Position-dependent parts are parameters of run(pos): an address may move by `perPos` bytes per
// position (the KV cache rows a step writes) and a position argument is stored relative to the
// recording's position (RoPE's and attention's pos0).
//
// Executor: the recorded kernels run one after another on the calling thread, each through its
// usual driver: the same kernels in the same order as the eager forward, so a replayed step gives
// the same bits (test/nn/step-plan.test.ts). The pool is held for the step (pool.h hold): the
// workers poll between the parallel ops instead of sleeping or yielding, and a thread that waits
// (a worker on a single-threaded op or the activation quantization, any thread on the others'
// last tasks of a job) prefetches the head of the next packed matmul's weights (Graph::hints),
// so that DRAM streams then too. Prefetches change no result.
//
// Executor (the hand-off of each parallel op to the held pool), QLLM_STEP_EXEC read at every step:
//   ops     the reference: a job is published under the pool's locks and joined by condition variable
//           (the session-13 executor);
//   atomic  jobs go by atomics alone (pool.h hold(true, true)): no lock, the caller polls for the end;
//   joint   (default) atomic, and a decode span matmul is one job published at its entry whose tasks
//           each quantize x into their own buffer and walk their span (packed_matmul.cc), so the
//           worker does not wait for the caller's quantization.
// All three run the same kernels on the same claims: the same bits (test/nn/step-plan.test.ts).
// Measured: eval/reports/step-exec.md.
//
// Profile: QLLM_STEP_PROFILE=<file> (read once when the addon loads) times every op of every
// replayed step on the calling thread (CLOCK_MONOTONIC ns: kind, matmul parts/N/K, start, end)
// plus one record per step, into a preallocated buffer written to that file at exit
// (graph.cc ProfileEvent; eval/profile-step.ts reports it). Off: one branch per step.
#pragma once
#include <cstdint>
#include <vector>

#include "packed.h"
#include "prefetch.h"
#include "runtime.h"

namespace qllm {

/** A recorded address: base + perPos·pos bytes at run(pos); base null: no array (a null bias). */
struct GraphPtr {
  uint8_t* base = nullptr;
  int64_t perPos = 0;
  template <class T>
  T* at(int64_t pos) const { return base == nullptr ? nullptr : reinterpret_cast<T*>(base + perPos * pos); }
};

enum class GraphOpKind : int32_t {
  kMatmulPacked = 0,  // p: x, bias, y; i: M; w; f32Acts
  kMatmulParts = 1,   // p: x, bias[0..n), y[0..n) at 1.., 1+kMaxParts..; i: M, n; w (the concatenated weight); f32Acts
  kAttention = 2,     // p: q, k, v, out; i: T, pos0 − recorded pos, nHead, nKvHead, headDim (k, v f32)
  kAttentionF16 = 3,  // as kAttention with k, v f16 bits
  kSwiglu = 4,        // p: g, u; i: n
  kRmsNorm = 5,       // p: x, w, y; i: T, H; eps
  kRope = 6,          // p: x, cos, sin; i: T, nHeads, headDim, pos0 − recorded pos
  kAdd = 7,           // p: a, b, out; i: n
  kToF16 = 8,         // p: src, dst; i: n
  kToF16Keys = 9,     // p: src, dst (the whole key cache); i: T, nKvHead, headDim, pos0 − recorded pos
  kAttentionF16Blocks = 10,  // as kAttentionF16 with the keys in blocks of 32 positions (AttentionShape::keyBlocks)
  kArgmax = 11,       // p: x, id (int32 [1]); i: n: id = the greedy pick over x[n] (runtime.h argmax)
};
constexpr int kGraphKinds = 12;

constexpr int kGraphPtrs = 1 + 2 * kMaxParts;
constexpr int kGraphInts = 5;

struct GraphOp {
  GraphOpKind kind;
  const PackedWeight* w = nullptr;
  bool f32Acts = false;
  float eps = 0.0f;
  int64_t i[kGraphInts] = {};
  GraphPtr p[kGraphPtrs];
};

/** Fields of one op in the flat f64 record the TS recorder hands over (native-graph.ts OP_FIELDS). */
constexpr int kGraphRecord = 4 + kGraphInts + 2 * kGraphPtrs;  // kind, weight index, f32Acts, eps, ints, array indices, perPos bytes

/** Bytes of the next packed matmul's head a waiting thread prefetches (half of a core's 2 MiB L2). */
constexpr int64_t kGraphHintBytes = int64_t{1} << 20;

struct Graph {
  std::vector<GraphOp> ops;
  // The prefetch hints (runGraph builds them on first use, again when the pool's size changes):
  // hints[j] the head of the j-th packed matmul (prefetchPlan); while op o runs, threads that wait
  // prefetch hintSelf[o] (o's own, a matmul: while its activations are quantized; −1 otherwise),
  // then hintOf[o]: the next packed matmul after o, the first one of the step after the last (the
  // next step's).
  mutable std::vector<PrefetchList> hints;
  mutable std::vector<int> hintSelf, hintOf;
  mutable int hintThreads = 0;
};

/** Runs every op of g for position pos, in order. */
void runGraph(Runtime& rt, const Graph& g, int64_t pos);

}  // namespace qllm

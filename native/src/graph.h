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
// usual driver (so each still wakes and joins the pool): the same kernels in the same order as
// the eager forward, so a replayed step gives the same bits (test/nn/step-plan.test.ts).
//
// Profile: QLLM_STEP_PROFILE=<file> (read once when the addon loads) times every op of every
// replayed step on the calling thread (CLOCK_MONOTONIC ns: kind, matmul parts/N/K, start, end)
// plus one record per step, into a preallocated buffer written to that file at exit
// (graph.cc ProfileEvent; eval/profile-step.ts reports it). Off: one branch per step.
#pragma once
#include <cstdint>
#include <vector>

#include "packed.h"
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
};
constexpr int kGraphKinds = 9;

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

struct Graph {
  std::vector<GraphOp> ops;
};

/** Runs every op of g for position pos, in order. */
void runGraph(Runtime& rt, const Graph& g, int64_t pos);

}  // namespace qllm

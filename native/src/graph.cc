// The decode-step executor (graph.h): the recorded kernel calls, one after another.
#include "graph.h"

#include <cstdlib>
#include <cstring>

#include "event_log.h"

namespace qllm {
namespace {

// ---------------------------------------------------------------- step profile (graph.h)

/** One profile record (32 bytes): an op's start and end on the calling thread, or a whole step (op = kStepRecord). */
struct ProfileEvent {
  uint64_t start, end;  // CLOCK_MONOTONIC ns (process.hrtime.bigint()'s clock)
  uint32_t op;          // index in the graph, or kStepRecord
  uint8_t kind, parts;  // GraphOpKind; parts of a matmul (1 for a plain weight)
  uint16_t pad;
  uint32_t n, k;        // a matmul's N (all parts) and K; 0 otherwise
};
static_assert(sizeof(ProfileEvent) == 32, "32-byte profile records");
constexpr uint32_t kStepRecord = 0xffffffffu;
// 32 MiB of records (~3000 steps of 310 ops); later ones are dropped
EventLog<ProfileEvent, size_t{1} << 20> gProfile("QLLM_STEP_PROFILE");
const bool gProfileOn = gProfile.on();

// ---------------------------------------------------------------- the ops

void runOp(Runtime& rt, const GraphOp& op, int64_t pos) {
  const GraphPtr* p = op.p;
  const int64_t* i = op.i;
  switch (op.kind) {
    case GraphOpKind::kMatmulPacked:
      matmulPacked(rt, p[0].at<const float>(pos), *op.w, i[0], p[1].at<const float>(pos), p[2].at<float>(pos), op.f32Acts);
      break;
    case GraphOpKind::kMatmulParts: {
      const float* bias[kMaxParts];
      float* ys[kMaxParts];
      for (int q = 0; q < i[1]; ++q) {
        bias[q] = p[1 + q].at<const float>(pos);
        ys[q] = p[1 + kMaxParts + q].at<float>(pos);
      }
      matmulPackedParts(rt, p[0].at<const float>(pos), *op.w, i[0], bias, ys, op.f32Acts);
      break;
    }
    case GraphOpKind::kAttention:
    case GraphOpKind::kAttentionF16: {
      const AttentionShape s{i[0], pos + i[1], i[2], i[3], i[4]};
      if (op.kind == GraphOpKind::kAttention) {
        attention(rt, p[0].at<const float>(pos), p[1].at<const float>(pos), p[2].at<const float>(pos), s, p[3].at<float>(pos));
      } else {
        attentionF16(rt, p[0].at<const float>(pos), p[1].at<const uint16_t>(pos), p[2].at<const uint16_t>(pos), s, p[3].at<float>(pos));
      }
      break;
    }
    case GraphOpKind::kSwiglu: swiglu(rt, p[0].at<float>(pos), p[1].at<const float>(pos), i[0]); break;
    case GraphOpKind::kRmsNorm: rmsNorm(rt, p[0].at<const float>(pos), p[1].at<const float>(pos), i[0], i[1], op.eps, p[2].at<float>(pos)); break;
    case GraphOpKind::kRope: rope(rt, p[0].at<float>(pos), i[0], i[1], i[2], pos + i[3], p[1].at<const float>(pos), p[2].at<const float>(pos)); break;
    case GraphOpKind::kAdd: add(rt, p[0].at<const float>(pos), p[1].at<const float>(pos), p[2].at<float>(pos), i[0]); break;
    case GraphOpKind::kToF16: toF16(rt, p[0].at<const float>(pos), p[1].at<uint16_t>(pos), i[0]); break;
    case GraphOpKind::kToF16Keys: toF16Keys(rt, p[0].at<const float>(pos), p[1].at<uint16_t>(pos), i[0], pos + i[3], i[1], i[2]); break;
    case GraphOpKind::kAttentionF16Blocks: {
      AttentionShape s{i[0], pos + i[1], i[2], i[3], i[4]};
      s.keyBlocks = true;
      attentionF16(rt, p[0].at<const float>(pos), p[1].at<const uint16_t>(pos), p[2].at<const uint16_t>(pos), s, p[3].at<float>(pos));
      break;
    }
    case GraphOpKind::kArgmax: *p[1].at<int32_t>(pos) = static_cast<int32_t>(argmax(rt, p[0].at<const float>(pos), i[0])); break;
  }
}

/** Publishes op o's hints (Graph::hintSelf, hintOf) to the pool. */
void publishHints(Runtime& rt, const Graph& g, size_t o) {
  const int self = g.hintSelf[o], next = g.hintOf[o];
  if (next < 0) return;
  const PrefetchList* nextList = &g.hints[static_cast<size_t>(next)];
  if (self >= 0) rt.pool.setHint(&g.hints[static_cast<size_t>(self)], nextList);
  else rt.pool.setHint(nextList);
}

/** The step with every op timed (QLLM_STEP_PROFILE): a record per op, then one for the whole step. */
void runProfiled(Runtime& rt, const Graph& g, int64_t pos) {
  const uint64_t t0 = monotonicNs();
  const bool hints = rt.pool.threads() > 1;
  for (size_t o = 0; o < g.ops.size(); ++o) {
    const GraphOp& op = g.ops[o];
    if (hints) publishHints(rt, g, o);
    ProfileEvent e{};
    e.op = static_cast<uint32_t>(o);
    e.kind = static_cast<uint8_t>(op.kind);
    if (op.w != nullptr) {
      e.parts = static_cast<uint8_t>(op.w->nParts == 0 ? 1 : op.w->nParts);
      e.n = static_cast<uint32_t>(op.w->L.N);
      e.k = static_cast<uint32_t>(op.w->L.K);
    }
    e.start = monotonicNs();
    runOp(rt, op, pos);
    e.end = monotonicNs();
    gProfile.record(e);
  }
  ProfileEvent s{};
  s.start = t0;
  s.end = monotonicNs();
  s.op = kStepRecord;
  s.n = static_cast<uint32_t>(g.ops.size());
  s.k = static_cast<uint32_t>(pos);
  gProfile.record(s);
}

/** Builds g's prefetch hints for a pool of `threads` (Graph::hints). */
void buildHints(const Graph& g, int threads) {
  g.hints.clear();
  g.hintOf.assign(g.ops.size(), -1);
  g.hintSelf.assign(g.ops.size(), -1);
  g.hintThreads = threads;
  std::vector<int> matmuls;  // op indices
  for (size_t o = 0; o < g.ops.size(); ++o) {
    if (g.ops[o].w == nullptr) continue;
    g.hintSelf[o] = static_cast<int>(matmuls.size());
    matmuls.push_back(static_cast<int>(o));
    PrefetchList pl;
    pl.clear();
    prefetchPlan(*g.ops[o].w, threads, kGraphHintBytes, &pl);
    g.hints.push_back(std::move(pl));
  }
  if (matmuls.empty()) return;
  size_t next = 0;  // the first matmul after op o
  for (size_t o = 0; o < g.ops.size(); ++o) {
    while (next < matmuls.size() && matmuls[next] <= static_cast<int>(o)) ++next;
    g.hintOf[o] = next < matmuls.size() ? static_cast<int>(next) : 0;
  }
}

/** The hand-off (graph.h Executor), from QLLM_STEP_EXEC, read every step (so one process can A/B them). */
enum class Exec { kOps, kAtomic, kJoint };
Exec executor() {
  const char* e = std::getenv("QLLM_STEP_EXEC");
  if (e == nullptr) return Exec::kJoint;
  return std::strcmp(e, "ops") == 0 ? Exec::kOps : std::strcmp(e, "atomic") == 0 ? Exec::kAtomic : Exec::kJoint;
}

/** Holds the pool for one step in the executor's mode (pool.h) and clears the hint when done. */
struct PoolHold {
  ThreadPool& pool;
  PoolHold(ThreadPool& p, Exec e) : pool(p) { pool.hold(true, e != Exec::kOps, e == Exec::kJoint); }
  ~PoolHold() { pool.hold(false); }
};

}  // namespace

void runGraph(Runtime& rt, const Graph& g, int64_t pos) {
  const int threads = rt.pool.threads();
  if (threads > 1 && g.hintThreads != threads) buildHints(g, threads);
  PoolHold hold(rt.pool, executor());
  if (gProfileOn) {
    runProfiled(rt, g, pos);
    return;
  }
  for (size_t o = 0; o < g.ops.size(); ++o) {
    if (threads > 1) publishHints(rt, g, o);
    runOp(rt, g.ops[o], pos);
  }
}

}  // namespace qllm

// y[M, N] = x[M, K] · Wᵀ (+ bias) over a packed W (packed.h): the driver.
//
//   1. activations: gather through perm (act-order), then quantize each row to int8
//      per activation block (once per call, i.e. once per distinct input when the
//      caller merges QKV / gate+up), or keep them f32 (H16, and the exact path);
//   2. N is split statically into contiguous, 16-row-aligned ranges of row groups,
//      one per pool thread, so every thread streams its own part of W once and
//      writes whole output lines (no false sharing; KERNELS.md §4). For each row
//      group (a few KiB to ~100 KiB, L1/L2 resident) the tile sweeps all M rows,
//      mr at a time: decode (M ≤ 8) reads W from DRAM once, prefill re-reads
//      each row group from cache for every mr rows; M ≤ spanMaxM with int8 activations
//      goes to the level's span kernel (several DRAM streams per thread), which
//      measured ~1.25× the per-row-group tile at M = 1 on the Zen 3 (packed_avx2.cc),
//      and on the Zen 4 (AVX-512, M = 1…8) see packed_avx512_gemv.cc;
//      with several threads such a decode call instead splits dynamically (packed.h SpanSplit):
//      one share of the row groups per thread, claimed a step at a time from the front by its
//      owner and from the back by whoever is done first, so the threads end together;
//   3. bias, per thread, on its own columns (after the call for the dynamic split).
// A concatenated weight (packedConcat: q|k|v, gate|up) runs as one call with one output
// array per part (matmulPackedParts): one quantization of x, one pool wake-up, and the
// threads split the row groups of all parts together.
// Row-major 16-bit views (packed_map.cc; LAYOUTS.md "Row-major views") split the same
// way: M ≤ h16RowsMaxM streams each thread's rows (h16Rows), a larger M packs each row
// group into the f16x16 layout in a per-thread panel (h16Pack, 32·K bytes, L2-resident)
// and runs the level's h16 tile on it, so a prefill pays one pack per row group for all
// M rows (BLIS-style) and gets the interleaved layout's results bit for bit.
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <atomic>

#include "packed.h"
#include "event_log.h"
#include "packed_trace.h"
#include "runtime.h"

// ---------------------------------------------------------------- trace (packed_trace.h)

namespace {
struct TraceEvent {
  uint64_t ns;
  uint8_t kind, tid;
  uint16_t a;
  uint32_t b;
};
static_assert(sizeof(TraceEvent) == 16, "16-byte trace records");
qllm::EventLog<TraceEvent, size_t{1} << 22> gTrace("QLLM_MATMUL_TRACE");  // 64 MiB of events; later ones are dropped
thread_local int tTraceTid = 0;
}  // namespace

extern "C" {
int qllmTraceOn = gTrace.on() ? 1 : 0;
void qllmTrace(int kind, int64_t a, int64_t b) {
  gTrace.record(TraceEvent{qllm::monotonicNs(), static_cast<uint8_t>(kind), static_cast<uint8_t>(tTraceTid), static_cast<uint16_t>(a),
                           static_cast<uint32_t>(b)});
}
}

namespace qllm {
void traceSetThread(int tid) { tTraceTid = tid; }

namespace {

constexpr double kSerialFlops = 2e6;  // below this, waking the pool costs more than it saves

int64_t minI(int64_t a, int64_t b) { return a < b ? a : b; }

template <class F>
void forTasks(Runtime& rt, int nTasks, F&& f) {
  if (nTasks > 1) rt.pool.parallelFor(nTasks, f);
  else if (nTasks == 1) f(0, 0);
}

inline void cpuRelaxSpin() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

// ---------------------------------------------------------------- the decode split (packed.h SpanSplit)

void spanSplitInit(SpanSplit* sp, int64_t RG, int shares) {
  assert(shares >= 1 && shares <= kMaxSpanShares);
  sp->nShares = shares;
  for (int s = 0; s < shares; ++s) {
    sp->share[s].taken.store(0, std::memory_order_relaxed);
    sp->share[s].rg0 = spanShareStart(RG, shares, s);
    sp->share[s].nrg = spanShareStart(RG, shares, s + 1) - sp->share[s].rg0;
  }
}

namespace {
constexpr uint64_t kBackOne = uint64_t{1} << 32;
int64_t takenFront(uint64_t v) { return static_cast<int64_t>(v & 0xffffffffu); }
int64_t takenBack(uint64_t v) { return static_cast<int64_t>(v >> 32); }

/** One step of share s from its front (back = false) or back; false when the share has none left. */
bool claimIn(SpanShare& sh, int ns, bool back, int64_t* step) {
  const int64_t S = spanSteps(sh.nrg, ns);
  uint64_t cur = sh.taken.load(std::memory_order_relaxed);
  while (takenFront(cur) + takenBack(cur) < S) {
    // Relaxed: a claim only has to be unique (the outputs are disjoint; the pool's join publishes them).
    if (sh.taken.compare_exchange_weak(cur, cur + (back ? kBackOne : 1), std::memory_order_relaxed)) {
      *step = back ? S - 1 - takenBack(cur) : takenFront(cur);
      return true;
    }
  }
  return false;
}
}  // namespace

bool spanClaim(SpanSplit* sp, int role, int ns, SpanStep* out) {
  if (role < sp->nShares && claimIn(sp->share[role], ns, false, &out->step)) {
    *out = SpanStep{role, out->step, false};
    return true;
  }
  for (;;) {
    int best = -1;
    int64_t bestLeft = 0;
    for (int s = 0; s < sp->nShares; ++s) {
      const uint64_t v = sp->share[s].taken.load(std::memory_order_relaxed);
      const int64_t left = spanSteps(sp->share[s].nrg, ns) - takenFront(v) - takenBack(v);
      if (left > bestLeft) {
        best = s;
        bestLeft = left;
      }
    }
    if (best < 0) return false;
    int64_t step;
    if (claimIn(sp->share[best], ns, true, &step)) {
      *out = SpanStep{best, step, true};
      return true;
    }
  }
}

int spanStepRows(const SpanSplit& sp, const SpanStep& s, int ns, int64_t* rg, float** y, int* valid, int64_t* ldy) {
  const SpanShare& sh = sp.share[s.share];
  const int64_t part = sh.nrg / ns;
  const int n = s.step < part ? ns : 1;
  for (int st = 0; st < n; ++st) {
    const int64_t r = sh.rg0 + (s.step < part ? st * part + s.step : ns * part + (s.step - part));
    int p = 0;
    while (r >= sp.rgAt[p + 1]) ++p;
    const int64_t n0 = (r - sp.rgAt[p]) * kRowGroup;
    rg[st] = r;
    y[st] = sp.ys[p] + n0;
    valid[st] = static_cast<int>(minI(kRowGroup, sp.nOf[p] - n0));
    ldy[st] = sp.nOf[p];
  }
  return n;
}

std::vector<double> spanSplitClaims(const int64_t* rgAt, const int64_t* partN, int nParts, int shares, int ns,
                                    const int32_t* order, int64_t n, Runtime* rt) {
  SpanSplit sp;
  spanSplitInit(&sp, rgAt[nParts], shares);
  sp.nParts = nParts;
  int64_t rows = 0;
  for (int p = 0; p <= nParts; ++p) sp.rgAt[p] = rgAt[p];
  for (int p = 0; p < nParts; ++p) rows += partN[p];
  std::vector<float> out(static_cast<size_t>(rows));
  for (int64_t p = 0, at = 0; p < nParts; at += partN[p++]) {
    sp.nOf[p] = partN[p];
    sp.ys[p] = out.data() + at;
  }
  std::vector<std::vector<double>> log(static_cast<size_t>(shares));
  auto claim = [&](int role) {  // one step; false: none left
    SpanStep s{};
    if (!spanClaim(&sp, role, ns, &s)) return false;
    int64_t rg[64], ldy[64];
    float* y[64];
    int valid[64];
    const int k = spanStepRows(sp, s, ns, rg, y, valid, ldy);
    for (int i = 0; i < k; ++i)
      log[static_cast<size_t>(role)].insert(log[static_cast<size_t>(role)].end(),
                                            {double(role), double(s.share), double(s.step), s.back ? 1.0 : 0.0, double(rg[i]),
                                             double(y[i] - out.data()), double(valid[i]), double(ldy[i])});
    return true;
  };
  if (rt != nullptr) {
    rt->pool.parallelFor(shares, [&](int role, int) { while (claim(role)) {} });
  } else {
    std::vector<char> done(static_cast<size_t>(shares), 0);
    int left = shares;
    for (int64_t i = 0; left > 0; ++i) {
      const int role = i < n ? order[i] : static_cast<int>(i % shares);
      if (done[static_cast<size_t>(role)] == 0 && !claim(role)) {
        done[static_cast<size_t>(role)] = 1;
        --left;
      }
    }
  }
  std::vector<double> all;
  for (const auto& l : log) all.insert(all.end(), l.begin(), l.end());
  return all;
}

void matmulPacked(Runtime& rt, const float* x, const PackedWeight& w, int64_t M, const float* bias, float* y,
                  bool f32Acts) {
  assert(w.nParts == 0);  // a concatenated weight runs through matmulPackedParts (one output per part)
  matmulPackedParts(rt, x, w, M, &bias, &y, f32Acts);
}

void matmulPackedParts(Runtime& rt, const float* x, const PackedWeight& w, int64_t M, const float* const* bias,
                       float* const* ys, bool f32Acts) {
  const PackedLayout& L = w.L;
  assert(M >= 1);
  const PackedKernels& pk = *packedKernelsFor(rt.kernels->name);
  const bool int8Acts = L.kind != PackedKind::H16 && !f32Acts;
  if (qllmTraceOn != 0) qllmTrace(kTraceCall, L.N, L.K * 16 + (w.nParts == 0 ? 1 : w.nParts));
  const int threads = rt.pool.threads();
  const bool parallel = threads > 1 && 2.0 * M * L.K * L.N >= kSerialFlops;
  int nTasks = parallel ? threads : 1;
  // The parts: row groups [rgAt[p], rgAt[p+1]) write ys[p] (row stride nOf[p]); a plain weight is one part.
  const int nParts = w.nParts == 0 ? 1 : w.nParts;
  const int64_t RG = L.Np / kRowGroup;
  int64_t rgAt[kMaxParts + 1], nOf[kMaxParts];
  if (w.nParts == 0) {
    rgAt[0] = 0;
    rgAt[1] = RG;
    nOf[0] = L.N;
  } else {
    for (int p = 0; p <= nParts; ++p) rgAt[p] = w.partRg[p];
    for (int p = 0; p < nParts; ++p) nOf[p] = w.partN[p];
  }

  void (*span)(const PackedSpanArgs&) = !int8Acts || M > pk.spanMaxM ? nullptr : L.kind == PackedKind::Q4 ? pk.q4Span : pk.q8Span;
  // M ≥ gemmMinM: the level's range GEMM (AMX), all M rows per call.
  void (*gemm)(const PackedSpanArgs&) = !int8Acts || span != nullptr || M < pk.gemmMinM ? nullptr
                                        : L.kind == PackedKind::Q4 ? pk.q4Gemm : pk.q8Gemm;

  // 1. Activations, in rt.shared: [M][Kp] f32 (gathered / padded) and/or [M][lda] int8 + [M][nb] d, Σ.
  //    The spans' rows are lda = Kp + 64 apart: Kp is often a multiple of 4 KiB (4096, 11008 = 43·256 is
  //    not), and rows a multiple of 4 KiB apart fall into one L1 set, with every stream's code line
  //    of the same offset: at M = 4, K = 4096 int8 the span ran 26 GB/s L3-resident against M = 3's 80.
  const int64_t Kp = L.Kp, nb = L.Kp / L.Ba;
  //    The AMX GEMM's A tiles (16 rows at lda) likewise: at lda = 4096 a tile's rows are one L1 set.
  const int64_t lda = (span != nullptr && M > 1) || gemm != nullptr ? Kp + 64 : Kp;
  const bool needF32 = L.perm != nullptr;  // gathered rows x'[k] = x[perm[k]], zero past K
  const size_t f32Floats = needF32 ? static_cast<size_t>(M * Kp) : 0;
  const size_t qFloats = int8Acts ? static_cast<size_t>((M * lda + 3) / 4 + 2 * M * nb) : 0;
  float* buf = rt.shared.get(f32Floats + qFloats + 16);
  float* xf = buf;                               // [M][Kp]
  float* ad = buf + f32Floats;                   // [M][nb]
  int32_t* asum = reinterpret_cast<int32_t*>(ad + M * nb);  // [M][nb]
  int8_t* aq = reinterpret_cast<int8_t*>(asum + M * nb);    // [M][lda]
  const float* xRows = needF32 ? xf : x;
  const int64_t ldx = needF32 ? Kp : L.K;
  // Held fast (pool.h jointTasks, the step executor's hand-off): a decode span call is ONE job, published
  // at entry; each task quantizes all of x (1-2 µs, L1/L2-resident) into its own buffer and walks its
  // span, so no thread waits for another's quantization (splitting it by blocks and meeting at a
  // counter measured 2.5-4.9 µs to the quantized activations against 0.7-1.9 µs on the caller alone:
  // x and the halves cross cores).
  const bool joint = span != nullptr && parallel && threads <= kMaxSpanShares && M == 1 && rt.pool.jointTasks(threads);
  const int actTasks = joint ? 0 : parallel && M >= 2 * threads ? threads : 1;
  forTasks(rt, actTasks, [&](int t, int) {
    for (int64_t m = t * M / actTasks; m < (t + 1) * M / actTasks; ++m) {
      const float* src = x + m * L.K;
      if (needF32) {
        float* dst = xf + m * Kp;
        if (L.perm != nullptr) for (int64_t k = 0; k < L.K; ++k) dst[k] = src[L.perm[k]];
        else std::memcpy(dst, src, static_cast<size_t>(L.K) * 4);
        for (int64_t k = L.K; k < Kp; ++k) dst[k] = 0.0f;
        src = dst;
      }
      if (int8Acts) pk.quantize(src, L.K, Kp, L.Ba, aq + m * lda, ad + m * nb, asum + m * nb);
    }
  });

  if (qllmTraceOn != 0 && !joint) qllmTrace(kTraceQuant, 0, 0);

  // 2. Decode spans on the pool: one task per thread, each the span's claim loop over the shared
  //    split (packed.h SpanSplit: its own share from the front, then others' from the back), so
  //    whoever is faster takes more; a role whose share a faster thread already emptied finds
  //    nothing. The bias goes on afterwards (which thread computed a row group is not known).
  if (span != nullptr && parallel && threads <= kMaxSpanShares) {
    SpanSplit sp;
    spanSplitInit(&sp, RG, threads);
    sp.data = w.data;
    sp.nParts = nParts;
    for (int p = 0; p <= nParts; ++p) sp.rgAt[p] = rgAt[p];
    for (int p = 0; p < nParts; ++p) {
      sp.nOf[p] = nOf[p];
      sp.ys[p] = ys[p];
    }
    forTasks(rt, threads, [&](int t, int tid) {
      if (qllmTraceOn != 0) {
        traceSetThread(tid);
        qllmTrace(kTraceTask, t, sp.share[t].rg0);
      }
      int8_t* q = aq;
      float* d = ad;
      int32_t* sum = asum;
      if (joint) {  // every task quantizes all of x into its own buffer (thread 0: rt.shared's), the same bits
        if (tid != 0) {
          float* own = rt.local[static_cast<size_t>(tid)].get(f32Floats + qFloats + 16);
          d = own + f32Floats;
          sum = reinterpret_cast<int32_t*>(d + nb);
          q = reinterpret_cast<int8_t*>(sum + nb);
        }
        const float* src = x;
        if (needF32) {
          float* g = reinterpret_cast<float*>(d) - f32Floats;  // [Kp] before the int8 part, as xf
          for (int64_t k = 0; k < L.K; ++k) g[k] = x[L.perm[k]];
          for (int64_t k = L.K; k < Kp; ++k) g[k] = 0.0f;
          src = g;
        }
        pk.quantize(src, L.K, Kp, L.Ba, q, d, sum);
        if (qllmTraceOn != 0 && tid == 0) qllmTrace(kTraceQuant, 0, 0);
      }
      PackedSpanArgs s{&L, nullptr, 0, q, d, sum, nullptr, 0, static_cast<int>(M), 0, lda};
      s.split = &sp;
      s.role = t;
      span(s);
      if (qllmTraceOn != 0) qllmTrace(kTraceTaskEnd, t, sp.share[t].rg0 + sp.share[t].nrg);
    });
    for (int p = 0; p < nParts; ++p)
      if (bias[p] != nullptr)
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < nOf[p]; ++n) ys[p][m * nOf[p] + n] += bias[p][n];
    if (qllmTraceOn != 0) qllmTrace(kTraceReturn, 0, 0);
    return;
  }

  // 3. Otherwise tiles over a static split of all row groups; a task's range is cut at part boundaries.
  auto taskStart = [&](int t) { return t * RG / nTasks; };
  void (*tile)(const PackedTileArgs&) = L.kind == PackedKind::H16 ? pk.h16
                                        : L.kind == PackedKind::Q4 ? (int8Acts ? pk.q4 : pk.q4f)
                                                                   : (int8Acts ? pk.q8 : pk.q8f);
  const int mrMax = L.kind == PackedKind::H16 ? pk.mrH16 : !int8Acts ? pk.mrF32 : L.kind == PackedKind::Q4 ? pk.mrQ4 : pk.mrQ8;
  const bool rows = L.rowMajor && M <= pk.h16RowsMaxM;  // row-major view: stream its rows
  const bool packRows = L.rowMajor && !rows;           // row-major view, larger M: pack each row group, then the tile
  forTasks(rt, nTasks, [&](int t, int tid) {
    const int64_t t0 = taskStart(t), t1 = taskStart(t + 1);
    if (qllmTraceOn != 0) {
      traceSetThread(tid);
      qllmTrace(kTraceTask, t, t0);
    }
    uint16_t* panel = packRows ? reinterpret_cast<uint16_t*>(rt.local[static_cast<size_t>(tid)].get(static_cast<size_t>(L.K) * 8)) : nullptr;
    for (int p = 0; p < nParts; ++p) {
      const int64_t rg0 = t0 > rgAt[p] ? t0 : rgAt[p], rg1 = t1 < rgAt[p + 1] ? t1 : rgAt[p + 1];
      if (rg1 <= rg0) continue;
      const int64_t N = nOf[p], base = rgAt[p];  // local row group of rg: rg − base
      float* y = ys[p];
      const uint8_t* row0 = L.rowMajor ? (w.nParts == 0 ? w.data : w.partData[p]) : nullptr;  // the part's row 0
      if (rows) {
        const int64_t n0 = (rg0 - base) * kRowGroup, n1 = minI(N, (rg1 - base) * kRowGroup);
        const H16RowsArgs r{row0 + n0 * L.codeBytes, L.codeBytes, n1 - n0, L.K, L.h16, xRows, ldx, static_cast<int>(M), y + n0, N};
        pk.h16Rows(r);
      } else if (span != nullptr || gemm != nullptr) {
        const PackedSpanArgs s{&L, w.data + rg0 * L.rgStride, rg1 - rg0, aq, ad, asum, y + (rg0 - base) * kRowGroup,
                               static_cast<int>(minI(kRowGroup, N - (rg1 - 1 - base) * kRowGroup)),
                               static_cast<int>(M), N, lda};
        (span != nullptr ? span : gemm)(s);
      } else {
        PackedTileArgs a{};
        a.L = &L;
        a.ldaf = ldx;
        a.ldy = N;
        for (int64_t rg = rg0; rg < rg1; ++rg) {
          a.nValid = static_cast<int>(minI(kRowGroup, N - (rg - base) * kRowGroup));
          if (packRows) {
            pk.h16Pack(row0 + (rg - base) * L.rgStride, L.codeBytes, a.nValid, L.K, panel);
            a.rg = reinterpret_cast<const uint8_t*>(panel);
          } else {
            a.rg = w.data + rg * L.rgStride;
          }
          for (int64_t m0 = 0; m0 < M; m0 += mrMax) {
            a.mr = static_cast<int>(minI(mrMax, M - m0));
            a.aq = aq + m0 * Kp;
            a.ad = ad + m0 * nb;
            a.asum = asum + m0 * nb;
            a.af = xRows + m0 * ldx;
            a.y = y + m0 * N + (rg - base) * kRowGroup;
            tile(a);
          }
        }
      }
      // Bias on this task's columns of the part.
      if (bias[p] != nullptr) {
        const int64_t n0 = (rg0 - base) * kRowGroup, n1 = minI(N, (rg1 - base) * kRowGroup);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = n0; n < n1; ++n) y[m * N + n] += bias[p][n];
      }
    }
    if (qllmTraceOn != 0) qllmTrace(kTraceTaskEnd, t, t1);
  });
  if (qllmTraceOn != 0) qllmTrace(kTraceReturn, 0, 0);
}

const PackedKernels* packedKernelsFor(const char* levelName) {
  // The packed levels follow the f32 kernel level (setKernelLevel) so that tests and
  // benchmarks can force one; a level without packed tiles falls back to the next
  // ("avx512" on a CPU with AVX-512F but no VNNI runs the AVX2 tiles).
  static const PackedKernels* avx2 = [] {
    const PackedKernels* k = packedKernelsAvx2();
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (k != nullptr && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) k = nullptr;
#endif
    return k;
  }();
  static const PackedKernels* avx512 = [] {
    const PackedKernels* k = packedKernelsAvx512();
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    // The table borrows AVX2 tiles (packed_avx512.cc), so it needs that level too.
    if (k != nullptr && !(avx2 != nullptr && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")))
      k = nullptr;
#endif
    return k;
  }();
  static const PackedKernels* amx = packedKernelsAmx(avx512);
  if (std::strcmp(levelName, "amx") == 0 && amx != nullptr) return amx;
  if ((std::strcmp(levelName, "avx512") == 0 || std::strcmp(levelName, "amx") == 0) && avx512 != nullptr) return avx512;
  if (std::strcmp(levelName, "scalar") != 0 && avx2 != nullptr) return avx2;
  return packedKernelsScalar();
}

}  // namespace qllm

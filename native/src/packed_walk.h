// ISA-neutral plumbing of the packed SIMD kernels: the walk over a row's activation
// blocks, the dispatch of the layout's flags to template arguments, and the M = 1
// span machinery (streams over contiguous row groups, prefetch targets).
//
// A level's header includes this file INSIDE its own namespace (packed_avx2.h:
// qllm::avx2, packed_avx512.h: qllm::avx512), so every level gets private copies
// compiled with its own target flags: no inline function compiled for AVX-512 can be
// the copy the linker keeps for the AVX2 level (kernel_impl.h does the same). It
// therefore has no include guard and needs <cstdint>, <type_traits> and packed.h
// included before it (outside the namespace).

inline int64_t groupOf(const PackedLayout& L, int64_t k) {
  const int64_t gi = k / L.g;
  return gi < L.G ? gi : L.G - 1;
}

/** Walks the blocks of one activation row with the group index of each (Ba | g, or one group). */
struct GroupWalk {
  int64_t perGroup, gi = 0, left;
  explicit GroupWalk(const PackedLayout& L) : perGroup(L.G > 1 ? L.g / L.Ba : INT64_MAX), left(perGroup) {}
  void next() {
    if (--left == 0) { ++gi; left = perGroup; }
  }
};

/**
 * Calls f(subs, sb, mins) with the layout's Ba / 32 (1…4), scale bytes (2 or 4) and
 * mins flag (only when WithMins; else always false) as std::integral_constant
 * values, so that kernels templated on them have no per-block branch or division.
 */
template <bool WithMins, class F>
void withLayoutFlags(const PackedLayout& L, F&& f) {
  auto withSb = [&](auto subs) {
    auto withMins = [&](auto sb) {
      if constexpr (WithMins) {
        if (L.mins) return f(subs, sb, std::true_type{});
      }
      f(subs, sb, std::false_type{});
    };
    if (L.scaleBytes == 2) withMins(std::integral_constant<int, 2>{});
    else withMins(std::integral_constant<int, 4>{});
  };
  switch (L.Ba / kSubBlock) {
    case 1: withSb(std::integral_constant<int, 1>{}); break;
    case 2: withSb(std::integral_constant<int, 2>{}); break;
    case 3: withSb(std::integral_constant<int, 3>{}); break;
    default: withSb(std::integral_constant<int, 4>{}); break;
  }
}

template <int R, int MAX, class F>
void withRowsFrom(int mr, F& f) {
  if constexpr (R < MAX) {
    if (mr == R) return f(std::integral_constant<int, R>{});
    withRowsFrom<R + 1, MAX>(mr, f);
  } else {
    f(std::integral_constant<int, MAX>{});
  }
}

/** Calls f(std::integral_constant<int, mr>{}) for mr = 1 … MAX − 1, and with MAX for any larger mr. */
template <int MAX, class F>
void withRows(int mr, F&& f) {
  withRowsFrom<1, MAX>(mr, f);
}

// ---------------------------------------------------------------- spans (M = 1)

extern "C" {  // packed_trace.h (C linkage: the same symbols from every level's namespace)
extern int qllmTraceOn;
void qllmTrace(int kind, int64_t a, int64_t b);
}

inline void prefetchLines(const uint8_t* p, int lines) {
  for (int i = 0; i < lines; ++i) __builtin_prefetch(p + 64 * i, 0, 3);  // prefetcht0
}

/** Bytes from a span stream's row group to the next one it walks (the prefetch targets below). */
inline int64_t spanNext(const PackedSpanArgs& t) { return t.backward ? -t.L->rgStride : t.L->rgStride; }

/**
 * The code bytes Dist ahead of code offset `off` of row group rg in its stream: past
 * the codes that is the stream's next row group (rg + rgStride), not this one's scales.
 * Without the wrap every row group started cold (its first KiB missed in every stream):
 * a cost per row group, so gate/up (18 KiB row groups at K = 2048, 352 per matrix) paid
 * it 2.75× as often per byte as down (50 KiB at K = 5632): in a TinyLlama-shaped decode
 * step on the Zen 3 (AVX2) gate/up took 433 µs per call against down's 326 µs for the
 * same bytes (+33%); with the wrap (and the scale prefetch below) 696 / 792 µs per
 * matrix against 648 / 784 µs (+7% / +1%, a loaded machine: every call twice as slow).
 */
template <int64_t Dist>
inline const uint8_t* prefetchTarget(const PackedLayout& L, const uint8_t* rg, int64_t off, int64_t next) {
  const int64_t at = off + Dist;
  return at < L.codeBytes ? rg + at : rg + next + (at - L.codeBytes);
}

/**
 * Block b also prefetches line b of the stream's next row group's scales (and mins): they are
 * a second, short stream per row group that otherwise starts cold at every row group.
 */
inline void prefetchNextScales(const PackedLayout& L, const uint8_t* rg, int64_t b, int64_t scaleBytes, int64_t next) {
  if (64 * b < scaleBytes) __builtin_prefetch(rg + next + L.codeBytes + 64 * b, 0, 3);
}

constexpr int kSpanStartLines = 16;  // 1 KiB

/**
 * Each stream's first KiB of codes and first scale line, all at once, where streams start (a span,
 * a steal): the kernels' own code prefetch runs 1 KiB ahead of the reads, so without this the
 * streams start on demand misses.
 */
inline void prefetchStreamStarts(const PackedLayout& L, const uint8_t* const* rgs, int n) {
  for (int st = 0; st < n; ++st) {
    for (int c = 0; c < kSpanStartLines; ++c) __builtin_prefetch(rgs[st] + 64 * c, 0, 3);
    __builtin_prefetch(rgs[st] + L.codeBytes, 0, 3);
  }
}

/**
 * The span's walk: NS streams side by side, many(L, rgs, t, ys, valid, ldy) with NS row groups
 * (one of each stream), one(…) with one. Without a split (t.split null) the span's nrg row groups
 * are cut into NS contiguous parts and the n % NS leftovers run one at a time; with one, the steps
 * are claimed from the call's shared split as t.role (packed.h SpanSplit), each step's outputs
 * placed by spanStepRows, and a step taken from a share's back walks its streams downwards.
 */
template <int NS, class Many, class One>
void spanStreams(const PackedSpanArgs& t, Many many, One one) {
  const PackedLayout& L = *t.L;
  if (t.split != nullptr) {
    PackedSpanArgs tb = t;  // the arguments of the steps taken from a share's back
    tb.backward = true;
    SpanStep s{}, prev{-1, 0, false};
    int prevN = 0;
    while (spanClaim(t.split, t.role, NS, &s)) {
      int64_t rgi[NS], ldy[NS];
      float* ys[NS];
      int valid[NS];
      const uint8_t* rgs[NS];
      const int n = spanStepRows(*t.split, s, NS, rgi, ys, valid, ldy);
      for (int st = 0; st < n; ++st) rgs[st] = t.split->data + rgi[st] * L.rgStride;
      // The streams restart unless this step follows the last one in the same share and direction
      // (and lanes: from a share's back its leftover row groups come first, one stream).
      if (s.share != prev.share || s.back != prev.back || s.step != prev.step + (s.back ? -1 : 1) || n != prevN) {
        prefetchStreamStarts(L, rgs, n);
        if (qllmTraceOn != 0 && s.back) qllmTrace(7 /* kTraceSteal */, s.share, s.step);
      }
      prev = s;
      prevN = n;
      if (qllmTraceOn != 0) qllmTrace(5 /* kTraceSpan */, s.step, 0);
      if (n == NS) many(L, rgs, s.back ? tb : t, ys, valid, ldy);
      else one(L, rgs, s.back ? tb : t, ys, valid, ldy);
    }
    return;
  }
  const int64_t n = t.nrg, part = n / NS;
  auto rgAt = [&](int64_t i) { return t.rg0 + i * L.rgStride; };
  auto validAt = [&](int64_t i) { return i == n - 1 ? t.lastValid : static_cast<int>(kRowGroup); };
  int64_t ldys[NS];
  for (int st = 0; st < NS; ++st) ldys[st] = t.ldy;
  if (part > 0) {
    const uint8_t* starts[NS];
    for (int st = 0; st < NS; ++st) starts[st] = rgAt(st * part);
    prefetchStreamStarts(L, starts, NS);
  }
  for (int64_t i = 0; i < part; ++i) {
    if (qllmTraceOn != 0) qllmTrace(5 /* kTraceSpan */, i, part);
    const uint8_t* rgs[NS];
    float* ys[NS];
    int valid[NS];
    for (int st = 0; st < NS; ++st) {
      const int64_t j = st * part + i;
      rgs[st] = rgAt(j);
      ys[st] = t.y + j * kRowGroup;
      valid[st] = validAt(j);
    }
    many(L, rgs, t, ys, valid, ldys);
  }
  for (int64_t j = NS * part; j < n; ++j) {
    const uint8_t* rgs[1] = {rgAt(j)};
    float* ys[1] = {t.y + j * kRowGroup};
    const int valid[1] = {validAt(j)};
    one(L, rgs, t, ys, valid, ldys);
  }
}

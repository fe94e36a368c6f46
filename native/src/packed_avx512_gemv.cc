// AVX-512 VNNI GEMV spans (decode, M = 1…8, int8 activations): see packed_avx512.h.
#include "packed_avx512.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
namespace qllm {
namespace avx512 {
namespace {

/**
 * Decode (M = 1) over a span of row groups, written for DRAM bandwidth. Measured on
 * this Zen 4 (2 threads, weights cycled through 256 MB, configurations interleaved in
 * one process, % of the read probe taken around each case; the host is noisy, ±10
 * points between runs):
 *   - kStreams = 4: the span is cut into 4 contiguous parts walked side by side
 *     (packed_walk.h spanStreams), so each thread keeps 4 sequential DRAM streams in
 *     flight, as the probe does; 1 stream read 49–60% of the probe for int4, 2 streams
 *     60–84%, 3–4 streams 73–92% (4 best or tied in most cases), and the activation
 *     broadcasts are shared by all of them;
 *   - no software prefetch of the codes on this Zen 4 (unlike the AVX2 spans on the
 *     Zen 3, and the Intel host: codeAhead below): prefetcht0 1–2 KiB ahead LOST 10–25
 *     points against none (int8 4096×4096 with 2 streams: 58% at 1 KiB, 77% without;
 *     128 B–512 B ahead: 5–15 points lost), the
 *     hardware prefetchers follow the 4 streams on their own. The next row group's
 *     scales are still prefetched one line per block (neutral on these shapes, cheap:
 *     it covers the short second stream of small row groups);
 *   - L3-resident (one 4096×4096 copy), the same spans run 85–93 GB/s int4 and
 *     61–67 GB/s int8, 2–3× the DRAM probe: compute is not the limit;
 *   - per stream two int32 chains (low and high nibbles; even and odd chunks for
 *     int8), so a sub-block is 4 dependent vpdpbusd per chain, not 8;
 *   - the layout's flags are template arguments: no branch or division per block.
 * Per output row the f32 operations are those of the scalar reference in the same
 * order (bit-equal; test/kernels/packed.test.ts).
 */
constexpr int kStreams = 4;

/**
 * Bytes of codes the spans (M = 1…8) prefetch ahead of each stream (prefetcht0, one line per
 * line read; 0: none), by CPU vendor. On the Intel host (AVX-512 VNNI + AMX Xeon, KVM,
 * 2 vCPUs; 4 streams per thread) the hardware prefetchers alone left the int4 spans at
 * 81–87% of the read probe; 1 KiB ahead read 88–93% (eval/bench-quantized-ab.ts figures
 * in the commit). On the Zen 4 host prefetching lost (above), so AMD keeps none.
 */
int64_t codeAhead() {
  static const int64_t ahead = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("intel") ? int64_t{1024} : int64_t{0};
  }();
  return ahead;
}

/** Calls f(std::integral_constant<int64_t, A>{}) with A = codeAhead() (a template argument: no per-block branch). */
template <class F>
void withAhead(F&& f) {
  if (codeAhead() == 1024) return f(std::integral_constant<int64_t, 1024>{});
  f(std::integral_constant<int64_t, 0>{});
}

/**
 * prefetcht0 of the LINES code lines AHEAD bytes past code offset `off` of each stream's row
 * group (past its codes: the stream's next row group, prefetchTarget); nothing when AHEAD = 0.
 * Force-inlined: as a plain inline function GCC 12 dropped the prefetches of the 4-stream
 * instantiations (the object code had none).
 */
template <int64_t AHEAD, int NS, int LINES>
__attribute__((always_inline)) inline void prefetchCodes(const PackedLayout& L, const uint8_t* const* rgs, int64_t off, int64_t next) {
  if constexpr (AHEAD > 0) {
    for (int st = 0; st < NS; ++st) {
      const uint8_t* p = prefetchTarget<AHEAD>(L, rgs[st], off, next);
      for (int c = 0; c < LINES; ++c) _mm_prefetch(reinterpret_cast<const char*>(p + 64 * c), _MM_HINT_T0);
    }
  }
}

template <int NS, int SUBS, int SB, bool MINS, int64_t AHEAD>
void q4SpanT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys, const int* valid,
             const int64_t* /* ldy: one row */) {
  const int64_t nb = L.Kp / L.Ba, next = spanNext(t);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m512 acc[NS];
  for (int st = 0; st < NS; ++st) acc[st] = _mm512_setzero_ps();
  GroupWalk gw(L);
  const int64_t minsOff = L.G * kRowGroup * SB, scaleBytes = (MINS ? 2 : 1) * minsOff;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    for (int st = 0; st < NS; ++st) prefetchNextScales(L, rgs[st], b, scaleBytes, next);
    const int32_t sum = t.asum[b];
    // Σ(q − 8)·a = Σq·a − 8·Σa: the symmetric offset is the chain's starting value.
    const __m512i start = MINS ? _mm512_setzero_si512() : _mm512_set1_epi32(-8 * sum);
    __m512i lo[NS], hi[NS];
    for (int st = 0; st < NS; ++st) {
      lo[st] = start;
      hi[st] = _mm512_setzero_si512();
    }
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      const int8_t* a = t.aq + k0;
      prefetchCodes<AHEAD, NS, 4>(L, rgs, k0 * 8, next);
      for (int c = 0; c < 4; ++c) {
        const __m512i alo = bcast4(a + 4 * c), ahi = bcast4(a + 16 + 4 * c);
        for (int st = 0; st < NS; ++st) {
          const __m512i v = _mm512_load_si512(rgs[st] + k0 * 8 + 64 * c);
          lo[st] = _mm512_dpbusd_epi32(lo[st], _mm512_and_si512(v, m4), alo);
          hi[st] = _mm512_dpbusd_epi32(hi[st], _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), ahi);
        }
      }
    }
    const __m512 d = _mm512_set1_ps(t.ad[b]);
    const __m512 dsum = _mm512_set1_ps(t.ad[b] * static_cast<float>(sum));
    for (int st = 0; st < NS; ++st) {
      const uint8_t* sp = rgs[st] + L.codeBytes + gw.gi * kRowGroup * SB;
      const __m512 S = _mm512_cvtepi32_ps(_mm512_add_epi32(lo[st], hi[st]));
      acc[st] = _mm512_fmadd_ps(S, _mm512_mul_ps(scalesAt<SB>(sp), d), acc[st]);
      if (MINS) acc[st] = _mm512_fmadd_ps(scalesAt<SB>(sp + minsOff), dsum, acc[st]);
    }
  }
  for (int st = 0; st < NS; ++st) store16(ys[st], acc[st], valid[st]);
}

template <int NS, int SUBS, int SB, int64_t AHEAD>
void q8SpanT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys, const int* valid,
             const int64_t* /* ldy: one row */) {
  const int64_t nb = L.Kp / L.Ba, next = spanNext(t);
  __m512 acc[NS];
  for (int st = 0; st < NS; ++st) acc[st] = _mm512_setzero_ps();
  GroupWalk gw(L);
  const int64_t scaleBytes = L.G * kRowGroup * SB;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    for (int st = 0; st < NS; ++st) prefetchNextScales(L, rgs[st], b, scaleBytes, next);
    // The bytes are q + 128: Σ(q + 128)·a − 128·Σa = Σq·a, the offset the chain starts at.
    __m512i S[NS][2];
    for (int st = 0; st < NS; ++st) {
      S[st][0] = _mm512_set1_epi32(-128 * t.asum[b]);
      S[st][1] = _mm512_setzero_si512();
    }
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      prefetchCodes<AHEAD, NS, 8>(L, rgs, k0 * 16, next);
      for (int c = 0; c < 8; ++c) {
        const __m512i a = bcast4(t.aq + k0 + 4 * c);
        for (int st = 0; st < NS; ++st)
          S[st][c & 1] = _mm512_dpbusd_epi32(S[st][c & 1], _mm512_load_si512(rgs[st] + k0 * 16 + 64 * c), a);
      }
    }
    const __m512 d = _mm512_set1_ps(t.ad[b]);
    for (int st = 0; st < NS; ++st) {
      const uint8_t* sp = rgs[st] + L.codeBytes + gw.gi * kRowGroup * SB;
      const __m512 Sf = _mm512_cvtepi32_ps(_mm512_add_epi32(S[st][0], S[st][1]));
      acc[st] = _mm512_fmadd_ps(Sf, _mm512_mul_ps(scalesAt<SB>(sp), d), acc[st]);
    }
  }
  for (int st = 0; st < NS; ++st) store16(ys[st], acc[st], valid[st]);
}

// ---------------------------------------------------------------- M = 2…8

/**
 * MR activation rows (batched decode) over a span, W streamed once: NS streams as at
 * M = 1, each 64-byte chunk (its two nibble halves for int4) used by MR `vpdpbusd`
 * against broadcast activations of the MR rows ({1to16} memory operands, no
 * register), one int32 chain per (stream, row) and one f32 accumulator each. The
 * GEMM tile (one row group at a time) read W from DRAM as one stream per thread.
 * Streams per MR (streamsFor): NS·MR int32 chains + NS·MR f32 sums + 3 zmm of codes
 * stay within the 32 zmm registers up to MR = 6 (MR = 7, 8 spill a few f32 sums,
 * touched once per block). Against the tiles on this Zen 4, cold, 2 threads, the
 * three GEMV shapes × int4 g32 / g128 / int8 g32, 3 rounds alternating in one process
 * (eval/bench-quantized-ab.ts): M = 2 0.96–1.20×, M = 4 1.07–1.69×, M = 8 1.10–1.30×
 * (with the driver's padded activation rows, packed_matmul.cc). int4 at M = 8 is
 * vpdpbusd-bound, not DRAM-bound: 2 products per 64 bytes per row, 13–15 GB/s cold and
 * 17 GB/s L3-resident (4096×4096), where the int8 layout (1 product per 64 bytes)
 * reads 18 cold / 26 L3-resident. On the Intel host the code prefetch (codeAhead) made these
 * spans 1.02–1.10× (M = 2), 1.05–1.16× (M = 4), 1.16–1.23× (M = 8) faster, cold.
 */
constexpr int streamsFor(int mr) { return mr <= 3 ? 4 : mr == 4 ? 3 : 2; }

template <int NS, int MR, int SUBS, int SB, bool MINS, int64_t AHEAD>
void q4SpanMT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys,
              const int* valid, const int64_t* ldy) {
  const int64_t nb = L.Kp / L.Ba, next = spanNext(t);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m512 acc[NS][MR];
  for (int st = 0; st < NS; ++st)
    for (int m = 0; m < MR; ++m) acc[st][m] = _mm512_setzero_ps();
  GroupWalk gw(L);
  const int64_t minsOff = L.G * kRowGroup * SB, scaleBytes = (MINS ? 2 : 1) * minsOff;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    for (int st = 0; st < NS; ++st) prefetchNextScales(L, rgs[st], b, scaleBytes, next);
    __m512i S[NS][MR];
    for (int m = 0; m < MR; ++m) {
      // Σ(q − 8)·a = Σq·a − 8·Σa: the symmetric offset is each chain's starting value.
      const __m512i start = MINS ? _mm512_setzero_si512() : _mm512_set1_epi32(-8 * t.asum[m * nb + b]);
      for (int st = 0; st < NS; ++st) S[st][m] = start;
    }
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      const int8_t* ar[MR];
      rowPointers<MR>(t.aq + k0, t.lda, ar);
      prefetchCodes<AHEAD, NS, 4>(L, rgs, k0 * 8, next);
      for (int c = 0; c < 4; ++c) {
        for (int st = 0; st < NS; ++st) {
          const __m512i v = _mm512_load_si512(rgs[st] + k0 * 8 + 64 * c);
          const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
          for (int m = 0; m < MR; ++m) dpbusdB(S[st][m], lo, ar[m] + 4 * c);
          for (int m = 0; m < MR; ++m) dpbusdB(S[st][m], hi, ar[m] + 16 + 4 * c);
        }
      }
    }
    for (int st = 0; st < NS; ++st) {
      const uint8_t* sp = rgs[st] + L.codeBytes + gw.gi * kRowGroup * SB;
      const __m512 sc = scalesAt<SB>(sp);
      for (int m = 0; m < MR; ++m) {
        const float d = t.ad[m * nb + b];
        acc[st][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[st][m]), _mm512_mul_ps(sc, _mm512_set1_ps(d)), acc[st][m]);
        if (MINS)
          acc[st][m] = _mm512_fmadd_ps(scalesAt<SB>(sp + minsOff), _mm512_set1_ps(d * static_cast<float>(t.asum[m * nb + b])),
                                       acc[st][m]);
      }
    }
  }
  for (int st = 0; st < NS; ++st)
    for (int m = 0; m < MR; ++m) store16(ys[st] + m * ldy[st], acc[st][m], valid[st]);
}

template <int NS, int MR, int SUBS, int SB, int64_t AHEAD>
void q8SpanMT(const PackedLayout& L, const uint8_t* const* rgs, const PackedSpanArgs& t, float* const* ys,
              const int* valid, const int64_t* ldy) {
  const int64_t nb = L.Kp / L.Ba, next = spanNext(t);
  __m512 acc[NS][MR];
  for (int st = 0; st < NS; ++st)
    for (int m = 0; m < MR; ++m) acc[st][m] = _mm512_setzero_ps();
  GroupWalk gw(L);
  const int64_t scaleBytes = L.G * kRowGroup * SB;
  for (int64_t b = 0; b < nb; ++b, gw.next()) {
    for (int st = 0; st < NS; ++st) prefetchNextScales(L, rgs[st], b, scaleBytes, next);
    __m512i S[NS][MR];
    for (int m = 0; m < MR; ++m) {
      const __m512i start = _mm512_set1_epi32(-128 * t.asum[m * nb + b]);  // the bytes are q + 128
      for (int st = 0; st < NS; ++st) S[st][m] = start;
    }
    for (int s = 0; s < SUBS; ++s) {
      const int64_t k0 = (b * SUBS + s) * kSubBlock;
      const int8_t* ar[MR];
      rowPointers<MR>(t.aq + k0, t.lda, ar);
      prefetchCodes<AHEAD, NS, 8>(L, rgs, k0 * 16, next);
      for (int c = 0; c < 8; ++c)
        for (int st = 0; st < NS; ++st) {
          const __m512i v = _mm512_load_si512(rgs[st] + k0 * 16 + 64 * c);
          for (int m = 0; m < MR; ++m) dpbusdB(S[st][m], v, ar[m] + 4 * c);
        }
    }
    for (int st = 0; st < NS; ++st) {
      const __m512 sc = scalesAt<SB>(rgs[st] + L.codeBytes + gw.gi * kRowGroup * SB);
      for (int m = 0; m < MR; ++m)
        acc[st][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[st][m]), _mm512_mul_ps(sc, _mm512_set1_ps(t.ad[m * nb + b])),
                                     acc[st][m]);
    }
  }
  for (int st = 0; st < NS; ++st)
    for (int m = 0; m < MR; ++m) store16(ys[st] + m * ldy[st], acc[st][m], valid[st]);
}

}  // namespace

void q4Span(const PackedSpanArgs& t) {
  withLayoutFlags<true>(*t.L, [&](auto subs, auto sb, auto mins) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    constexpr bool MINS = decltype(mins)::value;
    if (t.mr == 1)
      return withAhead([&](auto ahead) {
        constexpr int64_t A = decltype(ahead)::value;
        spanStreams<kStreams>(t, q4SpanT<kStreams, SUBS, SB, MINS, A>, q4SpanT<1, SUBS, SB, MINS, A>);
      });
    withAhead([&](auto ahead) {
      constexpr int64_t A = decltype(ahead)::value;
      auto rows = [&](auto mr) {
        constexpr int MR = decltype(mr)::value, NS = streamsFor(MR);
        spanStreams<NS>(t, q4SpanMT<NS, MR, SUBS, SB, MINS, A>, q4SpanMT<1, MR, SUBS, SB, MINS, A>);
      };
      withRowsFrom<2, kSpanMaxM>(t.mr, rows);
    });
  });
}

void q8Span(const PackedSpanArgs& t) {
  withLayoutFlags<false>(*t.L, [&](auto subs, auto sb, auto) {
    constexpr int SUBS = decltype(subs)::value, SB = decltype(sb)::value;
    if (t.mr == 1)
      return withAhead([&](auto ahead) {
        constexpr int64_t A = decltype(ahead)::value;
        spanStreams<kStreams>(t, q8SpanT<kStreams, SUBS, SB, A>, q8SpanT<1, SUBS, SB, A>);
      });
    withAhead([&](auto ahead) {
      constexpr int64_t A = decltype(ahead)::value;
      auto rows = [&](auto mr) {
        constexpr int MR = decltype(mr)::value, NS = streamsFor(MR);
        spanStreams<NS>(t, q8SpanMT<NS, MR, SUBS, SB, A>, q8SpanMT<1, MR, SUBS, SB, A>);
      };
      withRowsFrom<2, kSpanMaxM>(t.mr, rows);
    });
  });
}

}  // namespace avx512
}  // namespace qllm
#endif

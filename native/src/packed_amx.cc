// AMX-INT8 GEMM (prefill, M ≥ kAmxMinM) over the q4x16 / q8x16 layouts: the "amx"
// packed level, which is the AVX-512 VNNI table (packed_avx512.cc) plus the two
// range kernels below (compiled alone with -mamx-tile -mamx-int8, binding.gyp's
// qllm_packed_amx; offered only when the CPU, the OS and the process permit tiles).
//
// One call runs a thread's range of row groups against all M activation rows:
//   for each pair of row groups: its codes are unpacked ONCE into B-tile rows in a
//   per-thread buffer (q4x16's chunk c of sub-block s: low nibbles = B row 8s + c,
//   high nibbles = B row 8s + 4 + c, each 16 columns × 4 k; q8x16's chunks already
//   are B rows), then every 32 activation rows (2 A tiles of 16 rows) sweep all
//   activation blocks b:
//     C tiles (2 m × 2 n, 16×16 int32) = 0; per K step (64 k, or 32 when Ba is an odd
//     multiple of 32) tileloadd A, B and `tdpbssd` / `tdpbsud`; `tilestored` C; the
//     AVX-512 epilogue does the scalar reference's f32 operations on the block's int32
//     sums S, in its order (packed_scalar.cc): acc = fma(float(S), s·d, acc) (+ mins).
// Signed codes make S the reference's integer directly: symmetric int4 is unpacked
// as q − 8 (S = Σ(q − 8)a = S_ref − 8Σa), int8 as its byte xor 0x80 = q, both
// `tdpbssd`; int4 with mins keeps the unsigned nibbles, `tdpbsud` (A s8 × B u8).
// A block's int32 dot is exact on any unit (|S| ≤ 128·128·127 < 2^31), so the result
// is bit-equal to the scalar reference (test/kernels/packed.test.ts).
//
// Where the time goes (this Xeon, 1 thread, int4 g32 512×4096·4096ᵀ, 33 ms; parts
// skipped one at a time): tdps + tile loads ≈ 12 ms, tilestored ≈ 8 ms, the epilogue ≈
// 13 ms (≈ 2 cycles per 16 outputs per block; its floor, cvt + mul + fma on two ports, is
// 1.5). At Ba = 32 (Q4_0) every block costs one tilestored and one epilogue per 256 outputs
// for only 32 k: g128 runs 2.2–2.4× faster. Tried and slower (same sitting): two C tile sets
// with block b's tdps issued before block b − 1's epilogue (0.82–1.12×, median 0.92×), and 1 × 1 panels
// with the 16 accumulators in registers (0.85×).
#include "packed.h"

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__F16C__) && defined(__linux__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace qllm {
namespace amx {
namespace {

/** The smallest M the AMX kernels take (below it the VNNI spans / tiles run). */
constexpr int kAmxMinM = 16;
/** Bytes of unpacked codes per chunk of row groups (a quarter of this CPU's 2 MiB L2). */
constexpr int64_t kChunkBytes = 512 << 10;

/** CPUID AMX-TILE and AMX-INT8, XCR0 tile state enabled by the OS, and Linux's per-process permission. */
bool usable() {
  static const bool ok = [] {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 24) & 1) || !((d >> 25) & 1)) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return false;  // OSXSAVE: xgetbv works
    unsigned lo, hi;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return false;  // XTILECFG, XTILEDATA
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

struct TileConfig {
  uint8_t palette, startRow, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Tiles: C(i, j) = 2i + j (m tile i, n tile j), A(i) = 4 + i, B(j) = 6 + j.
void configure(int ks) {
  alignas(64) TileConfig c{};
  c.palette = 1;
  for (int t = 0; t < 4; ++t) c.rows[t] = 16, c.colsb[t] = 64;
  for (int t = 4; t < 6; ++t) c.rows[t] = 16, c.colsb[t] = static_cast<uint16_t>(ks);
  for (int t = 6; t < 8; ++t) c.rows[t] = static_cast<uint8_t>(ks / 4), c.colsb[t] = 64;
  _tile_loadconfig(&c);
}

/** A per-thread buffer that only grows (64-byte aligned). */
struct Grow {
  void* p = nullptr;
  size_t cap = 0;
  ~Grow() { std::free(p); }
  template <class T>
  T* get(size_t n) {
    const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    if (bytes > cap) {
      std::free(p);
      p = std::aligned_alloc(64, bytes);
      if (p == nullptr) std::abort();
      cap = bytes;
    }
    return static_cast<T*>(p);
  }
};

struct Scratch {
  Grow b, tail, tailD, tailS, gOff;
  alignas(64) int32_t c[4][256];      // the C tiles of one block, [tile][16 rows × 16]
};
thread_local Scratch tls;

enum Kind { kQ4, kQ4Mins, kQ8 };

template <int SB>
inline __m512 scalesAt(const uint8_t* p) {
  if (SB == 2) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
}

/** The row group's codes as B-tile rows (Kp/4 rows of 64 bytes: 16 columns × 4 k), signed unless kQ4Mins. */
template <int KIND>
void unpack(const PackedLayout& L, const uint8_t* rg, int8_t* dst) {
  if (KIND == kQ8) {
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int64_t i = 0; i < L.codeBytes; i += 64)
      _mm512_store_si512(dst + i, _mm512_xor_si512(_mm512_load_si512(rg + i), bias));
    return;
  }
  const __m512i m4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(KIND == kQ4 ? 8 : 0);
  for (int64_t s = 0; s < L.Kp / kSubBlock; ++s)
    for (int c = 0; c < 4; ++c) {
      const __m512i v = _mm512_load_si512(rg + 256 * s + 64 * c);
      const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      _mm512_store_si512(dst + 512 * s + 64 * c, _mm512_sub_epi8(lo, eight));
      _mm512_store_si512(dst + 512 * s + 64 * (4 + c), _mm512_sub_epi8(hi, eight));
    }
}

/** One K step of all MT × NT C tiles: A rows at a (stride lda), B rows at b[j]. */
template <bool SIGNED, int MT, int NT>
inline void step(const int8_t* a, int64_t lda, const int8_t* b0, const int8_t* b1) {
  _tile_loadd(4, a, lda);
  _tile_loadd(6, b0, 64);
  if constexpr (NT == 2) _tile_loadd(7, b1, 64);
  if constexpr (MT == 2) _tile_loadd(5, a + 16 * lda, lda);
  if constexpr (SIGNED) {
    _tile_dpbssd(0, 4, 6);
    if constexpr (NT == 2) _tile_dpbssd(1, 4, 7);
    if constexpr (MT == 2) _tile_dpbssd(2, 5, 6);
    if constexpr (MT == 2 && NT == 2) _tile_dpbssd(3, 5, 7);
  } else {
    _tile_dpbsud(0, 4, 6);
    if constexpr (NT == 2) _tile_dpbsud(1, 4, 7);
    if constexpr (MT == 2) _tile_dpbsud(2, 5, 6);
    if constexpr (MT == 2 && NT == 2) _tile_dpbsud(3, 5, 7);
  }
}

template <int MT, int NT>
inline void zeroAndStore(bool zero, int32_t (*c)[256]) {
  if (zero) {
    _tile_zero(0);
    if constexpr (NT == 2) _tile_zero(1);
    if constexpr (MT == 2) _tile_zero(2);
    if constexpr (MT == 2 && NT == 2) _tile_zero(3);
  } else {
    _tile_stored(0, c[0], 64);
    if constexpr (NT == 2) _tile_stored(1, c[1], 64);
    if constexpr (MT == 2) _tile_stored(2, c[2], 64);
    if constexpr (MT == 2 && NT == 2) _tile_stored(3, c[3], 64);
  }
}

struct Panel {
  const PackedLayout* L;
  const int8_t* a;        // activation row m0 (stride lda)
  int64_t lda;
  const float* ad;        // [rows][nb] of row m0
  const int32_t* asum;    // [rows][nb]
  const int8_t* b[2];     // the unpacked B rows of the NT row groups
  const uint8_t* scl[2];  // their scales
  const int32_t* gOff;    // [nb] byte offset of block b's group in the scales
  int ks;                 // k per K step (32 or 64)
};

/**
 * 16·MT activation rows × NT row groups over all blocks; writes rows < rows of y (row
 * stride ldy), columns < valid[j] of row group j. The f32 accumulators are locals: at
 * MT = NT = 1 they are 16 zmm registers, so a block's epilogue (cvt, s·d, fma per row)
 * stores nothing but the C tile.
 */
template <int KIND, int SB, int MT, int NT>
void panel(const Panel& p, float* y, int64_t ldy, int64_t rows, const int* valid) {
  constexpr bool SIGNED = KIND != kQ4Mins;
  const PackedLayout& L = *p.L;
  const int64_t nb = L.Kp / L.Ba, minsOff = L.G * kRowGroup * SB;
  const int steps = static_cast<int>(L.Ba / p.ks);
  Scratch& s = tls;
  __m512 acc[MT * 16][NT];
  for (int m = 0; m < 16 * MT; ++m)
    for (int j = 0; j < NT; ++j) acc[m][j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    zeroAndStore<MT, NT>(true, s.c);
    for (int st = 0; st < steps; ++st) {
      const int64_t k = b * L.Ba + st * p.ks;
      step<SIGNED, MT, NT>(p.a + k, p.lda, p.b[0] + 16 * k, NT == 2 ? p.b[1] + 16 * k : nullptr);
    }
    zeroAndStore<MT, NT>(false, s.c);
    for (int j = 0; j < NT; ++j) {
      const uint8_t* sp = p.scl[j] + p.gOff[b];
      const __m512 sc = scalesAt<SB>(sp);
      const __m512 mn = KIND == kQ4Mins ? scalesAt<SB>(sp + minsOff) : _mm512_setzero_ps();
      for (int i = 0; i < MT; ++i) {
        const int32_t* c = s.c[2 * i + j];
#pragma GCC unroll 16
        for (int mm = 0; mm < 16; ++mm) {
          const int m = 16 * i + mm;
          const float d = p.ad[m * nb + b];
          __m512& v = acc[m][j];
          v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * mm)), _mm512_mul_ps(sc, _mm512_set1_ps(d)), v);
          if (KIND == kQ4Mins) v = _mm512_fmadd_ps(mn, _mm512_set1_ps(d * static_cast<float>(p.asum[m * nb + b])), v);
        }
      }
    }
  }
  for (int j = 0; j < NT; ++j) {
    const __mmask16 mask = static_cast<__mmask16>((1u << valid[j]) - 1);
#pragma GCC unroll 32
    for (int m = 0; m < 16 * MT; ++m)
      if (m < rows) _mm512_mask_storeu_ps(y + j * kRowGroup + m * ldy, mask, acc[m][j]);
  }
}

template <int KIND, int SB>
void gemmT(const PackedSpanArgs& t) {
  const PackedLayout& L = *t.L;
  const int64_t Kp = L.Kp, nb = Kp / L.Ba, M = t.mr;
  Scratch& s = tls;
  const int ks = L.Ba % 64 == 0 ? 64 : 32;
  configure(ks);
  int32_t* gOff = s.gOff.get<int32_t>(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t gi = L.G > 1 ? b * L.Ba / L.g : 0;
    gOff[b] = static_cast<int32_t>(gi * kRowGroup * SB);
  }
  // The last M % 32 rows, copied into 32 zero-padded rows (tiles read whole rows; pad d = 0).
  constexpr int64_t MR = 32;
  const int64_t mFull = M / MR * MR, tailRows = M - mFull;
  int8_t* tail = nullptr;
  float* tailD = nullptr;
  int32_t* tailS = nullptr;
  if (tailRows > 0) {
    tail = s.tail.get<int8_t>(static_cast<size_t>(MR * Kp));
    tailD = s.tailD.get<float>(static_cast<size_t>(MR * nb));
    tailS = s.tailS.get<int32_t>(static_cast<size_t>(MR * nb));
    std::memset(tail, 0, static_cast<size_t>(MR * Kp));
    std::memset(tailD, 0, static_cast<size_t>(MR * nb) * 4);
    std::memset(tailS, 0, static_cast<size_t>(MR * nb) * 4);
    for (int64_t m = 0; m < tailRows; ++m) std::memcpy(tail + m * Kp, t.aq + (mFull + m) * t.lda, static_cast<size_t>(Kp));
    std::memcpy(tailD, t.ad + mFull * nb, static_cast<size_t>(tailRows * nb) * 4);
    std::memcpy(tailS, t.asum + mFull * nb, static_cast<size_t>(tailRows * nb) * 4);
  }
  // Row groups in chunks of R whose unpacked codes (R · Kp · 16 bytes) stay in L2; every MR
  // activation rows (MR · lda bytes) sweep the chunk, so each is read from L3 once per chunk.
  const int64_t rgBytes = Kp * 16;
  const int64_t R = std::max<int64_t>(2, kChunkBytes / rgBytes / 2 * 2);
  int8_t* bbuf = s.b.get<int8_t>(static_cast<size_t>(R * rgBytes));
  for (int64_t r0 = 0; r0 < t.nrg; r0 += R) {
    const int64_t r1 = std::min(t.nrg, r0 + R);
    for (int64_t r = r0; r < r1; ++r) unpack<KIND>(L, t.rg0 + r * L.rgStride, bbuf + (r - r0) * rgBytes);
    for (int64_t m0 = 0; m0 < M; m0 += MR) {
      const bool isTail = m0 == mFull;
      const int64_t rows = isTail ? tailRows : MR;
      Panel p{};
      p.L = &L;
      p.gOff = gOff;
      p.ks = ks;
      p.a = isTail ? tail : t.aq + m0 * t.lda;
      p.lda = isTail ? Kp : t.lda;
      p.ad = isTail ? tailD : t.ad + m0 * nb;
      p.asum = isTail ? tailS : t.asum + m0 * nb;
      for (int64_t r = r0; r < r1; r += 2) {
        const int NT = r1 - r >= 2 ? 2 : 1;
        int valid[2];
        for (int j = 0; j < NT; ++j) {
          p.b[j] = bbuf + (r + j - r0) * rgBytes;
          p.scl[j] = t.rg0 + (r + j) * L.rgStride + L.codeBytes;
          valid[j] = r + j == t.nrg - 1 ? t.lastValid : static_cast<int>(kRowGroup);
        }
        float* y = t.y + r * kRowGroup + m0 * t.ldy;
        if (rows > 16 && NT == 2) panel<KIND, SB, 2, 2>(p, y, t.ldy, rows, valid);
        else if (rows > 16) panel<KIND, SB, 2, 1>(p, y, t.ldy, rows, valid);
        else if (NT == 2) panel<KIND, SB, 1, 2>(p, y, t.ldy, rows, valid);
        else panel<KIND, SB, 1, 1>(p, y, t.ldy, rows, valid);
      }
    }
  }
  _tile_release();
}

void q4Gemm(const PackedSpanArgs& t) {
  const bool f16 = t.L->scaleBytes == 2;
  if (t.L->mins) f16 ? gemmT<kQ4Mins, 2>(t) : gemmT<kQ4Mins, 4>(t);
  else f16 ? gemmT<kQ4, 2>(t) : gemmT<kQ4, 4>(t);
}

void q8Gemm(const PackedSpanArgs& t) { t.L->scaleBytes == 2 ? gemmT<kQ8, 2>(t) : gemmT<kQ8, 4>(t); }

}  // namespace
}  // namespace amx

const PackedKernels* packedKernelsAmx(const PackedKernels* avx512) {
  if (avx512 == nullptr || !amx::usable()) return nullptr;
  static const PackedKernels table = [&] {
    PackedKernels k = *avx512;  // decode spans, small-M tiles, quantizer: the VNNI level's
    k.name = "amx";
    k.q4Gemm = amx::q4Gemm;
    k.q8Gemm = amx::q8Gemm;
    k.gemmMinM = amx::kAmxMinM;
    return k;
  }();
  return &table;
}

}  // namespace qllm
#else
namespace qllm {
const PackedKernels* packedKernelsAmx(const PackedKernels*) { return nullptr; }  // not compiled in
}  // namespace qllm
#endif

// The scalar reference tiles: the specification of every packed layout and of the
// arithmetic the fast tiles must reproduce (test/kernels/ holds them equal).
//
// The int8-activation tiles define the exact order of the f32 operations, which the
// SIMD tiles follow, so both give the same bits:
//   per activation block b of row r (S = Σ_k q_w·q_a exact in int32, d = d_b, Σ = Σ_k q_a):
//     symmetric int4:  acc = fma(float(S − 8·Σ), s·d, acc)          (w = s·(q − 8))
//     int4 with mins:  acc = fma(float(S), s·d, acc); acc = fma(m, d·float(Σ), acc)
//     int8:            acc = fma(float(S), s·d, acc)                (w = s·q)
// The f32-activation tiles (H16 and the exact Q4/Q8 path) accumulate
// acc = fma(w_k, x_k, acc) for k = 0, 1, … K−1.
#include <cmath>
#include <cstring>

#include "packed.h"
#include "packed_f16.h"

namespace qllm {
namespace {

inline float scaleAt(const PackedLayout& L, const uint8_t* rg, int64_t set, int64_t gi, int r) {
  const uint8_t* p = rg + L.codeBytes + ((set * L.G + gi) * kRowGroup + r) * L.scaleBytes;
  if (L.scaleBytes == 2) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return halfToFloat(h);
  }
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

/** Code of row r at column k of a Q4 row group (layout: packed_pack.cc, LAYOUTS.md). */
inline int q4Code(const uint8_t* rg, int r, int64_t k) {
  const int64_t s = k / kSubBlock, kk = k % kSubBlock;
  const int64_t c = (kk % 16) / 4, j = kk % 4;
  const uint8_t b = rg[s * 256 + c * 64 + 4 * r + j];
  return kk < 16 ? (b & 15) : (b >> 4);
}

/** Signed code of row r at column k of a Q8 row group. */
inline int q8Code(const uint8_t* rg, int r, int64_t k) {
  const int64_t s = k / kSubBlock, kk = k % kSubBlock;
  return static_cast<int>(rg[s * 512 + (kk / 4) * 64 + 4 * r + kk % 4]) - 128;
}

inline int64_t groupOf(const PackedLayout& L, int64_t k) {
  const int64_t gi = k / L.g;
  return gi < L.G ? gi : L.G - 1;
}

template <bool Q8>
void tileInt8Acts(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  const int64_t nb = L.Kp / L.Ba;
  for (int m = 0; m < t.mr; ++m) {
    const int8_t* a = t.aq + m * L.Kp;
    const float* ad = t.ad + m * nb;
    const int32_t* asum = t.asum + m * nb;
    for (int r = 0; r < t.nValid; ++r) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t S = 0;
        for (int64_t k = b * L.Ba; k < (b + 1) * L.Ba; ++k) S += (Q8 ? q8Code(t.rg, r, k) : q4Code(t.rg, r, k)) * a[k];
        const int64_t gi = groupOf(L, b * L.Ba);
        const float s = scaleAt(L, t.rg, 0, gi, r), d = ad[b];
        if (Q8) {
          acc = std::fma(static_cast<float>(S), s * d, acc);
        } else if (L.mins) {
          acc = std::fma(static_cast<float>(S), s * d, acc);
          acc = std::fma(scaleAt(L, t.rg, 1, gi, r), d * static_cast<float>(asum[b]), acc);
        } else {
          acc = std::fma(static_cast<float>(S - 8 * asum[b]), s * d, acc);
        }
      }
      t.y[m * t.ldy + r] = acc;
    }
  }
}

template <bool Q8>
void tileF32Acts(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  for (int m = 0; m < t.mr; ++m) {
    const float* x = t.af + m * t.ldaf;
    for (int r = 0; r < t.nValid; ++r) {
      float acc = 0.0f;
      for (int64_t k = 0; k < L.K; ++k) {
        const int64_t gi = groupOf(L, k);
        const float s = scaleAt(L, t.rg, 0, gi, r);
        float w;
        if (Q8) w = static_cast<float>(q8Code(t.rg, r, k)) * s;
        else if (L.mins) w = std::fma(s, static_cast<float>(q4Code(t.rg, r, k)), scaleAt(L, t.rg, 1, gi, r));
        else w = static_cast<float>(q4Code(t.rg, r, k) - 8) * s;
        acc = std::fma(w, x[k], acc);
      }
      t.y[m * t.ldy + r] = acc;
    }
  }
}

void tileH16(const PackedTileArgs& t) {
  const PackedLayout& L = *t.L;
  const uint16_t* w = reinterpret_cast<const uint16_t*>(t.rg);
  const bool bf = L.h16 == H16Type::BF16;
  for (int m = 0; m < t.mr; ++m) {
    const float* x = t.af + m * t.ldaf;
    for (int r = 0; r < t.nValid; ++r) {
      float acc = 0.0f;
      for (int64_t k = 0; k < L.K; ++k) {
        const uint16_t v = w[k * kRowGroup + r];
        acc = std::fma(bf ? bf16ToFloat(v) : halfToFloat(v), x[k], acc);
      }
      t.y[m * t.ldy + r] = acc;
    }
  }
}

inline uint16_t load16(const uint8_t* p) {  // rows of a mapped file need not be 2-aligned
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

/** Row-major views: each row's dot products in the k order of tileH16 (the SIMD levels split k into lanes). */
void rowsH16(const H16RowsArgs& a) {
  const bool bf = a.type == H16Type::BF16;
  for (int64_t n = 0; n < a.rows; ++n) {
    const uint8_t* row = a.w + n * a.ldw;
    for (int m = 0; m < a.M; ++m) {
      const float* x = a.x + m * a.ldx;
      float acc = 0.0f;
      for (int64_t k = 0; k < a.K; ++k) {
        const uint16_t v = load16(row + 2 * k);
        acc = std::fma(bf ? bf16ToFloat(v) : halfToFloat(v), x[k], acc);
      }
      a.y[m * a.ldy + n] = acc;
    }
  }
}

/** One row group of a row-major view into the f16x16 / bf16x16 layout (LAYOUTS.md): out[16k + r] = w[r, k]. */
void packRowsH16(const uint8_t* rows, int64_t ldw, int nValid, int64_t K, uint16_t* out) {
  for (int64_t k = 0; k < K; ++k)
    for (int r = 0; r < kRowGroup; ++r) out[k * kRowGroup + r] = r < nValid ? load16(rows + r * ldw + 2 * k) : 0;
}

void quantizeScalar(const float* x, int64_t K, int64_t Kp, int64_t Ba, int8_t* q, float* d, int32_t* sum) {
  for (int64_t b = 0; b * Ba < Kp; ++b) {
    const int64_t k0 = b * Ba, k1 = k0 + Ba < K ? k0 + Ba : K;
    float amax = 0.0f;
    for (int64_t k = k0; k < k1; ++k) amax = std::fmax(amax, std::fabs(x[k]));
    // d = amax/127 and q = round-half-even(x · 127/amax): |q| ≤ 127, so the AVX2 sign
    // trick (vpsignb) never meets −128. The f32 ops match the SIMD quantizers exactly.
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int64_t k = k0; k < k0 + Ba; ++k) {
      const int v = k < k1 ? static_cast<int>(std::nearbyint(x[k] * id)) : 0;
      q[k] = static_cast<int8_t>(v);
      s += v;
    }
    d[b] = amax / 127.0f;
    sum[b] = s;
  }
}

uint64_t readStreamsScalar(const uint8_t* const* s, size_t bytes) {
  uint64_t acc[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < bytes; i += 8)
    for (int j = 0; j < 4; ++j) {
      uint64_t v;
      std::memcpy(&v, s[j] + i, 8);
      acc[j] ^= v;
    }
  return acc[0] ^ acc[1] ^ acc[2] ^ acc[3];
}

constexpr PackedKernels kScalar = {
    "scalar", 4, 4, 4, 4, tileInt8Acts<false>, tileInt8Acts<true>, tileF32Acts<false>, tileF32Acts<true>, tileH16, quantizeScalar,
    readStreamsScalar, nullptr, nullptr, 1, nullptr, nullptr, 0, rowsH16, packRowsH16, 8,
};

}  // namespace

const PackedKernels* packedKernelsScalar() { return &kScalar; }

}  // namespace qllm

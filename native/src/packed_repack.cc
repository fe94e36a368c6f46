// Direct repackers: a quantized tensor's stored bytes → its runtime layout (packed.h,
// native/LAYOUTS.md) in one pass, on the pool, straight into the final 2 MiB-aligned
// arena. The reference path is two steps with an [N, K] byte-per-code array between
// them: the TS converters (src/load/gptq-source.ts, awq-source.ts via canonical.ts,
// gguf-canonical.ts) produce canonical inputs and packQ4 / packQ8 (packed_pack.cc) pack
// them. That costs a JS pass and a native pass over every weight plus the canonical
// arrays' memory traffic, ~2 s of a TinyLlama-sized load. Here each source kind has:
//
//   scalesOf   the canonical scales (and mins) [N, G] in f32, exactly as the TS converter
//              computes them (same f16 decode, same f32 products), so the f16-or-f32
//              scale decision (packbuild::scaleBytesFor) and the scale bytes agree;
//   code       the canonical code of (row n, column k), for pad and partial sub-blocks and
//              act-order (perm) columns: the scalar specification of the source layout;
//   fullSub    one whole 32-column sub-block of one row as the layout's 32-bit words,
//              straight from the source words (Q4_0/Q4_1: the stored bytes ARE the
//              layout's nibble pairs; GPTQ: two nibble spreads per word; Q8_0: xor 0x80).
//
// test/load/repack.test.ts holds every source byte-identical to the reference path (odd
// shapes, act-order, v1/v2 zeros, asymmetric grids, both paths of every kind).
#include <cmath>
#include <cstring>
#include <vector>

#include "packed.h"
#include "packed_build.h"
#include "packed_f16.h"
#include "packed_repack.h"
#include "runtime.h"

namespace qllm {
namespace {

using namespace packbuild;

inline uint32_t ld32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint16_t ld16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline void st32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

/** The 4 nibbles of x (16 bits) into the 4 bytes of a u32, lowest nibble in the lowest byte. */
inline uint32_t spread4(uint32_t x) {
  x = (x | (x << 8)) & 0x00ff00ffu;
  return (x | (x << 4)) & 0x0f0f0f0fu;
}

constexpr int kAwqReverse[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // column c of 8 sits in nibble kAwqReverse[c]

/** Everything one source kind needs; the fields a kind does not use are null/0. */
struct Src {
  const RepackArgs& a;
  int64_t N, K, G;
  // GPTQ 4-bit: qweight word (row r of K/8, column n)
  uint32_t gq4(int64_t n, int64_t k) const { return (ld32(a.data + 4 * ((k >> 3) * N + n)) >> (4 * (k & 7))) & 15; }
  uint32_t gq8(int64_t n, int64_t k) const { return (ld32(a.data + 4 * ((k >> 2) * N + n)) >> (8 * (k & 3))) & 255; }
  /** The stored row of layout row n (GGUF Q/K row order). */
  int64_t row(int64_t n) const { return a.rows != nullptr ? a.rows[n] : n; }
  uint32_t awq(int64_t n, int64_t k) const { return (ld32(a.data + 4 * (k * (N / 8) + n / 8)) >> (4 * kAwqReverse[n & 7])) & 15; }
};

// ---------------------------------------------------------------- scales (phase 1)

/** Canonical scales [N, G] (and mins, or mins stays empty when the grid is symmetric). */
RepackStatus scalesOf(const Src& s, std::vector<float>& scales, std::vector<float>& mins) {
  const RepackArgs& a = s.a;
  const int64_t N = s.N, K = s.K, G = s.G;
  scales.assign(static_cast<size_t>(N * G), 0.0f);
  switch (a.src) {
    case RepackSource::GptqQ4:
    case RepackSource::GptqQ8:
    case RepackSource::AwqQ4: {
      const bool q8 = a.src == RepackSource::GptqQ8, awq = a.src == RepackSource::AwqQ4;
      const int64_t perWord = q8 ? 4 : 8;
      std::vector<uint8_t> z(static_cast<size_t>(N * G));
      bool sym = true;
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t n = 0; n < N; ++n) {
          scales[n * G + g] = halfToFloat(ld16(a.scales + 2 * (g * N + n)));
          const uint32_t w = ld32(a.qzeros + 4 * (g * (N / perWord) + n / perWord));
          const int32_t stored = q8 ? static_cast<int32_t>((w >> (8 * (n & 3))) & 255)
                                    : static_cast<int32_t>((w >> (4 * (awq ? kAwqReverse[n & 7] : (n & 7)))) & 15);
          const int32_t zz = stored + a.zeroAdd;
          if (q8) {
            if (zz != 128) return RepackStatus::Unsupported;  // q − z not a plain int8 plane: the TS path splits it
          } else {
            z[n * G + g] = static_cast<uint8_t>(zz);
            if (zz != 8) sym = false;
          }
        }
      }
      if (!q8 && !sym) {
        mins.resize(scales.size());
        for (size_t i = 0; i < scales.size(); ++i) mins[i] = -scales[i] * static_cast<float>(z[i]);
      }
      return RepackStatus::Ok;
    }
    case RepackSource::Q4_0:
    case RepackSource::Q4_1:
    case RepackSource::Q8_0: {
      const int64_t bytes = a.src == RepackSource::Q4_0 ? 18 : a.src == RepackSource::Q4_1 ? 20 : 34;
      if (a.src == RepackSource::Q4_1) mins.resize(scales.size());
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t j = 0; j < G; ++j) {
          const int64_t b = n * G + j;
          const uint8_t* p = a.data + (s.row(n) * G + j) * bytes;
          scales[b] = halfToFloat(ld16(p));
          if (a.src == RepackSource::Q4_1) mins[b] = halfToFloat(ld16(p + 2));
        }
      }
      return RepackStatus::Ok;
    }
    case RepackSource::Q4_K: {
      mins.resize(scales.size());
      const int64_t nb = K / 256;
      for (int64_t b = 0; b < N * nb; ++b) {
        const uint8_t* p = a.data + (s.row(b / nb) * nb + b % nb) * 144;
        const float d = halfToFloat(ld16(p)), dmin = halfToFloat(ld16(p + 2));
        const uint8_t* q = p + 4;
        for (int j = 0; j < 8; ++j) {
          const int sc = j < 4 ? (q[j] & 63) : ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
          const int m = j < 4 ? (q[j + 4] & 63) : ((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
          scales[b * 8 + j] = d * static_cast<float>(sc);
          mins[b * 8 + j] = -(dmin * static_cast<float>(m));
        }
      }
      return RepackStatus::Ok;
    }
  }
  return RepackStatus::Unsupported;
}

// ---------------------------------------------------------------- codes (phase 2)

/** Canonical code of (row n, canonical column k < K): 0..15 (int4) or q − z + 128 as u8 (int8). */
uint32_t codeAt(const Src& s, int64_t n, int64_t k) {
  const RepackArgs& a = s.a;
  switch (a.src) {
    case RepackSource::GptqQ4: return s.gq4(n, a.perm != nullptr ? a.perm[k] : k);
    case RepackSource::GptqQ8: return s.gq8(n, a.perm != nullptr ? a.perm[k] : k);  // zeros are 128: q − 128 + 128
    case RepackSource::AwqQ4: return s.awq(n, k);
    case RepackSource::Q4_0:
    case RepackSource::Q4_1: {
      const uint8_t* qs = a.data + (s.row(n) * (s.K / 32) + k / 32) * (a.src == RepackSource::Q4_0 ? 18 : 20) + (a.src == RepackSource::Q4_0 ? 2 : 4);
      const int64_t e = k & 31;
      return e < 16 ? (qs[e] & 15) : (qs[e - 16] >> 4);
    }
    case RepackSource::Q4_K: {
      const uint8_t* qs = a.data + (s.row(n) * (s.K / 256) + k / 256) * 144 + 16 + 32 * ((k & 255) / 64);
      const int64_t e = k & 63;
      return e < 32 ? (qs[e] & 15) : (qs[e - 32] >> 4);
    }
    case RepackSource::Q8_0: {
      const uint8_t* qs = a.data + (s.row(n) * (s.K / 32) + k / 32) * 34 + 2;
      return static_cast<uint8_t>(qs[k & 31] ^ 0x80);
    }
  }
  return 0;
}

/**
 * One whole sub-block (columns 32s..32s+31 < K, no perm) of row n as the layout's
 * words: int4 w[c] = byte j: code(4c+j) | code(16+4c+j) << 4 (4 words), int8
 * w[c] = byte j: code(4c+j) (8 words). False when the kind has no word path.
 */
bool fullSub(const Src& s, int64_t n, int64_t sb, uint32_t* w) {
  const RepackArgs& a = s.a;
  const int64_t N = s.N;
  switch (a.src) {
    case RepackSource::GptqQ4: {
      const uint8_t* base = a.data + 4 * (4 * sb * N + n);
      const uint32_t w0 = ld32(base), w1 = ld32(base + 4 * N), w2 = ld32(base + 8 * N), w3 = ld32(base + 12 * N);
      w[0] = spread4(w0 & 0xffff) | (spread4(w2 & 0xffff) << 4);
      w[1] = spread4(w0 >> 16) | (spread4(w2 >> 16) << 4);
      w[2] = spread4(w1 & 0xffff) | (spread4(w3 & 0xffff) << 4);
      w[3] = spread4(w1 >> 16) | (spread4(w3 >> 16) << 4);
      return true;
    }
    case RepackSource::GptqQ8: {
      const uint8_t* base = a.data + 4 * (8 * sb * N + n);
      for (int c = 0; c < 8; ++c) w[c] = ld32(base + 4 * c * N);
      return true;
    }
    case RepackSource::Q4_0:
    case RepackSource::Q4_1: {
      // qs byte e: low nibble = element e, high = element e + 16: exactly the layout's byte 4c + j.
      const uint8_t* qs = a.data + (s.row(n) * (s.K / 32) + sb) * (a.src == RepackSource::Q4_0 ? 18 : 20) + (a.src == RepackSource::Q4_0 ? 2 : 4);
      for (int c = 0; c < 4; ++c) w[c] = ld32(qs + 4 * c);
      return true;
    }
    case RepackSource::Q4_K: {
      // A pair of sub-blocks shares 32 bytes: the even one in the low nibbles, the odd one in the high.
      const uint8_t* qs = a.data + (s.row(n) * (s.K / 256) + sb / 8) * 144 + 16 + 32 * ((sb & 7) / 2);
      for (int c = 0; c < 4; ++c) {
        const uint32_t lo = ld32(qs + 4 * c), hi = ld32(qs + 16 + 4 * c);
        w[c] = (sb & 1) == 0 ? (lo & 0x0f0f0f0fu) | ((hi & 0x0f0f0f0fu) << 4) : ((lo >> 4) & 0x0f0f0f0fu) | (hi & 0xf0f0f0f0u);
      }
      return true;
    }
    case RepackSource::Q8_0: {
      const uint8_t* qs = a.data + (s.row(n) * (s.K / 32) + sb) * 34 + 2;
      for (int c = 0; c < 8; ++c) w[c] = ld32(qs + 4 * c) ^ 0x80808080u;
      return true;
    }
    case RepackSource::AwqQ4: return false;
  }
  return false;
}

/** The codes of row group rg (its real rows; pad rows stay zero, as packQ4/packQ8 leave them). */
void fillCodes(const Src& s, const PackedLayout& L, uint8_t* rgp, int64_t rg, bool q8) {
  const int64_t n0 = rg * kRowGroup, rows = L.N - n0 < kRowGroup ? L.N - n0 : kRowGroup;
  const bool words = s.a.perm == nullptr;
  for (int64_t sb = 0; sb < L.Kp / kSubBlock; ++sb) {
    const int64_t k0 = sb * kSubBlock;
    uint8_t* sp = rgp + sb * (q8 ? 512 : 256);
    uint32_t w[8];
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = n0 + r;
      if (words && k0 + kSubBlock <= L.K && fullSub(s, n, sb, w)) {
        for (int c = 0; c < (q8 ? 8 : 4); ++c) st32(sp + 64 * c + 4 * r, w[c]);
        continue;
      }
      for (int c = 0; c < (q8 ? 8 : 4); ++c) {
        for (int j = 0; j < 4; ++j) {
          uint8_t* out = sp + 64 * c + 4 * r + j;
          if (q8) {
            const int64_t k = k0 + 4 * c + j;
            *out = static_cast<uint8_t>(k < L.K ? codeAt(s, n, k) : 128);
          } else {
            const int64_t kl = k0 + 4 * c + j, kh = kl + 16;
            const uint32_t lo = kl < L.K ? codeAt(s, n, kl) : 8, hi = kh < L.K ? codeAt(s, n, kh) : 8;
            *out = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
          }
        }
      }
    }
  }
}

int64_t firstNonFinite(const std::vector<float>& v) {
  for (size_t i = 0; i < v.size(); ++i) if (!std::isfinite(v[i])) return static_cast<int64_t>(i);
  return -1;
}

}  // namespace

RepackResult repackSource(Runtime& rt, const RepackArgs& a) {
  RepackResult res;
  const bool q8 = a.src == RepackSource::GptqQ8 || a.src == RepackSource::Q8_0;
  const int64_t g = a.g < a.K ? a.g : a.K;
  const Src s{a, a.N, a.K, (a.K + g - 1) / g};
  std::vector<float> scales, mins;
  res.status = scalesOf(s, scales, mins);
  if (res.status != RepackStatus::Ok) return res;
  // As packQ4/packQ8 are reached through validatePackQ4/Q8 (src/backend/native-packed.ts): scales, then mins.
  if ((res.index = firstNonFinite(scales)) >= 0) { res.status = RepackStatus::NonFiniteScale; return res; }
  if ((res.index = firstNonFinite(mins)) >= 0) { res.status = RepackStatus::NonFiniteMin; return res; }
  const float* mp = mins.empty() ? nullptr : mins.data();

  auto* w = new PackedWeight();
  PackedLayout& L = w->L;
  L.kind = q8 ? PackedKind::Q8 : PackedKind::Q4;
  L.mins = mp != nullptr;
  L.scaleBytes = scaleBytesFor(scales.data(), scales.size(), mp);
  planQuant(L, a.N, a.K, a.g, q8 ? 512 : 256);
  if (!allocData(*w, static_cast<size_t>(L.Np / kRowGroup * L.rgStride))) {
    freePacked(w);
    res.status = RepackStatus::OutOfMemory;
    return res;
  }
  // About 1 MiB of layout per task: a few tasks per thread, first touch of the arena spread over them.
  const int64_t nrg = L.Np / kRowGroup;
  const int64_t per = L.rgStride >= (int64_t{1} << 20) ? 1 : ((int64_t{1} << 20) / L.rgStride < nrg ? (int64_t{1} << 20) / L.rgStride : nrg);
  const int tasks = static_cast<int>((nrg + per - 1) / per);
  rt.pool.parallelFor(tasks, [&](int task, int) {
    const int64_t r0 = task * per, r1 = r0 + per < nrg ? r0 + per : nrg;
    for (int64_t rg = r0; rg < r1; ++rg) {
      uint8_t* rgp = w->data + rg * L.rgStride;
      fillCodes(s, L, rgp, rg, q8);
      writeScales(L, rgp, rg, scales.data(), mp);
    }
  });
  res.w = finish(w, a.perm);
  if (res.w == nullptr) res.status = RepackStatus::OutOfMemory;
  return res;
}

}  // namespace qllm

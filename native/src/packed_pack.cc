// The packers: canonical inputs (one byte per code, f32 scales) → the runtime
// layouts of packed.h, byte by byte as native/LAYOUTS.md describes them.
//
// Memory: each matrix gets its own anonymous mapping whose start is 2 MiB aligned,
// advised MADV_HUGEPAGE before the packer first writes it (THP here is
// enabled=madvise, so without the advice a weight arena gets 4 KiB pages and every
// 4 KiB of a decode stream costs a TLB miss; KERNELS.md §4). The mapping ends at the
// 4 KiB page after the data, so the tail that cannot be a whole huge page stays
// 4 KiB pages and nothing is resident beyond the data (RSS ≈ packed bytes). Small
// matrices (< 1 MiB) come from aligned_alloc.
#include <sys/mman.h>

#include <cassert>
#include <cstdlib>
#include <cstring>

#include "packed.h"
#include "packed_build.h"
#include "packed_f16.h"

namespace qllm {
namespace {

constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t kPage = 4096;
constexpr size_t kMapMin = size_t{1} << 20;

int64_t roundUp(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
int64_t gcd(int64_t a, int64_t b) { return b == 0 ? a : gcd(b, a % b); }

}  // namespace

namespace packbuild {

/** 64-byte aligned, zeroed memory for `bytes`; sets w.data, w.mapBytes. */
bool allocData(PackedWeight& w, size_t bytes) {
  w.bytes = bytes;
  if (bytes >= kMapMin) {
    const size_t len = (bytes + kPage - 1) / kPage * kPage;
    void* p = mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    const uintptr_t base = reinterpret_cast<uintptr_t>(p);
    const uintptr_t start = (base + kHuge - 1) / kHuge * kHuge;
    if (start > base) munmap(p, start - base);
    const uintptr_t end = base + len + kHuge;
    if (end > start + len) munmap(reinterpret_cast<void*>(start + len), end - (start + len));
#if defined(MADV_HUGEPAGE)
    madvise(reinterpret_cast<void*>(start), len, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
    w.data = reinterpret_cast<uint8_t*>(start);
    w.mapBytes = len;
    return true;  // anonymous pages are zero
  }
  w.data = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64));
  if (w.data == nullptr) return false;
  std::memset(w.data, 0, bytes);
  w.mapBytes = 0;
  return true;
}

/** f16 when every value is exactly an f16 (GPTQ, AWQ, Q4_0, Q8_0 scales are), else f32. */
int32_t scaleBytesFor(const float* a, size_t n, const float* b) {
  for (size_t i = 0; i < n; ++i) {
    if (halfToFloat(floatToHalf(a[i])) != a[i]) return 4;
    if (b != nullptr && halfToFloat(floatToHalf(b[i])) != b[i]) return 4;
  }
  return 2;
}

void putScale(uint8_t* p, int32_t bytes, float v) {
  if (bytes == 2) {
    const uint16_t h = floatToHalf(v);
    std::memcpy(p, &h, 2);
  } else {
    std::memcpy(p, &v, 4);
  }
}

/** Shape, activation block, strides; the caller fills kind-specific fields first. */
void planQuant(PackedLayout& L, int64_t N, int64_t K, int64_t g, int64_t bytesPerSub) {
  L.N = N;
  L.K = K;
  L.Np = roundUp(N, kRowGroup);
  L.g = g < K ? g : K;
  L.G = (K + L.g - 1) / L.g;
  L.Ba = activationBlock(K, g);
  L.Kp = roundUp(K, L.Ba);
  L.codeBytes = L.Kp / kSubBlock * bytesPerSub;
  const int64_t scaleSets = L.mins ? 2 : 1;
  L.rgStride = roundUp(L.codeBytes + scaleSets * L.G * kRowGroup * L.scaleBytes, 64);
}

PackedWeight* finish(PackedWeight* w, const int32_t* perm) {
  if (perm != nullptr) {
    w->perm = static_cast<int32_t*>(std::malloc(static_cast<size_t>(w->L.K) * 4));
    if (w->perm == nullptr) {
      freePacked(w);
      return nullptr;
    }
    std::memcpy(w->perm, perm, static_cast<size_t>(w->L.K) * 4);
  }
  w->L.perm = w->perm;
  return w;
}

/** Writes the scales (and mins) of row group rg: [G][16] each, after the codes. */
void writeScales(const PackedLayout& L, uint8_t* rgp, int64_t rg, const float* scales, const float* mins) {
  uint8_t* sp = rgp + L.codeBytes;
  uint8_t* mp = sp + L.G * kRowGroup * L.scaleBytes;
  for (int64_t r = 0; r < kRowGroup; ++r) {
    const int64_t n = rg * kRowGroup + r;
    if (n >= L.N) break;  // pad rows keep zero scales: their outputs are 0 and never written
    for (int64_t gi = 0; gi < L.G; ++gi) {
      const size_t at = static_cast<size_t>((gi * kRowGroup + r) * L.scaleBytes);
      putScale(sp + at, L.scaleBytes, scales[n * L.G + gi]);
      if (mins != nullptr) putScale(mp + at, L.scaleBytes, mins[n * L.G + gi]);
    }
  }
}

}  // namespace packbuild

namespace {
using namespace packbuild;

/**
 * Allocates w's data (deleting w and returning false when that fails), then for every
 * real row n (row r of row group rg) calls fill(rowGroupBytes, r, n) and writes the
 * scales (when given). Pad rows stay zero.
 */
template <class F>
bool fillRows(PackedWeight& w, F&& fill, const float* scales, const float* mins) {
  const PackedLayout& L = w.L;
  if (!allocData(w, static_cast<size_t>(L.Np / kRowGroup * L.rgStride))) {
    freePacked(&w);
    return false;
  }
  for (int64_t rg = 0; rg < L.Np / kRowGroup; ++rg) {
    uint8_t* rgp = w.data + rg * L.rgStride;
    for (int64_t r = 0; r < kRowGroup && rg * kRowGroup + r < L.N; ++r) fill(rgp, r, rg * kRowGroup + r);
    if (scales != nullptr) writeScales(L, rgp, rg, scales, mins);
  }
  return true;
}

}  // namespace

int64_t activationBlock(int64_t K, int64_t g) {
  // Activation block = weight group (KERNELS.md §3): one f32 rescale per group instead
  // of one per 32 k. Capped at 128 so that one activation outlier spoils at most 128
  // products; per-row weights (one group) use 128 too, or less for a short K.
  if (g >= K) return roundUp(K, kSubBlock) < 128 ? roundUp(K, kSubBlock) : 128;
  return kSubBlock * gcd(g / kSubBlock, 4);
}

PackedWeight* packQ4(const uint8_t* codes, const float* scales, const float* mins, int64_t N, int64_t K, int64_t g,
                     const int32_t* perm) {
  auto* w = new PackedWeight();
  PackedLayout& L = w->L;
  L.kind = PackedKind::Q4;
  L.mins = mins != nullptr;
  const int64_t G = (K + (g < K ? g : K) - 1) / (g < K ? g : K);
  L.scaleBytes = scaleBytesFor(scales, static_cast<size_t>(N * G), mins);
  planQuant(L, N, K, g, 256);
  // Sub-block s (k0 = 32s), chunk c, row r, byte j: low nibble = code[k0+4c+j],
  // high nibble = code[k0+16+4c+j]. Pad columns hold code 8 (weight 0 when symmetric).
  const bool ok = fillRows(*w, [&](uint8_t* rgp, int64_t r, int64_t n) {
    const uint8_t* row = codes + n * K;
    for (int64_t k0 = 0; k0 < L.Kp; k0 += kSubBlock) {
      uint8_t* sb = rgp + k0 / kSubBlock * 256 + 4 * r;
      for (int c = 0; c < 4; ++c) {
        for (int j = 0; j < 4; ++j) {
          const int64_t kl = k0 + 4 * c + j, kh = kl + 16;
          const uint8_t lo = kl < K ? row[kl] : 8, hi = kh < K ? row[kh] : 8;
          sb[64 * c + j] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
        }
      }
    }
  }, scales, mins);
  if (!ok) return nullptr;
  return finish(w, perm);
}

PackedWeight* packQ8(const int8_t* codes, const float* scales, int64_t N, int64_t K, int64_t g, const int32_t* perm) {
  auto* w = new PackedWeight();
  PackedLayout& L = w->L;
  L.kind = PackedKind::Q8;
  L.mins = false;
  const int64_t G = (K + (g < K ? g : K) - 1) / (g < K ? g : K);
  L.scaleBytes = scaleBytesFor(scales, static_cast<size_t>(N * G), nullptr);
  planQuant(L, N, K, g, 512);
  // Sub-block s (k0 = 32s), chunk c (0..7), row r, byte j: code[k0+4c+j] + 128, as u8
  // (so that vpdpbusd takes the weights as its unsigned operand; pad columns: 128).
  const bool ok = fillRows(*w, [&](uint8_t* rgp, int64_t r, int64_t n) {
    const int8_t* row = codes + n * K;
    for (int64_t k0 = 0; k0 < L.Kp; k0 += kSubBlock) {
      uint8_t* sb = rgp + k0 / kSubBlock * 512 + 4 * r;
      for (int c = 0; c < 8; ++c) {
        for (int j = 0; j < 4; ++j) {
          const int64_t k = k0 + 4 * c + j;
          sb[64 * c + j] = static_cast<uint8_t>((k < K ? row[k] : 0) + 128);
        }
      }
    }
  }, scales, nullptr);
  if (!ok) return nullptr;
  return finish(w, perm);
}

PackedLayout h16Layout(H16Type type, int64_t N, int64_t K, bool rowMajor) {
  PackedLayout L{};
  L.kind = PackedKind::H16;
  L.h16 = type;
  L.rowMajor = rowMajor;
  L.N = N;
  L.K = K;
  L.Np = roundUp(N, kRowGroup);  // the drivers' row groups (row-major: rows ≥ N are never read)
  L.Kp = K;
  L.g = K;
  L.G = 0;
  L.Ba = K;
  L.scaleBytes = 0;
  L.mins = false;
  // interleaved: [K][16] 16-bit values per row group; row-major: row n at byte n·2K, no padding
  L.codeBytes = rowMajor ? 2 * K : K * kRowGroup * 2;
  L.rgStride = rowMajor ? kRowGroup * L.codeBytes : roundUp(L.codeBytes, 64);
  return L;
}

PackedWeight* pack16(const uint16_t* data, H16Type type, int64_t N, int64_t K) {
  auto* w = new PackedWeight();
  w->L = h16Layout(type, N, K, false);
  // Row group: [K][16] 16-bit values, row r of k at byte 32k + 2r (pad rows 0).
  const bool ok = fillRows(*w, [&](uint8_t* rgp, int64_t r, int64_t n) {
    uint16_t* dst = reinterpret_cast<uint16_t*>(rgp);
    const uint16_t* row = data + n * K;
    for (int64_t k = 0; k < K; ++k) dst[k * kRowGroup + r] = row[k];
  }, nullptr, nullptr);
  if (!ok) return nullptr;
  return finish(w, nullptr);
}

PackedWeight* allocRaw(size_t bytes) {
  auto* w = new PackedWeight();
  if (!allocData(*w, bytes)) {
    delete w;
    return nullptr;
  }
  return w;
}

PackedWeight* packedConcat(const PackedWeight* const* parts, int n, ConcatStatus* status) {
  *status = ConcatStatus::Incompatible;
  if (n < 1 || n > kMaxParts) return nullptr;
  const PackedLayout& A = parts[0]->L;
  int64_t rgs = 0;
  for (int p = 0; p < n; ++p) {
    const PackedWeight& w = *parts[p];
    const PackedLayout& B = w.L;
    if (w.nParts != 0 || w.view || B.kind != A.kind || B.K != A.K || B.Kp != A.Kp || B.g != A.g || B.G != A.G ||
        B.Ba != A.Ba || B.scaleBytes != A.scaleBytes || B.mins != A.mins || B.h16 != A.h16 || B.rowMajor != A.rowMajor || B.codeBytes != A.codeBytes ||
        B.rgStride != A.rgStride || (B.perm == nullptr) != (A.perm == nullptr))
      return nullptr;
    if (B.perm != nullptr && std::memcmp(B.perm, A.perm, static_cast<size_t>(A.K) * 4) != 0) return nullptr;
    rgs += B.Np / kRowGroup;
  }
  if (A.rowMajor) {  // every part is a row-major view (rgStride and codeBytes equal): nothing is copied
    auto* w = new PackedWeight();
    w->L = A;
    w->L.Np = rgs * kRowGroup;
    w->L.N = (rgs - parts[n - 1]->L.Np / kRowGroup) * kRowGroup + parts[n - 1]->L.N;
    w->nParts = n;
    w->data = parts[0]->data;
    int64_t rg = 0;
    for (int p = 0; p < n; ++p) {
      w->partRg[p] = rg;
      w->partN[p] = parts[p]->L.N;
      w->partData[p] = parts[p]->data;
      w->files[p] = parts[p]->files[0];
      if (w->files[p] != nullptr) retainFile(w->files[p]);
      w->bytes += parts[p]->bytes;
      rg += parts[p]->L.Np / kRowGroup;
    }
    w->partRg[n] = rg;
    *status = ConcatStatus::Ok;
    return w;
  }
  auto* w = new PackedWeight();
  w->L = A;
  w->L.perm = nullptr;
  w->L.Np = rgs * kRowGroup;
  w->L.N = (rgs - parts[n - 1]->L.Np / kRowGroup) * kRowGroup + parts[n - 1]->L.N;  // inner pad rows count as rows
  w->nParts = n;
  if (!allocData(*w, static_cast<size_t>(rgs * A.rgStride))) {
    delete w;
    *status = ConcatStatus::OutOfMemory;
    return nullptr;
  }
  int64_t rg = 0;
  for (int p = 0; p < n; ++p) {
    w->partRg[p] = rg;
    w->partN[p] = parts[p]->L.N;
    std::memcpy(w->data + rg * A.rgStride, parts[p]->data, parts[p]->bytes);
    rg += parts[p]->L.Np / kRowGroup;
  }
  w->partRg[n] = rg;
  w = finish(w, A.perm);
  *status = w == nullptr ? ConcatStatus::OutOfMemory : ConcatStatus::Ok;
  return w;
}

PackedWeight* packedView(const PackedWeight& f, int p) {
  auto* w = new PackedWeight();
  w->L = f.L;
  w->L.N = f.partN[p];
  w->L.Np = (f.partRg[p + 1] - f.partRg[p]) * kRowGroup;
  w->data = f.L.rowMajor ? f.partData[p] : f.data + f.partRg[p] * f.L.rgStride;
  w->bytes = f.L.rowMajor ? static_cast<size_t>(w->L.N * f.L.codeBytes) : static_cast<size_t>(w->L.Np / kRowGroup * f.L.rgStride);
  w->partData[0] = w->data;
  w->perm = f.perm;
  w->view = true;
  return w;
}

void freePacked(PackedWeight* w) {
  if (w == nullptr) return;
  if (w->view) {
    delete w;
    return;
  }
  if (w->L.rowMajor) {  // the bytes are the mapped file's
    for (MappedFile* f : w->files) releaseFile(f);
    delete w;
    return;
  }
  if (w->data != nullptr) {
    if (w->mapBytes > 0) munmap(w->data, w->mapBytes);
    else std::free(w->data);
  }
  std::free(w->perm);
  delete w;
}

}  // namespace qllm

// Drivers of the conversion kernels (convert.h): rows in chunks on the pool, each thread
// decoding its source rows into its own f32 row buffer (L1/L2-sized) before the row kernel.
#include "convert.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "runtime.h"

namespace qllm {

const ConvertKernels& convertKernelsFor(const char* level) {
  if (std::strcmp(level, "scalar") != 0 && convertAvx2() != nullptr) return *convertAvx2();
  return *convertScalar();
}

namespace {

/** Rows per task: about 1 MiB of source per task, at least one row. */
int64_t rowsPerTask(int64_t N, int64_t K) {
  const int64_t r = (int64_t{1} << 19) / (K > 0 ? K : 1);
  return r < 1 ? 1 : r > N ? (N > 0 ? N : 1) : r;
}


/** Source row r (already mapped through `rows`) as f32: decoded into buf, or the source itself. */
const float* rowF32(const ConvertKernels& k, const void* src, WType st, int64_t r, int64_t K, float* buf) {
  if (st == WType::F32) return static_cast<const float*>(src) + r * K;
  k.decode(static_cast<const uint16_t*>(src) + r * K, st, K, buf);
  return buf;
}

/** f(row, f32 row) for every destination row, chunked over the pool. */
template <class F>
void forRows(Runtime& rt, const void* src, WType st, const int32_t* rows, int64_t N, int64_t K, F&& f) {
  const ConvertKernels& k = convertKernelsFor(rt.kernels->name);
  const int64_t per = rowsPerTask(N, K);
  const int tasks = static_cast<int>((N + per - 1) / per);
  rt.pool.parallelFor(tasks, [&](int task, int) {
    std::vector<float> buf(st == WType::F32 ? 0 : static_cast<size_t>(K));
    const int64_t r0 = task * per, r1 = r0 + per < N ? r0 + per : N;
    for (int64_t r = r0; r < r1; ++r) f(r, rowF32(k, src, st, rows != nullptr ? rows[r] : r, K, buf.data()));
  });
}

}  // namespace

int64_t convertRows(Runtime& rt, const void* src, WType st, const int32_t* rows, int64_t N, int64_t K, void* dst, WType dt) {
  const ConvertKernels& k = convertKernelsFor(rt.kernels->name);
  if (dt == WType::F32) {
    forRows(rt, src, st, rows, N, K, [&](int64_t r, const float* x) {
      float* out = static_cast<float*>(dst) + r * K;
      if (x != out) std::memcpy(out, x, static_cast<size_t>(K) * 4);
    });
    return -1;
  }
  std::atomic<int64_t> first{-1};
  forRows(rt, src, st, rows, N, K, [&](int64_t r, const float* x) {
    const int64_t bad = k.encodeF16(x, K, static_cast<uint16_t*>(dst) + r * K);
    if (bad < 0) return;
    const int64_t at = r * K + bad;
    int64_t cur = first.load();
    while ((cur < 0 || at < cur) && !first.compare_exchange_weak(cur, at)) {
    }
  });
  return first.load();
}

void ggmlQuantizeRows(Runtime& rt, const void* src, WType st, const int32_t* rows, int64_t N, int64_t K, int type, uint8_t* out) {
  const ConvertKernels& k = convertKernelsFor(rt.kernels->name);
  const int64_t rowBytes = (K / 32) * (type == 0 ? 18 : 34);
  forRows(rt, src, st, rows, N, K, [&](int64_t r, const float* x) {
    (type == 0 ? k.q4_0Row : k.q8_0Row)(x, K, out + r * rowBytes);
  });
}

int64_t rtnQuantize(Runtime& rt, const void* src, WType st, int64_t N, int64_t K, int bits, int64_t g, bool sym,
                    uint8_t* codes, float* scales, uint8_t* zeros, double* err) {
  const ConvertKernels& k = convertKernelsFor(rt.kernels->name);
  const int64_t G = (K + g - 1) / g;
  std::vector<double> rowErr(static_cast<size_t>(2 * N));
  std::atomic<int64_t> first{-1};
  forRows(rt, src, st, nullptr, N, K, [&](int64_t r, const float* x) {
    for (int64_t i = 0; i < K; ++i) {
      if (!(std::fabs(x[i]) <= 3.4028234663852886e38f)) {  // NaN or ±inf: the caller reports the first one
        const int64_t at = r * K + i;
        int64_t cur = first.load();
        while ((cur < 0 || at < cur) && !first.compare_exchange_weak(cur, at)) {
        }
        return;
      }
    }
    k.rtnRow({x, K, g, (1 << bits) - 1, sym, codes + r * K, scales + r * G, zeros + r * G, rowErr.data() + 2 * r});
  });
  double num = 0, den = 0;
  for (int64_t r = 0; r < N; ++r) {
    num += rowErr[2 * r];
    den += rowErr[2 * r + 1];
  }
  err[0] = num;
  err[1] = den;
  return first.load();
}

void gptqPackCodes(Runtime& rt, const uint8_t* codes, int64_t N, int64_t K, int bits, int32_t* qweight) {
  const int per = 32 / bits;  // codes per word, along K
  const int64_t R = K / per;  // packed rows
  const int64_t chunk = 64;
  const int tasks = static_cast<int>((R + chunk - 1) / chunk);
  rt.pool.parallelFor(tasks, [&](int task, int) {
    const int64_t p0 = task * chunk, p1 = p0 + chunk < R ? p0 + chunk : R;
    for (int64_t n = 0; n < N; ++n) {
      const uint8_t* c = codes + n * K;
      for (int64_t p = p0; p < p1; ++p) {
        uint32_t w = 0;
        for (int j = 0; j < per; ++j) w |= static_cast<uint32_t>(c[p * per + j]) << (bits * j);
        qweight[p * N + n] = static_cast<int32_t>(w);
      }
    }
  });
}

}  // namespace qllm

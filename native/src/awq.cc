// AWQ search kernels (awq.h). Every floating-point step mirrors the TypeScript
// reference so that the native path chooses the same scales and clips:
//   - group min/max over f32 values; scale = toF16(max(max − min, 1e-5) / maxq) in f64;
//   - zero = clamp(−RNE(min / scale), 0, maxq); code = clamp(RNE(w / scale) + zero, 0, maxq)
//     with the quotients in f64 (awq-grid.ts);
//   - dequantized = f32(scale·(code − zero)); w·s and q / s are f32 operations, as the
//     Float32Array stores of awq-grid.ts round them;
//   - the clip search's GEMMs are the same matmul calls awq-clip.ts makes through the
//     backend, and each row's error is summed in f64 over tokens in order.
#include "awq.h"

#include <cmath>
#include <vector>

#include "grid_round.h"
#include "runtime.h"

namespace qllm {
namespace {

constexpr double kAwqMinRange = 1e-5;  // awq-grid.ts AWQ_MIN_RANGE
constexpr int64_t kRowsPerTask = 64;

int64_t ceilDivI(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t minI64(int64_t a, int64_t b) { return a < b ? a : b; }

/** Fake-quantize v[0..n) as one AWQ group into out (may be v): awqFakeQuantizeGroup of awq-grid.ts. */
void fakeQuantizeGroup(const float* v, int64_t n, int maxq, float* out) {
  float lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (v[i] < lo) lo = v[i];
    if (v[i] > hi) hi = v[i];
  }
  double range = static_cast<double>(hi) - static_cast<double>(lo);
  if (range < kAwqMinRange) range = kAwqMinRange;
  const float scale = roundToF16(range / maxq);
  const double sc = scale;
  double zero = -nearbyint(static_cast<double>(lo) / sc);
  zero = zero < 0 ? 0 : zero > maxq ? maxq : zero;
  for (int64_t i = 0; i < n; ++i) {
    double q = nearbyint(static_cast<double>(v[i]) / sc) + zero;
    q = q < 0 ? 0 : q > maxq ? maxq : q;
    out[i] = static_cast<float>(sc * (q - zero));
  }
}

}  // namespace

void awqFakeQuantize(Runtime& rt, const float* w, const float* s, int64_t N, int64_t K, int bits, int64_t g, float* out) {
  const int maxq = (1 << bits) - 1;
  rt.pool.parallelFor(static_cast<int>(ceilDivI(N, kRowsPerTask)), [&](int t, int tid) {
    float* ws = rt.local[static_cast<size_t>(tid)].get(static_cast<size_t>(K));  // [K] one scaled row
    for (int64_t n = t * kRowsPerTask; n < minI64(N, (t + 1) * kRowsPerTask); ++n) {
      const float* src = w + n * K;
      float* dst = out + n * K;
      if (s != nullptr) {
        for (int64_t k = 0; k < K; ++k) ws[k] = src[k] * s[k];
      } else {
        for (int64_t k = 0; k < K; ++k) ws[k] = src[k];
      }
      for (int64_t k0 = 0; k0 < K; k0 += g) fakeQuantizeGroup(ws + k0, minI64(g, K - k0), maxq, dst + k0);
      if (s != nullptr)
        for (int64_t k = 0; k < K; ++k) dst[k] = dst[k] / s[k];
    }
  });
}

void awqClipSearch(Runtime& rt, const float* w, const float* x, int64_t N, int64_t K, int64_t T, int bits, int64_t g,
                   float* maxVal, const CallControl* ctl) {
  const int maxq = (1 << bits) - 1;
  const int64_t G = K / g;
  std::vector<float> Xg(static_cast<size_t>(T * g));     // [T, g] this group's input columns
  std::vector<float> Wg(static_cast<size_t>(N * g));     // [N, g] this group's weights
  std::vector<float> Qg(static_cast<size_t>(N * g));     // [N, g] clamped + fake-quantized candidate
  std::vector<float> org(static_cast<size_t>(T * N));    // [T, N] x_G · w_Gᵀ
  std::vector<float> cur(static_cast<size_t>(T * N));    // [T, N] x_G · Q_Gᵀ
  std::vector<float> amax(static_cast<size_t>(N));       // [N]
  std::vector<double> bestErr(static_cast<size_t>(N));   // [N]
  std::vector<double> err(static_cast<size_t>(N));       // [N]
  const int nTasks = static_cast<int>(ceilDivI(N, kRowsPerTask));
  if (ctl != nullptr) ctl->setTotal(G);
  for (int64_t gi = 0; gi < G; ++gi) {
    if (ctl != nullptr && ctl->cancelled()) return;
    const int64_t k0 = gi * g;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < g; ++j) Xg[static_cast<size_t>(t * g + j)] = x[t * K + k0 + j];
    for (int64_t n = 0; n < N; ++n) {
      float a = 0.0f;
      for (int64_t j = 0; j < g; ++j) {
        const float v = w[n * K + k0 + j];
        Wg[static_cast<size_t>(n * g + j)] = v;
        a = std::fmax(a, std::fabs(v));
      }
      amax[static_cast<size_t>(n)] = a;
      bestErr[static_cast<size_t>(n)] = INFINITY;
      maxVal[n * G + gi] = a;  // no clip unless a candidate is strictly better
    }
    matmul(rt, Xg.data(), Wg.data(), T, g, N, nullptr, org.data());
    for (int i = 0; i < kAwqClipSteps; ++i) {
      const double shrink = 1.0 - static_cast<double>(i) / kAwqClipGrid;
      rt.pool.parallelFor(nTasks, [&](int t, int) {
        for (int64_t n = t * kRowsPerTask; n < minI64(N, (t + 1) * kRowsPerTask); ++n) {
          const float mv = static_cast<float>(amax[static_cast<size_t>(n)] * shrink);
          const float* src = Wg.data() + n * g;
          float* q = Qg.data() + n * g;
          for (int64_t j = 0; j < g; ++j) q[j] = src[j] > mv ? mv : src[j] < -mv ? -mv : src[j];
          fakeQuantizeGroup(q, g, maxq, q);
        }
      });
      matmul(rt, Xg.data(), Qg.data(), T, g, N, nullptr, cur.data());
      rt.pool.parallelFor(nTasks, [&](int t, int) {
        const int64_t n0 = t * kRowsPerTask, n1 = minI64(N, n0 + kRowsPerTask);
        double* e = err.data();
        for (int64_t n = n0; n < n1; ++n) e[n] = 0.0;
        for (int64_t tt = 0; tt < T; ++tt) {  // tokens in order, as awq-clip.ts sums them
          const float* c = cur.data() + tt * N;
          const float* o = org.data() + tt * N;
          for (int64_t n = n0; n < n1; ++n) {
            const double d = static_cast<double>(c[n]) - static_cast<double>(o[n]);
            e[n] += d * d;
          }
        }
        for (int64_t n = n0; n < n1; ++n) {
          const double en = e[n] / static_cast<double>(T);
          if (en < bestErr[static_cast<size_t>(n)]) {
            bestErr[static_cast<size_t>(n)] = en;
            maxVal[n * G + gi] = static_cast<float>(amax[static_cast<size_t>(n)] * shrink);
          }
        }
      });
    }
    if (ctl != nullptr) ctl->advance(1);
  }
}

}  // namespace qllm

// Hinv = cholesky_upper(H⁻¹) (gptq.py: cholesky → cholesky_inverse → cholesky
// upper), computed in place in the one [n, n] output buffer through an identity: if
// H = R·Rᵀ with R upper triangular, then H⁻¹ = R⁻ᵀ·R⁻¹, so Hinv = R⁻¹. R is the
// lower Cholesky factor of H with rows and columns reversed (J·H·J = L·Lᵀ ⇒
// R = J·L·J), and reversing both indices of a row-major matrix reverses its
// storage. Hence:
//
//   1. copy H into the output reversed (and permuted for act-order, with the
//      caller's damped diagonal), so H itself stays pristine for a retry;
//   2. blocked right-looking lower Cholesky, panels of NB columns: factor the
//      diagonal block, invert it (X = L11⁻¹, kept in the diagonal block: step 3
//      needs exactly that), L21 = A21·X11ᵀ, A22 −= L21·L21ᵀ (register-tile GEMMs);
//   3. blocked triangular inverse, right to left: L⁻¹ = [[X11, 0], [−X22·L21·X11, X22]];
//   4. reverse the storage back, zero the strictly lower triangle.
//
// Both O(n³) steps are GEMMs on the kernel table's register tile; the O(NB³)
// diagonal work runs on the calling thread. Reference: gptqHinv in
// src/methods/linalg.ts (f64); this is f32 like gptq.py.
#include <cmath>
#include <vector>

#include "gptq.h"
#include "gptq_pack.h"
#include "runtime.h"

namespace qllm {
namespace {

using namespace gptqdetail;

constexpr int64_t kNB = 128;           // panel width: diagonal blocks [NB, NB], GEMM depth of the Cholesky update
constexpr int64_t kRowChunk = 96;      // rows per task in the panel steps (a multiple of every MR: 12, 6, 4)
constexpr int64_t kTrailRows = 240;    // rows per task of the Cholesky trailing update (multiple of every MR)
constexpr int64_t kColBlockPanels = 8; // NR-panels of B per task: [NB][8·NR] ≈ 128 KiB, stays in L2
// A pivot must exceed this fraction of its original diagonal entry: below it, the
// f32 Schur complement is rounding noise (a few ulps) and the matrix is singular
// at this precision, so the caller raises the damping (the f64 reference tests > 0).
constexpr float kPivotRelTol = 0x1p-21f;

/** Σ a[k]·b[k] with 8 independent partial sums (vectorisable without reassociation). */
float dot(const float* a, const float* b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int l = 0; l < 8; ++l) s[l] += a[k + l] * b[k + l];
  float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  for (; k < n; ++k) t += a[k] * b[k];
  return t;
}

/** A[i][j] ↔ A[n−1−i][n−1−j] for all i, j; then zero the strictly lower triangle. */
void reverseUpper(Runtime& rt, float* A, int64_t n) {
  constexpr int64_t kPairsPerTask = 32;
  const int64_t pairs = n / 2;
  const int64_t nTasks = ceilDiv(pairs, kPairsPerTask) + (n % 2);
  rt.pool.parallelFor(static_cast<int>(nTasks), [&](int t, int) {
    if (n % 2 == 1 && t == nTasks - 1) {  // the middle row maps onto itself
      const int64_t m = pairs;
      float* r = A + m * n;
      for (int64_t j = 0; j < n / 2; ++j) std::swap(r[j], r[n - 1 - j]);
      memset(r, 0, static_cast<size_t>(m) * sizeof(float));
      return;
    }
    for (int64_t i = t * kPairsPerTask; i < minI(pairs, (t + 1) * kPairsPerTask); ++i) {
      float* a = A + i * n;
      float* b = A + (n - 1 - i) * n;
      for (int64_t j = 0; j < n; ++j) std::swap(a[j], b[n - 1 - j]);
      memset(a, 0, static_cast<size_t>(i) * sizeof(float));
      memset(b, 0, static_cast<size_t>(n - 1 - i) * sizeof(float));
    }
  });
}

/** Unblocked lower Cholesky of the [b, b] block D (row stride ld), in place. */
bool cholDiag(float* D, int64_t ld, int64_t b, const float* diag0) {
  for (int64_t j = 0; j < b; ++j) {
    float* rj = D + j * ld;
    const float s = rj[j] - dot(rj, rj, j);
    if (!(s > 0.0f && s > kPivotRelTol * diag0[j] && std::isfinite(s))) return false;
    const float ljj = std::sqrt(s);
    rj[j] = ljj;
    for (int64_t i = j + 1; i < b; ++i) {
      float* ri = D + i * ld;
      ri[j] = (ri[j] - dot(ri, rj, j)) / ljj;
    }
  }
  return true;
}

/**
 * X = L⁻¹ of the lower [b, b] block D, column by column: Xt[c·b + i] = X[i][c];
 * then D ← X (lower, strictly upper part zeroed).
 */
void invertDiag(float* D, int64_t ld, int64_t b, float* Xt) {
  for (int64_t c = 0; c < b; ++c) {
    float* xc = Xt + c * b;
    for (int64_t i = 0; i < c; ++i) xc[i] = 0.0f;
    xc[c] = 1.0f / D[c * ld + c];
    for (int64_t i = c + 1; i < b; ++i) xc[i] = -dot(D + i * ld + c, xc + c, i - c) / D[i * ld + i];
  }
  for (int64_t i = 0; i < b; ++i)
    for (int64_t c = 0; c < b; ++c) D[i * ld + c] = c <= i ? Xt[c * b + i] : 0.0f;
}

/** A panel [kc][MR] of rows r < mr of src, keeping only k ≤ diagOff + r (a lower-triangular operand). */
void packLowerA(const float* src, int64_t lds, int64_t mr, int64_t kc, int64_t diagOff, int64_t MR, float* dst) {
  for (int64_t r = 0; r < MR; ++r) {
    const float* s = src + r * lds;
    const int64_t kEnd = r < mr ? minI(kc, diagOff + r + 1) : 0;
    for (int64_t k = 0; k < kEnd; ++k) dst[k * MR + r] = s[k];
    for (int64_t k = kEnd < 0 ? 0 : kEnd; k < kc; ++k) dst[k * MR + r] = 0.0f;
  }
}

/**
 * The lower triangle of out[i][j] = A[n−1−i][n−1−j], A[a][b] = H[perm[a]][perm[b]] off
 * the diagonal, A[a][a] = diag[a]. Nothing reads the strictly upper part of the work
 * matrix (the packers mask it) until step 4 zeroes it.
 */
template <class S>
void loadReversed(Runtime& rt, const S* H, int64_t n, const int32_t* perm, const double* diag, float* out) {
  constexpr int64_t kRowsPerTask = 32;
  rt.pool.parallelFor(static_cast<int>(ceilDiv(n, kRowsPerTask)), [&](int t, int) {
    for (int64_t i = t * kRowsPerTask; i < minI(n, (t + 1) * kRowsPerTask); ++i) {
      const int64_t a = n - 1 - i;
      float* dst = out + i * n;
      if (perm != nullptr) {
        const S* src = H + static_cast<int64_t>(perm[a]) * n;
        for (int64_t j = 0; j < i; ++j) dst[j] = static_cast<float>(src[perm[n - 1 - j]]);
      } else {
        const S* src = H + a * n + (n - 1);
        for (int64_t j = 0; j < i; ++j) dst[j] = static_cast<float>(src[-j]);
      }
      dst[i] = static_cast<float>(diag[a]);
    }
  });
}

struct Step {
  int64_t c0, r0, r1;  // a column block and a row range of a trailing update
};

}  // namespace

bool gptqHinv(Runtime& rt, const float* h32, const double* h64, int64_t n, const int32_t* perm, const double* diag, float* A,
              const CallControl* ctl) {
  const auto cancelled = [ctl] { return ctl != nullptr && ctl->cancelled(); };
  if (ctl != nullptr) ctl->setTotal(2 * ceilDiv(n, minI(kNB, n)));  // one unit per diagonal block, in each of the two passes
  const KernelTable& kt = *rt.kernels;
  const int64_t MR = kt.mr, NR = kt.nr, KC = kt.kc;
  const int64_t NB = minI(kNB, n), NBp = roundUp(NB, NR), NCB = kColBlockPanels * NR;
  std::vector<float> diag0(static_cast<size_t>(n));
  Buffer scratch;
  float* Xt = scratch.get(static_cast<size_t>(NB * NB + NBp * NB + n * NB + roundUp(n, MR) * NBp));
  float* Bx = Xt + NB * NB;      // [NB/NR][NB][NR]: the diagonal block as a B operand
  float* P = Bx + NBp * NB;      // [m][b]: L21 (Cholesky), then Y = −L21·X11 (inverse)
  float* Ap = P + n * NB;        // −L21 as A panels (Cholesky), then Y as B panels [b/NR][m][NR] (inverse)
  const size_t localFloats = static_cast<size_t>(maxI(KC, NB) * MR + NB * NCB);

  adviseHugePages(A, static_cast<size_t>(n * n) * sizeof(float));
  if (h32 != nullptr) loadReversed(rt, h32, n, perm, diag, A);
  else loadReversed(rt, h64, n, perm, diag, A);
  for (int64_t i = 0; i < n; ++i) diag0[static_cast<size_t>(i)] = A[i * n + i];

  // ---------------------------------------------------------------- Cholesky
  for (int64_t k0 = 0; k0 < n; k0 += NB) {
    const int64_t b = minI(NB, n - k0), k1 = k0 + b, m = n - k1;
    float* D = A + k0 * n + k0;
    if (cancelled()) return false;
    if (ctl != nullptr) ctl->advance(1);
    if (!cholDiag(D, n, b, diag0.data() + k0)) return false;
    invertDiag(D, n, b, Xt);
    if (m == 0) break;
    packKMajor(Xt, b, b, b, NR, b * NR, Bx);  // B[k][c] = X11[c][k]

    // L21 = A21·X11ᵀ (into P and back into A21); −L21 packed as A panels.
    rt.pool.parallelFor(static_cast<int>(ceilDiv(m, kRowChunk)), [&](int t, int tid) {
      float* ap = rt.local[static_cast<size_t>(tid)].get(localFloats);
      for (int64_t p0 = t * kRowChunk; p0 < minI(m, (t + 1) * kRowChunk); p0 += MR) {
        const int64_t mr = minI(MR, m - p0);
        kt.packA(A + (k1 + p0) * n + k0, n, static_cast<int>(mr), b, ap);
        TileArgs ta{};
        ta.kc = b;
        ta.a = ap;
        ta.lda = MR;
        ta.ldb = NR;
        ta.ldc = b;
        ta.mr = static_cast<int>(mr);
        for (int64_t q0 = 0; q0 < b; q0 += NR) {
          ta.b = Bx + (q0 / NR) * b * NR;
          ta.c = P + p0 * b + q0;
          ta.nr = static_cast<int>(minI(NR, b - q0));
          kt.tile(ta);
        }
        for (int64_t r = 0; r < mr; ++r) memcpy(A + (k1 + p0 + r) * n + k0, P + (p0 + r) * b, static_cast<size_t>(b) * sizeof(float));
        kt.packA(P + p0 * b, b, static_cast<int>(mr), b, Ap + p0 * b);
        negate(Ap + p0 * b, MR * b);
      }
    });

    // A22 −= L21·L21ᵀ on and below the diagonal.
    std::vector<Step> steps;
    for (int64_t c0 = 0; c0 < m; c0 += NCB)
      for (int64_t r0 = c0 / MR * MR; r0 < m; r0 += kTrailRows) steps.push_back({c0, r0, minI(m, r0 + kTrailRows)});
    rt.pool.parallelFor(static_cast<int>(steps.size()), [&](int t, int tid) {
      const Step s = steps[static_cast<size_t>(t)];
      const int64_t cols = minI(NCB, m - s.c0);
      float* bp = rt.local[static_cast<size_t>(tid)].get(localFloats);
      kt.packB(P + s.c0 * b, b, cols, b, bp);
      TileArgs ta{};
      ta.kc = b;
      ta.lda = MR;
      ta.ldb = NR;
      ta.ldc = n;
      ta.accumulate = true;
      for (int64_t p0 = s.r0; p0 < s.r1; p0 += MR) {
        const int64_t mr = minI(MR, s.r1 - p0);
        ta.a = Ap + p0 * b;
        ta.mr = static_cast<int>(mr);
        for (int64_t q0 = 0; q0 < cols; q0 += NR) {
          if (p0 + mr - 1 < s.c0 + q0) break;  // this and later tiles lie wholly above the diagonal
          ta.b = bp + (q0 / NR) * b * NR;
          ta.c = A + (k1 + p0) * n + k1 + s.c0 + q0;
          ta.nr = static_cast<int>(minI(NR, cols - q0));
          kt.tile(ta);
        }
      }
    });
  }

  // ---------------------------------------------------------------- L⁻¹, right to left
  for (int64_t j0 = (n - 1) / NB * NB; j0 >= 0; j0 -= NB) {
    const int64_t b = minI(NB, n - j0), j1 = j0 + b, m = n - j1;
    if (cancelled()) return false;
    if (ctl != nullptr) ctl->advance(1);
    if (m == 0) continue;
    packKMajor(A + j0 * n + j0, n, b, b, NR, b * NR, Bx);  // B[k][c] = X11[k][c]

    // Y = −L21·X11 (into P), and Y as B panels [b/NR][m][NR] (into Ap).
    rt.pool.parallelFor(static_cast<int>(ceilDiv(m, kRowChunk)), [&](int t, int tid) {
      float* ap = rt.local[static_cast<size_t>(tid)].get(localFloats);
      const int64_t r0 = t * kRowChunk, r1 = minI(m, r0 + kRowChunk);
      for (int64_t p0 = r0; p0 < r1; p0 += MR) {
        const int64_t mr = minI(MR, m - p0);
        kt.packA(A + (j1 + p0) * n + j0, n, static_cast<int>(mr), b, ap);
        negate(ap, MR * b);
        TileArgs ta{};
        ta.kc = b;
        ta.a = ap;
        ta.lda = MR;
        ta.ldb = NR;
        ta.ldc = b;
        ta.mr = static_cast<int>(mr);
        for (int64_t q0 = 0; q0 < b; q0 += NR) {
          ta.b = Bx + (q0 / NR) * b * NR;
          ta.c = P + p0 * b + q0;
          ta.nr = static_cast<int>(minI(NR, b - q0));
          kt.tile(ta);
        }
      }
      packKMajor(P + r0 * b, b, r1 - r0, b, NR, m * NR, Ap + r0 * NR);
    });

    // A21 ← X22·Y, X22 = the already inverted trailing block (lower triangular).
    const int64_t nChunks = ceilDiv(m, kRowChunk);
    rt.pool.parallelFor(static_cast<int>(nChunks), [&](int t, int tid) {
      float* ap = rt.local[static_cast<size_t>(tid)].get(localFloats);
      const int64_t r0 = (nChunks - 1 - t) * kRowChunk, r1 = minI(m, r0 + kRowChunk);  // longest rows first
      for (int64_t k0 = 0; k0 < r1; k0 += KC) {
        const int64_t kc = minI(KC, r1 - k0);
        for (int64_t p0 = r0; p0 < r1; p0 += MR) {
          const int64_t mr = minI(MR, r1 - p0), rowMax = p0 + mr - 1;
          if (rowMax < k0) continue;
          const int64_t kcEff = minI(kc, rowMax + 1 - k0);
          packLowerA(A + (j1 + p0) * n + j1 + k0, n, mr, kcEff, p0 - k0, MR, ap);
          TileArgs ta{};
          ta.kc = kcEff;
          ta.a = ap;
          ta.lda = MR;
          ta.ldb = NR;
          ta.ldc = n;
          ta.mr = static_cast<int>(mr);
          ta.accumulate = k0 > 0;
          for (int64_t q0 = 0; q0 < b; q0 += NR) {
            ta.b = Ap + (q0 / NR) * m * NR + k0 * NR;
            ta.c = A + (j1 + p0) * n + j0 + q0;
            ta.nr = static_cast<int>(minI(NR, b - q0));
            kt.tile(ta);
          }
        }
      }
    });
  }

  reverseUpper(rt, A, n);
  for (int64_t i = 0; i < n; ++i) {
    const float d = A[i * n + i];
    if (!(d > 0.0f && std::isfinite(d))) return false;
  }
  return true;
}

}  // namespace qllm

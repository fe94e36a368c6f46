// The column-sequential inner loop of GPTQ, written once as plain loops over L
// lanes (one lane = one weight row) and compiled per SIMD level: gptq_rows_<level>.cc
// includes this file inside an anonymous namespace, so the compiler vectorises
// the lane loops with that level's instructions (the same scheme as kernel_impl.h).
//
// Numerics follow src/methods/grid.ts exactly where the reference is exact:
//   - grids in f64 from the f32 min/max, scale rounded f64 → f32 → f16 (RNE);
//   - codes = clamp(RNE(w / scale) + zero) with the quotient in f64, so a weight
//     that equals the reference's weight gets the reference's code;
//   - dq = scale·(q − zero) is exact in f32 (11-bit scale × ≤ 8-bit integer).
// The running weights and errors are f32 (the reference keeps them in f64).

// roundToF16, gptqGrid and kRneShift: grid_round.h (included by each gptq_rows_<level>.cc before its namespaces).

/** New grids for every lane at group start i (block-relative): min/max of the current weights of the group. */
template <int L>
void newGrids(const GptqLaneArgs& a, const float* wt, int64_t i, float* sc, float* zr) {
  const int64_t B = a.i2 - a.i1, col = a.i1 + i;
  const int64_t len = a.g < a.K - col ? a.g : a.K - col;
  // Block-start rule: the running copy a.w still holds every column's value from the
  // block start (the block's updates go to wt), so read the whole group from it.
  const int64_t inBlock = a.blockStartGrids ? 0 : len < B - i ? len : B - i;
  float lo[L], hi[L];
  for (int l = 0; l < L; ++l) {
    lo[l] = __builtin_inff();
    hi[l] = -__builtin_inff();
  }
  for (int64_t j = i; j < i + inBlock; ++j) {
    const float* x = wt + j * L;
    for (int l = 0; l < L; ++l) {
      lo[l] = x[l] < lo[l] ? x[l] : lo[l];
      hi[l] = x[l] > hi[l] ? x[l] : hi[l];
    }
  }
  const int64_t gi = col / a.g;
  for (int l = 0; l < L; ++l) {
    if (l >= a.rows) {
      sc[l] = 1.0f;
      zr[l] = 0.0f;
      continue;
    }
    // Current rule: a group reaching past the block starts at the block start (the
    // driver cuts blocks so), where every column ≥ i2 is already up to date.
    const float* r = a.w + l * a.ldw + col;
    float mn = lo[l], mx = hi[l];
    for (int64_t j = inBlock; j < len; ++j) {
      mn = r[j] < mn ? r[j] : mn;
      mx = r[j] > mx ? r[j] : mx;
    }
    int z;
    gptqGrid(mn, mx, a.maxq, a.sym, &sc[l], &z);
    zr[l] = static_cast<float>(z);
    a.scales[l * a.G + gi] = sc[l];
    a.zeros[l * a.G + gi] = static_cast<uint8_t>(z);
  }
}

/** Lane vectors (GCC vector extensions): L floats is one register at this level; the f64 form is split. */
template <int L>
struct LaneVec {
  typedef float F __attribute__((vector_size(4 * L)));
  typedef double D __attribute__((vector_size(8 * L)));
};

/**
 * q = clamp(RNE(x / scale) + zero, 0, maxq) with the quotient in f64, e = (x − dq)/d,
 * loss += (x − dq)²/d², for L lanes at once. No clamp before the rounding shift: a
 * quotient beyond ±2^51 comes out of it still huge with its sign, and the final
 * clamp (in f32, where it may be ±inf) sends it to 0 or maxq as it should.
 */
template <int L>
inline void quantizeLanes(const float* x, const float* sc, const float* zr, float maxq, float d, float* q, float* dq, float* e, double* loss) {
  using F = typename LaneVec<L>::F;
  using D = typename LaneVec<L>::D;
  F xv, sv, zv;
  D lv;
  memcpy(&xv, x, sizeof xv);
  memcpy(&sv, sc, sizeof sv);
  memcpy(&zv, zr, sizeof zv);
  memcpy(&lv, loss, sizeof lv);
  const D t = __builtin_convertvector(xv, D) / __builtin_convertvector(sv, D);
  F c = __builtin_convertvector(((t + kRneShift) - kRneShift) + __builtin_convertvector(zv, D), F);
  const F zero = {}, top = zero + maxq;
  c = c > zero ? c : zero;
  c = c < top ? c : top;
  const F dqv = sv * (c - zv);  // exact: 11-bit scale × ≤ 8-bit integer
  const F diff = xv - dqv;
  const F ev = diff / d;
  const D dd = __builtin_convertvector(diff, D);
  lv += dd * dd / (static_cast<double>(d) * d);
  memcpy(q, &c, sizeof c);
  memcpy(dq, &dqv, sizeof dqv);
  memcpy(e, &ev, sizeof ev);
  memcpy(loss, &lv, sizeof lv);
}

/**
 * y[j·L + l] −= e[r·L + l]·h[r·K + j] for r < R, in order, j in [j0, j1): the errors of R
 * consecutive columns spread over the rest of the block with one load and one store
 * of y per j (each element sees the same operations in the same order as R passes).
 */
template <int L, int R>
inline void spreadErrors(float* y, const float* e, const float* h, int64_t K, int64_t j0, int64_t j1) {
  using F = typename LaneVec<L>::F;
  F ev[R];
  for (int r = 0; r < R; ++r) memcpy(&ev[r], e + r * L, sizeof(F));
  for (int64_t j = j0; j < j1; ++j) {
    F yv;
    memcpy(&yv, y + j * L, sizeof yv);
    for (int r = 0; r < R; ++r) yv -= ev[r] * h[r * K + j];
    memcpy(y + j * L, &yv, sizeof yv);
  }
}

template <int L>
void spreadErrorsN(int n, float* y, const float* e, const float* h, int64_t K, int64_t j0, int64_t j1) {
  switch (n) {
    case 1: spreadErrors<L, 1>(y, e, h, K, j0, j1); break;
    case 2: spreadErrors<L, 2>(y, e, h, K, j0, j1); break;
    case 3: spreadErrors<L, 3>(y, e, h, K, j0, j1); break;
    default: spreadErrors<L, 4>(y, e, h, K, j0, j1); break;
  }
}

/** Columns quantized before their errors are spread over the rest of the block together. */
constexpr int64_t kColumnsPerSpread = 4;

/** THE INNER LOOP of GPTQ for one block of columns and L rows. */
template <int L>
void gptqBlockLanes(const GptqLaneArgs& a) {
  const int64_t K = a.K, i1 = a.i1, B = a.i2 - a.i1;
  float* __restrict wt = a.wt;         // [B][L] the block's weights, transposed
  float* __restrict et = wt + B * L;   // [B][L] errors (w − q)/Hinv[i,i]
  float* __restrict qt = et + B * L;   // [B][L] codes
  float* __restrict dqt = qt + B * L;  // [B][L] dequantized weights
  for (int l = 0; l < L; ++l) {
    if (l < a.rows) {
      const float* src = a.w + l * a.ldw + i1;
      for (int64_t k = 0; k < B; ++k) wt[k * L + l] = src[k];
    } else {
      for (int64_t k = 0; k < B; ++k) wt[k * L + l] = 0.0f;
    }
  }
  float sc[L], zr[L];
  double loss[L];
  for (int l = 0; l < L; ++l) {
    sc[l] = l < a.rows ? a.laneScale[l] : 1.0f;
    zr[l] = l < a.rows ? a.laneZero[l] : 0.0f;
    loss[l] = a.loss[l];
  }
  const float maxq = static_cast<float>(a.maxq);
  int64_t staticGroup = -1;
  for (int64_t i = 0; i < B;) {
    // Up to kColumnsPerSpread columns; a dynamic group start only as the first of them,
    // since its grid needs every earlier error spread over the whole group.
    int64_t iEnd = i + kColumnsPerSpread < B ? i + kColumnsPerSpread : B;
    if (!a.staticGroups) {
      const int64_t nextStart = ((i1 + i) / a.g + 1) * a.g - i1;
      if (nextStart < iEnd) iEnd = nextStart;
    }
    for (int64_t c = i; c < iEnd; ++c) {
      const int64_t col = i1 + c;
      if (a.staticGroups) {
        const int64_t gi = a.colGroup[col];
        if (gi != staticGroup) {
          for (int l = 0; l < a.rows; ++l) {
            sc[l] = a.scales[l * a.G + gi];
            zr[l] = a.zeros[l * a.G + gi];
          }
          staticGroup = gi;
        }
      } else if (col % a.g == 0) {
        newGrids<L>(a, wt, c, sc, zr);
      }
      quantizeLanes<L>(wt + c * L, sc, zr, maxq, a.hinv[col * K + col], qt + c * L, dqt + c * L, et + c * L, loss);
      spreadErrors<L, 1>(wt, et + c * L, a.hinv + col * K + i1, K, c + 1, iEnd);
    }
    spreadErrorsN<L>(static_cast<int>(iEnd - i), wt, et + i * L, a.hinv + (i1 + i) * K + i1, K, iEnd, B);
    i = iEnd;
  }
  // Outputs, row by row: codes, and the dequantized weights over the block's columns
  // of the running copy (no longer needed: the rest of the sweep reads columns ≥ i2).
  for (int l = 0; l < a.rows; ++l) {
    uint8_t* codes = a.codes + l * K + i1;
    float* deq = a.w + l * a.ldw + i1;
    float* negErr = a.negErr + l * B;
    for (int64_t k = 0; k < B; ++k) {
      codes[k] = static_cast<uint8_t>(qt[k * L + l]);
      deq[k] = dqt[k * L + l];
      negErr[k] = -et[k * L + l];
    }
    a.laneScale[l] = sc[l];
    a.laneZero[l] = zr[l];
  }
  for (int l = 0; l < L; ++l) a.loss[l] = loss[l];
}

// The row kernels of convert.h, written once as plain loops and compiled per SIMD level:
// convert_<level>.cc defines decode / encodeF16 for its level, then includes this file
// inside an anonymous namespace (the scheme of kernel_impl.h). No FMA contraction: each
// level's TU turns it off, so x·id + 8.5 rounds twice as the reference does.

constexpr int64_t kQk = 32;  // QK4_0 = QK8_0

inline void q4_0RowImpl(const float* x, int64_t K, uint8_t* out) {
  for (int64_t b = 0; b < K / kQk; ++b) {
    const float* xb = x + b * kQk;
    uint8_t* o = out + b * 18;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQk; ++j) {
      const float a = fabsf(xb[j]);
      if (amax < a) {
        amax = a;
        max = xb[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = floatToHalf(d);
    memcpy(o, &dh, 2);
    for (int j = 0; j < 16; ++j) {
      const float t0 = xb[j] * id, t1 = xb[16 + j] * id;
      const float u0 = t0 + 8.5f, u1 = t1 + 8.5f;
      const int q0 = static_cast<int8_t>(u0), q1 = static_cast<int8_t>(u1);
      o[2 + j] = static_cast<uint8_t>((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
    }
  }
}

inline void q8_0RowImpl(const float* x, int64_t K, uint8_t* out) {
  for (int64_t b = 0; b < K / kQk; ++b) {
    const float* xb = x + b * kQk;
    uint8_t* o = out + b * 34;
    float amax = 0.0f;
    for (int j = 0; j < kQk; ++j) {
      const float a = fabsf(xb[j]);
      amax = amax > a ? amax : a;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = floatToHalf(d);
    memcpy(o, &dh, 2);
    for (int j = 0; j < kQk; ++j) o[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(roundf(xb[j] * id)));
  }
}

/** codes and the row's error sums for one group [k0, k1) with grid (s, z). */
inline void rtnGroup(const float* x, int64_t k0, int64_t k1, float s, int z, int maxq, uint8_t* codes, double* num, double* den) {
  const double sd = s, zd = z, top = maxq;
  for (int64_t k = k0; k < k1; ++k) {
    const double t = static_cast<double>(x[k]) / sd;
    double q = ((t + kRneShift) - kRneShift) + zd;
    q = q < 0.0 ? 0.0 : q > top ? top : q;
    codes[k] = static_cast<uint8_t>(q);
    const float dq = s * static_cast<float>(q - zd);  // exact: 11-bit scale × ≤ 8-bit integer
    const double e = static_cast<double>(x[k]) - static_cast<double>(dq);
    num[k & 3] += e * e;
    den[k & 3] += static_cast<double>(x[k]) * static_cast<double>(x[k]);
  }
}

/** `group` is the level's rtnGroup (same contract, same sums). */
template <class GroupFn>
inline void rtnRowImpl(const RtnRowArgs& a, GroupFn group) {
  const int64_t G = (a.K + a.g - 1) / a.g;
  double num[4] = {0, 0, 0, 0}, den[4] = {0, 0, 0, 0};
  for (int64_t gi = 0; gi < G; ++gi) {
    const int64_t k0 = gi * a.g, k1 = k0 + a.g < a.K ? k0 + a.g : a.K;
    float lo = __builtin_inff(), hi = -__builtin_inff();
    for (int64_t k = k0; k < k1; ++k) {
      lo = a.x[k] < lo ? a.x[k] : lo;
      hi = a.x[k] > hi ? a.x[k] : hi;
    }
    float s;
    int z;
    gptqGrid(lo, hi, a.maxq, a.sym, &s, &z);
    a.scales[gi] = s;
    a.zeros[gi] = static_cast<uint8_t>(z);
    group(a.x, k0, k1, s, z, a.maxq, a.codes, num, den);
  }
  a.err[0] = (num[0] + num[1]) + (num[2] + num[3]);
  a.err[1] = (den[0] + den[1]) + (den[2] + den[3]);
}

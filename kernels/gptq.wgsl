// GPTQ's lazy-batch quantization on the GPU (issue 13 item 4), f32 throughout. The
// specification is src/methods/gptq.ts; the CPU kernel it mirrors is native/src/gptq.cc (with
// gptq_rows.h): the same blocks, the same grid rules, the same order of operations per weight.
// Driven by src/methods/gptq-webgpu.ts (GpuGptq.quantize), per layer:
//
//   gptq_load    wt[i, n] = W[n, src[i]] (0 where src[i] < 0: a dead column)  permuted, transposed
//   per block [i1, i2):
//     (block-start grids: a copy of wt rows i1..i2 into blk rows B..2B, by the driver)
//     gptq_sweep   one invocation per weight row n: for each column c of the block, a new grid
//                  at a dynamic group start, q = quant(w), err = (w − dq)/Hinv[c,c], the rest of
//                  the block's columns −= err·Hinv[c, c+1:i2]; dq replaces w, err goes to blk row c−i1
//     gptq_update  wt[i2:, :] += −Hinv[i1:i2, i2:]ᵀ · err   (the trailing GEMM, 64×64 tiles)
//   gptq_store   dequantized [N, K] and codes [N, K] (4 per u32) in the original column order
//
// The running weights are TRANSPOSED, wt [K, N], so that the row-per-invocation sweep reads and
// writes consecutive addresses across a workgroup. Codes and zero points are exact functions of
// the f32 weight and the f16 scale (midpoint comparisons whose products are exact in f32), and
// the scale is the correctly rounded f32 of (xmax − xmin)/maxq rounded to f16, as the CPU's f64
// path gives; what can still differ from the CPU is the running weights' rounding (FMA
// contraction, division accuracy), see gptq-webgpu.ts.

struct Params { N: u32, K: u32, i1: u32, i2: u32, maxq: u32, g: u32, G: u32, flags: u32 }
const SYM = 1u;
const STATIC = 2u;
const BLOCK_START = 4u;

@group(0) @binding(0) var<uniform> p: Params;

// ---------------------------------------------------------------- grid helpers (src/methods/grid.ts)

/** f32 → f16 (round to nearest even) → f32, as roundToF16 of native/src/grid_round.h. */
fn to_f16(x: f32) -> f32 {
  let bits = bitcast<u32>(x);
  let sign = (bits >> 16u) & 0x8000u;
  let ex = i32((bits >> 23u) & 0xffu);
  var mant = bits & 0x7fffffu;
  if (ex == 0xff) { return unpack2x16float(sign | 0x7c00u | select(0u, 0x200u, mant != 0u)).x; }
  let e = ex - 127 + 15;
  if (e >= 31) { return unpack2x16float(sign | 0x7c00u).x; }
  if (e <= 0) {
    if (e < -10) { return unpack2x16float(sign).x; }
    mant = mant | 0x800000u;
    let shift = u32(14 - e);
    let half = 1u << (shift - 1u);
    let rest = mant & ((1u << shift) - 1u);
    var h = mant >> shift;
    if (rest > half || (rest == half && (h & 1u) == 1u)) { h = h + 1u; }
    return unpack2x16float(sign | h).x;
  }
  let rest = mant & 0x1fffu;
  var h = (u32(e) << 10u) | (mant >> 13u);
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u)) { h = h + 1u; }
  return unpack2x16float(sign | h).x;
}

/** Round-half-even of x/s for x, s > 0 finite, |x/s| < 4096: exact (k ± ½)·s has ≤ 24 bits. */
fn rne_div(x: f32, s: f32) -> f32 {
  var k = round(x / s);
  if (x > (k + 0.5) * s) { k = k + 1.0; } else if (x < (k - 0.5) * s) { k = k - 1.0; }
  let up = (k + 0.5) * s;
  let dn = (k - 0.5) * s;
  if (x == up && (i32(k) & 1) == 1) { k = k + 1.0; }
  if (x == dn && (i32(k) & 1) == 1) { k = k - 1.0; }
  return k;
}

/** q = clamp(RNE(x / s) + z, 0, maxq), exactly (grid.ts quantizeValue). */
fn quant(x: f32, s: f32, z: f32, maxq: f32) -> f32 {
  let t = x / s;
  if (!(t < 2048.0)) { return maxq; }  // also NaN: the CPU's clamp sends it to maxq as well
  if (t < -2048.0) { return 0.0; }
  let k = select(-rne_div(-x, s), rne_div(x, s), x >= 0.0);
  return clamp(k + z, 0.0, maxq);
}

/** The next f32 above / below a positive finite x. */
fn next_up(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) + 1u); }
fn next_dn(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) - 1u); }

/** (a·m) split as hi + lo exactly, for a positive f32 a and an integer m ≤ 255 (Dekker: 12 + 12 bits). */
fn prod_parts(a: f32) -> vec2<f32> {
  let ah = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
  return vec2<f32>(ah, a - ah);
}

/**
 * sign(hi + lo − (q + d)·m) for the exact values (−1, 0, 1): q a positive f32, d = ±½ulp (a power
 * of two, 0 for none), m ≤ 255. Every partial difference is exact (Sterbenz, and small multiples
 * of one unit), and the last rounding keeps the sign.
 */
fn cmp_scaled(hi: f32, lo: f32, q: f32, d: f32, m: f32) -> f32 {
  let qs = prod_parts(q);
  let r1 = (hi - qs.x * m) - qs.y * m;
  let r = (r1 - d * m) + lo;
  return sign(r);
}

/** The correctly rounded f32 of (hi + lo)/m, hi + lo > 0 exact, m = maxq (the CPU computes it in f64). */
fn div_rounded(hi: f32, lo: f32, m: f32) -> f32 {
  var q = hi / m;
  for (var it = 0; it < 4; it++) {
    let upH = (next_up(q) - q) * 0.5;
    let dnH = (q - next_dn(q)) * 0.5;
    let above = cmp_scaled(hi, lo, q, upH, m);
    let below = cmp_scaled(hi, lo, q, -dnH, m);
    if (above > 0.0) { q = next_up(q); continue; }
    if (below < 0.0) { q = next_dn(q); continue; }
    if (above == 0.0 && (bitcast<u32>(q) & 1u) == 1u) { q = next_up(q); }
    if (below == 0.0 && (bitcast<u32>(q) & 1u) == 1u) { q = next_dn(q); }
    break;
  }
  return q;
}

/** gptqGrid (grid.ts) of a group with min lo and max hi: (scale, zero). */
fn grid(lo: f32, hi: f32) -> vec2<f32> {
  let maxq = f32(p.maxq);
  var xmin = min(lo, 0.0);
  var xmax = max(hi, 0.0);
  if ((p.flags & SYM) != 0u) {
    xmax = max(-xmin, xmax);
    if (xmin < 0.0) { xmin = -xmax; }
  }
  if (xmin == 0.0 && xmax == 0.0) { xmin = -1.0; xmax = 1.0; }
  // xmax − xmin as an exact sum hi + lo (two-sum; xmax ≥ 0 ≥ xmin)
  let a = xmax;
  let b = -xmin;
  let sh = a + b;
  let bb = sh - a;
  let sl = (a - (sh - bb)) + (b - bb);
  var s = to_f16(div_rounded(sh, sl, maxq));
  if (s == 0.0) { s = 5.9604644775390625e-8; }  // 2^-24: the smallest f16 subnormal
  var z = (maxq + 1.0) * 0.5;
  if ((p.flags & SYM) == 0u) {
    let c = -xmin;
    z = select(maxq, clamp(rne_div(c, s), 0.0, maxq), c / s < 2048.0);
    if (c == 0.0) { z = 0.0; }
  }
  return vec2<f32>(s, z);
}

// ---------------------------------------------------------------- gptq_load

@group(0) @binding(1) var<storage, read> w_in: array<f32>;       // [N, K] original weights
@group(0) @binding(2) var<storage, read_write> wt: array<f32>;   // [K, N] running weights, permuted, transposed
@group(0) @binding(3) var<storage, read> src_col: array<i32>;    // [K] original column of permuted column i, −1 = dead

@compute @workgroup_size(64)
fn gptq_load(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let i = gid.y + gid.z * 65535u;
  if (n >= p.N || i >= p.K) { return; }
  let c = src_col[i];
  wt[i * p.N + n] = select(0.0, w_in[n * p.K + u32(max(c, 0))], c >= 0);
}

// ---------------------------------------------------------------- gptq_sweep

@group(0) @binding(4) var<storage, read> hinv: array<f32>;        // [K, K] upper Cholesky factor of H⁻¹ (permuted)
@group(0) @binding(5) var<storage, read_write> blk: array<f32>;  // [2B, N]: errors of the block's columns, then the block-start snapshot
@group(0) @binding(6) var<storage, read_write> scales: array<f32>;  // [N, G]
@group(0) @binding(7) var<storage, read_write> zeros: array<u32>;   // [N, G]
@group(0) @binding(8) var<storage, read> col_group: array<u32>;     // [K] group of each permuted column (static groups)
@group(0) @binding(9) var<storage, read_write> state: array<f32>;   // [4, N]: current scale, zero, loss, its Kahan compensation

@compute @workgroup_size(64)
fn gptq_sweep(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let N = p.N;
  if (n >= N) { return; }
  let K = p.K;
  let i1 = p.i1;
  let i2 = p.i2;
  let B = i2 - i1;
  let maxq = f32(p.maxq);
  let isStatic = (p.flags & STATIC) != 0u;
  let blockStart = (p.flags & BLOCK_START) != 0u;
  var sc = state[n];
  var zr = state[N + n];
  var loss = state[2u * N + n];
  var comp = state[3u * N + n];
  var staticGroup = 0xffffffffu;
  for (var c = i1; c < i2; c++) {
    if (isStatic) {
      let gi = col_group[c];
      if (gi != staticGroup) {
        sc = scales[n * p.G + gi];
        zr = f32(zeros[n * p.G + gi]);
        staticGroup = gi;
      }
    } else if (c % p.g == 0u) {
      // Current rule: the block's columns are up to date in wt, and a group reaching past the
      // block starts it (the driver cuts blocks so). Block-start rule: the block's columns as
      // they were at its start (the snapshot), later ones from wt (not updated during the block).
      let len = min(p.g, K - c);
      var lo = 0.0;
      var hi = 0.0;
      for (var j = c; j < c + len; j++) {
        let v = select(wt[j * N + n], blk[(B + j - i1) * N + n], blockStart && j < i2);
        if (j == c) { lo = v; hi = v; } else { lo = min(lo, v); hi = max(hi, v); }
      }
      let gz = grid(lo, hi);
      sc = gz.x;
      zr = gz.y;
      scales[n * p.G + c / p.g] = sc;
      zeros[n * p.G + c / p.g] = u32(zr);
    }
    let x = wt[c * N + n];
    let q = quant(x, sc, zr, maxq);
    let dq = sc * (q - zr);
    let d = hinv[c * K + c];
    let diff = x - dq;
    let e = diff / d;
    // loss += diff²/d², Kahan-compensated (the CPU sums in f64)
    let term = (diff * diff) / (d * d) - comp;
    let t = loss + term;
    comp = (t - loss) - term;
    loss = t;
    wt[c * N + n] = dq;
    blk[(c - i1) * N + n] = e;
    let hrow = c * K;
    for (var j = c + 1u; j < i2; j++) {
      wt[j * N + n] = wt[j * N + n] - e * hinv[hrow + j];
    }
  }
  state[n] = sc;
  state[N + n] = zr;
  state[2u * N + n] = loss;
  state[3u * N + n] = comp;
}

// ---------------------------------------------------------------- gptq_update

var<workgroup> ta: array<f32, 1024>;  // [16 b][64 columns c]: Hinv[i1 + b, c0 + ·]
var<workgroup> tb: array<f32, 1024>;  // [16 b][64 rows n]: err[b, n0 + ·]

/** wt[c, n] −= Σ_b Hinv[i1 + b, c]·err[b, n] for c ≥ i2: 64×64 output tiles, 4×4 per invocation. */
@compute @workgroup_size(16, 16)
fn gptq_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(local_invocation_id) lid: vec3<u32>) {
  let N = p.N;
  let K = p.K;
  let B = p.i2 - p.i1;
  let n0 = wid.x * 64u;
  let c0 = p.i2 + wid.y * 64u;
  // [4 c][4 n]: −Σ_b h·err as one FMA chain from 0, then added to the running weights — the
  // order of the CPU's register tile (native/src/kernel_impl.h tileFixed, accumulate = true)
  var acc: array<f32, 16>;
  for (var b0 = 0u; b0 < B; b0 += 16u) {
    for (var r = 0u; r < 4u; r++) {
      let e = li * 4u + r;  // 0..1023
      let bb = e / 64u;
      let cc = e % 64u;
      let bi = b0 + bb;
      let col = c0 + cc;
      ta[e] = select(0.0, hinv[min(p.i1 + bi, K - 1u) * K + min(col, K - 1u)], bi < B && col < K);
      let row = n0 + cc;
      tb[e] = select(0.0, blk[min(bi, B - 1u) * N + min(row, N - 1u)], bi < B && row < N);
    }
    workgroupBarrier();
    let steps = min(16u, B - b0);
    for (var bb = 0u; bb < steps; bb++) {
      for (var a = 0u; a < 4u; a++) {
        let h = ta[bb * 64u + lid.y * 4u + a];
        for (var b = 0u; b < 4u; b++) {
          acc[a * 4u + b] = fma(-h, tb[bb * 64u + lid.x * 4u + b], acc[a * 4u + b]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var a = 0u; a < 4u; a++) {
    for (var b = 0u; b < 4u; b++) {
      let c = c0 + lid.y * 4u + a;
      let n = n0 + lid.x * 4u + b;
      if (c < K && n < N) { wt[c * N + n] = acc[a * 4u + b] + wt[c * N + n]; }
    }
  }
}

// ---------------------------------------------------------------- gptq_store

@group(0) @binding(10) var<storage, read_write> dq_out: array<f32>;   // [N, K] original column order
@group(0) @binding(11) var<storage, read_write> codes_out: array<u32>;  // [N·K / 4] codes, 4 per word (little-endian bytes)
@group(0) @binding(12) var<storage, read> pos_of: array<u32>;          // [K] permuted position of original column c

/** One word of codes (4 consecutive original-order entries of the flat [N, K]): code = dq/scale + zero (exact). */
@compute @workgroup_size(64)
fn gptq_store(@builtin(global_invocation_id) gid: vec3<u32>) {
  let word = gid.x + gid.y * 65535u * 64u;
  let total = p.N * p.K;
  if (word * 4u >= total) { return; }
  var packed = 0u;
  for (var b = 0u; b < 4u; b++) {
    let f = word * 4u + b;
    if (f >= total) { break; }
    let n = f / p.K;
    let c = f % p.K;
    let i = pos_of[c];
    let v = wt[i * p.N + n];
    let gi = select(i / p.g, col_group[i], (p.flags & STATIC) != 0u);
    let s = scales[n * p.G + gi];
    let q = round(v / s) + f32(zeros[n * p.G + gi]);
    dq_out[f] = v;
    packed = packed | (u32(q) << (8u * b));
  }
  codes_out[word] = packed;
}

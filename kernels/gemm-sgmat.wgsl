// Prefill matmul on subgroup matrices (Vulkan cooperative matrix / Tensor Cores, Apple simdgroup
// matrices), Dawn feature `chromium-experimental-subgroup-matrix`. One subgroup per workgroup
// (x = the adapter's subgroupMaxSize, as Dawn requires) computes a (2·SM)×(2·SN) tile: x and the
// dequantized weights are staged in workgroup memory as f16, products accumulate in f32.
// SM/SN/SK come from one of the adapter's subgroupMatrixConfigs (f16 → f32).
// Reference: refMatmul (src/backend/ref.ts) with x rounded to f16 (activations enter as f16).
const SM: u32 = {{SM}}u;
const SN: u32 = {{SN}}u;
const SK: u32 = {{SK}}u;
const SG: u32 = {{SG}}u;
const BM: u32 = 2u * SM;
const BN: u32 = 2u * SN;
const BK: u32 = 32u;     // a multiple of SK and of 8 (4 weight words)
{{MATMUL_COMMON}}

alias Left = subgroup_matrix_left<f16, SK, SM>;
alias Right = subgroup_matrix_right<f16, SN, SK>;
alias Acc = subgroup_matrix_result<f32, SN, SM>;

var<workgroup> xs: array<f16, BM * BK>;  // [BM][BK]
var<workgroup> ws: array<f16, BK * BN>;  // [BK][BN]
var<workgroup> os: array<f32, BM * BN>;  // [BM][BN]

@compute @workgroup_size(SG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n0 = wid.x * BN;
  let m0 = wid.y * BM;
  var c00 = Acc();
  var c01 = Acc();
  var c10 = Acc();
  var c11 = Acc();
  for (var j0 = 0u; j0 < p.Kw; j0 += BK / 8u) {
    for (var idx = lid; idx < BM * BK; idx += SG) {
      let mm = idx / BK;
      let kk = idx % BK;
      let gm = m0 + mm;
      let gk = j0 * 8u + kk;
      var v = 0.0;
      if (gm < p.M && gk < p.K) { v = x[gm * p.K + gk]; }
      xs[idx] = f16(v);
    }
    for (var idx = lid; idx < BN * (BK / 8u); idx += SG) {
      let nn = idx / (BK / 8u);
      let jj = idx % (BK / 8u);
      var w = W8(vec4<f32>(0.0), vec4<f32>(0.0));
      if (n0 + nn < p.N && j0 + jj < p.Kw) { w = w8(n0 + nn, j0 + jj); }
      let o = jj * 8u * BN + nn;
      ws[o] = f16(w.a.x); ws[o + BN] = f16(w.a.y); ws[o + 2u * BN] = f16(w.a.z); ws[o + 3u * BN] = f16(w.a.w);
      ws[o + 4u * BN] = f16(w.b.x); ws[o + 5u * BN] = f16(w.b.y); ws[o + 6u * BN] = f16(w.b.z); ws[o + 7u * BN] = f16(w.b.w);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk += SK) {
      let a0 = subgroupMatrixLoad<Left>(&xs, kk, false, BK);
      let a1 = subgroupMatrixLoad<Left>(&xs, SM * BK + kk, false, BK);
      let b0 = subgroupMatrixLoad<Right>(&ws, kk * BN, false, BN);
      let b1 = subgroupMatrixLoad<Right>(&ws, kk * BN + SN, false, BN);
      c00 = subgroupMatrixMultiplyAccumulate(a0, b0, c00);
      c01 = subgroupMatrixMultiplyAccumulate(a0, b1, c01);
      c10 = subgroupMatrixMultiplyAccumulate(a1, b0, c10);
      c11 = subgroupMatrixMultiplyAccumulate(a1, b1, c11);
    }
    workgroupBarrier();
  }
  subgroupMatrixStore(&os, 0u, c00, false, BN);
  subgroupMatrixStore(&os, SN, c01, false, BN);
  subgroupMatrixStore(&os, SM * BN, c10, false, BN);
  subgroupMatrixStore(&os, SM * BN + SN, c11, false, BN);
  workgroupBarrier();
  for (var idx = lid; idx < BM * BN; idx += SG) {
    let m = m0 + idx / BN;
    let n = n0 + idx % BN;
    if (m < p.M && n < p.N) { epilogue(m, n, os[idx]); }
  }
}

// GPTQ's Hessian on the GPU: H[i, j] = beta·H[i, j] + alpha·Σ_t x[t, i]·x[t, j] over one
// sequence's layer inputs x [T, K] (gptq.py add_batch as a running average: alpha = 2/(n+1),
// beta = n/(n+1)), 16×16 output tiles, x staged through workgroup memory 16 rows at a time.
// Reference: HessianAccumulatorF32.add (src/methods/gptq-fast.ts).
struct SyrkParams { T: u32, K: u32, alpha: f32, beta: f32 }

@group(0) @binding(0) var<uniform> p: SyrkParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [T, K]
@group(0) @binding(2) var<storage, read_write> h: array<f32>;  // [K, K]

var<workgroup> xa: array<f32, 256>;  // [16 t][16 columns of the i tile]
var<workgroup> xb: array<f32, 256>;  // [16 t][16 columns of the j tile]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.y * 16u + lid.y;
  let j = wid.x * 16u + lid.x;
  let ca = wid.y * 16u + lid.x;
  let cb = wid.x * 16u + lid.x;
  // The CPU kernel's order (native/src/gptq.cc syrkImpl over the register tile): per 256-row
  // chunk of x an FMA chain from 0, the chunks added in order, then beta·H + alpha·sum.
  var acc = 0.0;
  var sum = 0.0;
  for (var t0 = 0u; t0 < p.T; t0 += 16u) {
    let t = t0 + lid.y;
    let row = min(t, p.T - 1u) * p.K;
    xa[lid.y * 16u + lid.x] = select(0.0, x[row + min(ca, p.K - 1u)], t < p.T && ca < p.K);
    xb[lid.y * 16u + lid.x] = select(0.0, x[row + min(cb, p.K - 1u)], t < p.T && cb < p.K);
    workgroupBarrier();
    for (var tt = 0u; tt < 16u; tt++) {
      acc = fma(xa[tt * 16u + lid.y], xb[tt * 16u + lid.x], acc);
    }
    workgroupBarrier();
    if ((t0 + 16u) % 256u == 0u || t0 + 16u >= p.T) {
      sum = select(acc + sum, acc, t0 < 256u);
      acc = 0.0;
    }
  }
  if (i < p.K && j < p.K) {
    let o = i * p.K + j;
    h[o] = p.beta * h[o] + p.alpha * sum;
  }
}

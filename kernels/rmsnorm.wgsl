// y[r, :] = x[src_row0 + r, :] / sqrt(mean(x²) + eps) · w, one workgroup per row.
// Reference: rmsNorm (src/nn/block.ts) — there the mean square accumulates in f64.
const WG: u32 = 64u;

struct NormParams { rows: u32, H: u32, src_row0: u32, eps: f32 }

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // [.., H]
@group(0) @binding(2) var<storage, read> w: array<f32>;        // [H]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // [rows, H]
{{REDUCE}}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32 {{SGID_PARAM}}) {
  let r = wid.x;
  if (r >= p.rows) { return; }
  let xo = (p.src_row0 + r) * p.H;
  var ss = 0.0;
  for (var i = lid; i < p.H; i += WG) { let v = x[xo + i]; ss += v * v; }
  let tot = wg_sum(ss, lid, {{SGID}});
  let inv = 1.0 / sqrt(tot / f32(p.H) + p.eps);
  for (var i = lid; i < p.H; i += WG) { y[r * p.H + i] = (x[xo + i] * inv) * w[i]; }
}

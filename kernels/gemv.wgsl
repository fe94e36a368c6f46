// Decode matmul (small M): one workgroup of WG invocations per output (n, m). Invocations
// stride over the row's 8-column words, then the partial sums meet in wg_sum.
// Reference: refMatmul (src/backend/ref.ts) on the dequantized weights.
const WG: u32 = 64u;
{{MATMUL_COMMON}}
{{REDUCE}}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32 {{SGID_PARAM}}) {
  let n = wid.x + wid.y * nwg.x;
  let m = wid.z;
  if (n >= p.N) { return; }
  var acc = 0.0;
  for (var j = lid; j < p.Kw; j += WG) {
    let w = w8(n, j);
    let a = x8(m, j);
    acc += dot(w.a, a.a) + dot(w.b, a.b);
  }
  let s = wg_sum(acc, lid, {{SGID}});
  if (lid == 0u) { epilogue(m, n, s); }
}

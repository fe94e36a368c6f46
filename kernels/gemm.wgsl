// Prefill matmul: each invocation computes a 4×4 block of y (4 rows m, 4 columns n) straight
// from global memory (x rows and weight rows are re-read from cache by neighbouring
// invocations), 8 columns of K (one weight word) per step; no workgroup memory. The fast
// prefill path on GPUs with matrix units is gemm-sgmat.wgsl.
// Reference: refMatmul (src/backend/ref.ts) on the dequantized weights.
{{MATMUL_COMMON}}

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n0 = gid.x * 4u;
  let m0 = gid.y * 4u;
  if (n0 >= p.N || m0 >= p.M) { return; }
  // Rows past N / M are clamped to the last one and not stored.
  let n1 = min(n0 + 1u, p.N - 1u); let n2 = min(n0 + 2u, p.N - 1u); let n3 = min(n0 + 3u, p.N - 1u);
  let m1 = min(m0 + 1u, p.M - 1u); let m2 = min(m0 + 2u, p.M - 1u); let m3 = min(m0 + 3u, p.M - 1u);
  var c0 = vec4<f32>(0.0); // row m0, columns n0..n0+3
  var c1 = vec4<f32>(0.0);
  var c2 = vec4<f32>(0.0);
  var c3 = vec4<f32>(0.0);
  for (var j = 0u; j < p.Kw; j++) {
    let w0 = w8(n0, j); let w1 = w8(n1, j); let w2 = w8(n2, j); let w3 = w8(n3, j);
    let a0 = x8(m0, j); let a1 = x8(m1, j); let a2 = x8(m2, j); let a3 = x8(m3, j);
    c0 += vec4<f32>(dot(a0.a, w0.a) + dot(a0.b, w0.b), dot(a0.a, w1.a) + dot(a0.b, w1.b), dot(a0.a, w2.a) + dot(a0.b, w2.b), dot(a0.a, w3.a) + dot(a0.b, w3.b));
    c1 += vec4<f32>(dot(a1.a, w0.a) + dot(a1.b, w0.b), dot(a1.a, w1.a) + dot(a1.b, w1.b), dot(a1.a, w2.a) + dot(a1.b, w2.b), dot(a1.a, w3.a) + dot(a1.b, w3.b));
    c2 += vec4<f32>(dot(a2.a, w0.a) + dot(a2.b, w0.b), dot(a2.a, w1.a) + dot(a2.b, w1.b), dot(a2.a, w2.a) + dot(a2.b, w2.b), dot(a2.a, w3.a) + dot(a2.b, w3.b));
    c3 += vec4<f32>(dot(a3.a, w0.a) + dot(a3.b, w0.b), dot(a3.a, w1.a) + dot(a3.b, w1.b), dot(a3.a, w2.a) + dot(a3.b, w2.b), dot(a3.a, w3.a) + dot(a3.b, w3.b));
  }
  for (var jn = 0u; jn < 4u; jn++) {
    let n = n0 + jn;
    if (n < p.N) {
      epilogue(m0, n, c0[jn]);
      if (m0 + 1u < p.M) { epilogue(m0 + 1u, n, c1[jn]); }
      if (m0 + 2u < p.M) { epilogue(m0 + 2u, n, c2[jn]); }
      if (m0 + 3u < p.M) { epilogue(m0 + 3u, n, c3[jn]); }
    }
  }
}

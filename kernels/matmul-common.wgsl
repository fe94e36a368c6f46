// Shared by gemv.wgsl, gemm.wgsl and gemm-sgmat.wgsl: parameters, activation loads and the
// weight format (the WEIGHTS slot at the end takes weights-q4.wgsl or weights-f16.wgsl).
// y[out_off + m·N + n] = (flags & 2 ? y : 0) + Σ_k x[m·K + k] · W[n, k] + (flags & 1 ? bias[n] : 0)

struct MatmulParams {
  M: u32,
  N: u32,
  K: u32,
  Kw: u32,      // words per weight row = ceil(K / 8)
  G: u32,       // q4: groups per row
  gw: u32,      // q4: words per group (groupSize / 8)
  out_off: u32, // first output element
  flags: u32,   // 1 = add bias, 2 = accumulate into y
}

struct W8 { a: vec4<f32>, b: vec4<f32> }

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // [M, K]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;    // [.., N] from out_off
@group(0) @binding(6) var<storage, read> bias: array<f32>;       // [N] (a dummy when flags & 1 == 0)

// x[m, 8j .. 8j+7], zero past K.
fn x8(m: u32, j: u32) -> W8 {
  let base = m * p.K;
  var v: array<f32, 8>;
  for (var i = 0u; i < 8u; i++) {
    let k = j * 8u + i;
    v[i] = select(0.0, x[base + min(k, p.K - 1u)], k < p.K);
  }
  return W8(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
}

fn epilogue(m: u32, n: u32, acc: f32) {
  var v = acc;
  if ((p.flags & 1u) != 0u) { v += bias[n]; }
  let o = p.out_off + m * p.N + n;
  if ((p.flags & 2u) != 0u) { v = y[o] + v; }
  y[o] = v;
}

{{WEIGHTS}}

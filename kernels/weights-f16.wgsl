// f16 weights: rows of 8·Kw halves (zero padded past K).
@group(0) @binding(3) var<storage, read> wh: array<vec4<f16>>;  // [N, 2·Kw]

fn w8(n: u32, j: u32) -> W8 {
  let o = (n * p.Kw + j) * 2u;
  return W8(vec4<f32>(wh[o]), vec4<f32>(wh[o + 1u]));
}

// q4 weights: w[n, k] = scale[n, g]·(code[n, k] − zero[n, g]), g = (k / 8) / gw.
@group(0) @binding(3) var<storage, read> wcodes: array<u32>;  // [N, Kw], nibble i of word j = column 8j+i
@group(0) @binding(4) var<storage, read> wscale: array<f16>;  // [N, G]
@group(0) @binding(5) var<storage, read> wzero: array<f16>;   // [N, G], in code units

fn w8(n: u32, j: u32) -> W8 {
  let q = wcodes[n * p.Kw + j];
  let g = n * p.G + j / p.gw;
  let s = f32(wscale[g]);
  let z = f32(wzero[g]);
  let lo = vec4<f32>(f32(q & 15u), f32((q >> 4u) & 15u), f32((q >> 8u) & 15u), f32((q >> 12u) & 15u));
  let hi = vec4<f32>(f32((q >> 16u) & 15u), f32((q >> 20u) & 15u), f32((q >> 24u) & 15u), f32(q >> 28u));
  return W8((lo - vec4<f32>(z)) * s, (hi - vec4<f32>(z)) * s);
}

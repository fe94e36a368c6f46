// New K/V rows into an f16 cache: kc/vc[off + w] = the f16 bits of ks/vs[2w], ks/vs[2w + 1],
// rounded to nearest even in integer ops, bit for bit as f32ToF16 (src/tensor/dtype.ts)
// (WGSL leaves the rounding of f32 → f16 conversions to the implementation).
// count = T·nKv·d / 2 pairs, off = pos0·nKv·d / 2. Reference: attentionHalf (nn/block.ts).
struct StoreParams { count: u32, off: u32, _a: u32, _b: u32 }

@group(0) @binding(0) var<uniform> p: StoreParams;
@group(0) @binding(1) var<storage, read> ks: array<f32>;         // [T, nKv·d] after RoPE
@group(0) @binding(2) var<storage, read> vs: array<f32>;         // [T, nKv·d]
@group(0) @binding(3) var<storage, read_write> kc: array<u32>;   // [capacity, nKv·d / 2] f16 pairs
@group(0) @binding(4) var<storage, read_write> vc: array<u32>;   // [capacity, nKv·d / 2] f16 pairs

fn f16_bits(x: f32) -> u32 {
  let bits = bitcast<u32>(x);
  let sign = (bits >> 16u) & 0x8000u;
  let ex = (bits >> 23u) & 0xffu;
  var mant = bits & 0x7fffffu;
  if (ex == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = i32(ex) - 112; // - 127 + 15
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant |= 0x800000u;
    let shift = u32(14 - e);
    let mid = 1u << (shift - 1u);
    let rest = mant & ((1u << shift) - 1u);
    var h = mant >> shift;
    if (rest > mid || (rest == mid && (h & 1u) == 1u)) { h += 1u; }
    return sign | h;
  }
  let rest = mant & 0x1fffu;
  var h = (u32(e) << 10u) | (mant >> 13u);
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u)) { h += 1u; }
  return sign | h;
}

fn pair(a: f32, b: f32) -> u32 { return f16_bits(a) | (f16_bits(b) << 16u); }

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (w >= p.count) { return; }
  kc[p.off + w] = pair(ks[2u * w], ks[2u * w + 1u]);
  vc[p.off + w] = pair(vs[2u * w], vs[2u * w + 1u]);
}

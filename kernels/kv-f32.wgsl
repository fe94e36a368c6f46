// The KV cache read by attention.wgsl as f32 rows [capacity, nKv·d].
@group(0) @binding(2) var<storage, read> kc: array<f32>;         // [capacity, nKv·d]
@group(0) @binding(3) var<storage, read> vc: array<f32>;         // [capacity, nKv·d]
// Elements 2w and 2w + 1 of the K / V cache.
fn k_pair(w: u32) -> vec2<f32> { return vec2<f32>(kc[2u * w], kc[2u * w + 1u]); }
fn v_pair(w: u32) -> vec2<f32> { return vec2<f32>(vc[2u * w], vc[2u * w + 1u]); }
